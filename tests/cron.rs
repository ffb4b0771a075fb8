//! `labhost cron`: real schedules of one-second entries, the processes they start watched in
//! /proc, records read back with `labhost jobs --json` and `labhost cron status`. (Next-fire
//! rules across DST, `L`/`W`/`#`, catch-up over hours of downtime and the overlap decisions
//! are unit tests of the pure scheduler with an injected clock: src/modules/cron/mod.rs.)
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::TestCmd;

/// The most processes whose command line contains `needle` seen alive at once while `run`
/// runs, sampling /proc every 20 ms.
fn max_alive_while(needle: &str, run: impl FnOnce()) -> usize {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let needle = needle.to_string();
    let watcher = std::thread::spawn(move || {
        let mut max = 0;
        while !s.load(std::sync::atomic::Ordering::SeqCst) {
            max = max.max(alive(&needle));
            std::thread::sleep(Duration::from_millis(20));
        }
        max
    });
    run();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    watcher.join().unwrap()
}

/// Processes alive now whose command line contains `needle`.
fn alive(needle: &str) -> usize {
    matching(needle).len()
}

/// `pid (state, ppid): command line` of each process whose command line contains `needle`
/// (zombies have an empty one; the cron host's names the schedule, not the script).
fn matching(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let after = stat.rsplit_once(") ").map_or("", |x| x.1);
            let mut f = after.split(' ');
            let (state, ppid) = (f.next().unwrap_or("?"), f.next().unwrap_or("?"));
            found.push(format!("{name} ({state}, ppid {ppid}): {cmd}"));
        }
    }
    found
}

fn jobs(t: &TestCmd) -> Vec<Value> {
    let (code, out, err) = t.spawn(["jobs", "--json", "--limit", "1000"]).finish();
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str(&out).unwrap()
}

/// Runs `labhost cron FILE` for `secs`, then SIGTERM; returns stderr.
fn serve_for(t: &TestCmd, file: &str, secs: f64, extra: &[&str]) -> String {
    let mut args = vec!["cron", file];
    args.extend_from_slice(extra);
    let r = t.spawn(args);
    std::thread::sleep(Duration::from_secs_f64(secs));
    r.signal(libc::SIGTERM);
    let (code, _, err) = r.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.ends_with("[cron] stopped\n"), "{err}");
    err
}

#[test]
fn check_names_file_line_and_column_of_bad_entries() {
    let cases = [
        ("- name: a\n  schedule: '61 * * * *'\n  script: ok.rhai\n", "s.yml:2:14: bad schedule '61 * * * *'"),
        ("- name: a\n  schedule: '@daily'\n  script: ok.rhai\n  timezone: Mars/Olympus\n", "s.yml:4:3: unknown time zone 'Mars/Olympus'"),
        ("- name: a\n  schedule: '@daily'\n  script: ok.rhai\n  overlaps: skip\n", "s.yml:4:3: unknown key `overlaps` (did you mean `overlap`?)\n 4 |   overlaps: skip\n   |   ^^^^^^^^"),
        ("- name: a\n  schedule: '@daily'\n  script: missing.rhai\n", "s.yml:3:3: script ./missing.rhai does not exist"),
        ("- name: a\n  schedule: '@daily'\n  script: ok.rhai\n  overlap: sometimes\n", "s.yml:4:12: unknown variant `sometimes`"),
        ("- name: a\n  schedule: '@daily'\n  script: ok.rhai\n- name: a\n  schedule: '@hourly'\n  script: ok.rhai\n", "s.yml:4:3: a second entry named 'a'"),
    ];
    for (yml, want) in cases {
        let o = TestCmd::new()
            .file("ok.rhai", "print(1);")
            .file("s.yml", yml)
            .args(["cron", "s.yml", "--check"])
            .run();
        assert_ne!(o.code, 0, "{yml}");
        assert!(
            o.stderr.contains(want),
            "want {want:?} for\n{yml}\ngot:\n{}",
            o.stderr
        );
    }
    let o = TestCmd::new()
        .file("ok.rhai", "print(1);")
        .file("s.yml", "- name: nightly\n  schedule: '30 2 * * *'\n  script: ok.rhai\n  timezone: Europe/Berlin\n- name: off\n  schedule: '@hourly'\n  script: ok.rhai\n  enabled: false\n")
        .args(["cron", "s.yml", "--next", "3"])
        .run();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[0], "nightly (30 2 * * *, Europe/Berlin):");
    assert!(
        lines[1..4].iter().all(|l| l.contains(" 02:30:00 CE")),
        "{}",
        o.stdout
    );
}

/// skip: never two at once, the skipped fires recorded with the reason; queue: never two at
/// once, a waiting fire runs when the running one ends; allow: they overlap.
#[test]
fn overlap_policies_with_a_slow_script() {
    let t = TestCmd::new()
        .file("skip.rhai", "time::sleep(1.6);")
        .file("queue.rhai", "time::sleep(1.6);")
        .file("allow.rhai", "time::sleep(1.6);")
        .file(
            "s.yml",
            "- {name: skip, schedule: '* * * * * *', script: skip.rhai, overlap: skip}\n- {name: queue, schedule: '* * * * * *', script: queue.rhai, overlap: queue}\n- {name: allow, schedule: '* * * * * *', script: allow.rhai, overlap: allow}\n",
        );
    let mut counts = (0, 0, 0);
    let skip = max_alive_while("skip.rhai", || {
        let q = max_alive_while("queue.rhai", || {
            let a = max_alive_while("allow.rhai", || {
                // 6.5 s: on a loaded 2-core CI box the first fires start late, and 4.5 s
                // once saw only one skipped fire.
                serve_for(&t, "s.yml", 6.5, &["--grace", "10"]);
            });
            counts.2 = a;
        });
        counts.1 = q;
    });
    counts.0 = skip;
    assert_eq!(counts.0, 1, "skip: at most one at a time");
    assert_eq!(counts.1, 1, "queue: at most one at a time");
    assert!(counts.2 >= 2, "allow: they overlap ({})", counts.2);
    let js = jobs(&t);
    let of = |name: &str, status: &str| {
        js.iter()
            .filter(|j| j["name"] == name && j["status"] == status)
            .count()
    };
    assert!(of("skip", "cancelled") >= 2, "{js:#?}");
    assert!(js
        .iter()
        .filter(|j| j["name"] == "skip" && j["status"] == "cancelled")
        .all(|j| j["cancel_reason"] == "skipped: the previous run is still going (overlap: skip)"));
    assert!(of("skip", "completed") >= 2);
    assert!(
        of("queue", "completed") >= 2,
        "a queued fire ran after the one before it"
    );
    assert!(of("allow", "completed") >= 3);
    assert_eq!(
        alive("skip.rhai") + alive("queue.rhai") + alive("allow.rhai"),
        0,
        "nothing outlives labhost cron"
    );
}

/// A failing script is recorded (its error, the run's stderr log) and the others go on.
#[test]
fn a_script_error_is_recorded_and_the_schedule_goes_on() {
    let t = TestCmd::new()
        .file("bad.rhai", "let x = 1;\nthrow `disk full ${x}`;")
        .file("good.rhai", "print(`tick ${ARGS[0]} ${env::get(\"WHO\")}`);")
        .file("s.yml", "- {name: bad, schedule: '* * * * * *', script: bad.rhai}\n- name: good\n  schedule: '* * * * * *'\n  script: good.rhai\n  args: [x]\n  env: {WHO: me}\n");
    serve_for(&t, "s.yml", 3.3, &[]);
    let js = jobs(&t);
    let bad: Vec<&Value> = js.iter().filter(|j| j["name"] == "bad").collect();
    let good: Vec<&Value> = js.iter().filter(|j| j["name"] == "good").collect();
    assert!(bad.len() >= 2 && good.len() >= 2, "{js:#?}");
    assert!(
        bad.iter().all(|j| j["status"] == "failed"
            && j["error"]
                .as_str()
                .unwrap()
                .contains("exit code 1: error[throw]: disk full 1")),
        "{bad:#?}"
    );
    assert!(good.iter().all(|j| j["status"] == "completed"));
    let id = good[0]["id"].as_i64().unwrap().to_string();
    let (_, out, _) = t.spawn(["logs", &id]).finish();
    assert_eq!(out, "tick x me\n");
    let (code, out, _) = t.spawn(["cron", "status"]).finish();
    assert_eq!(code, Some(0));
    assert!(
        out.contains("bad")
            && out.contains("failed (exit code 1: error[throw]: disk full 1)")
            && out.contains("completed"),
        "{out}"
    );
}

/// SIGTERM: no new fires; a running script gets the grace period, then it is stopped — all
/// of its processes — and recorded as cancelled with the reason.
#[test]
fn graceful_shutdown_stops_a_script_after_the_grace_period() {
    let t = TestCmd::new()
        .file("long.rhai", "sh::run(\"sleep 37\");")
        .file(
            "s.yml",
            "- {name: long, schedule: '* * * * * *', script: long.rhai, overlap: skip}\n",
        );
    let r = t.spawn(["cron", "s.yml", "--grace", "1"]);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(alive("long.rhai"), 1);
    let stopped = Instant::now();
    r.signal(libc::SIGTERM);
    let (code, _, err) = r.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "the grace period is 1 s"
    );
    assert!(
        err.contains("[cron] stopping: 1 run(s) still going get 1s to finish"),
        "{err}"
    );
    assert_eq!(alive("long.rhai"), 0);
    assert_eq!(
        alive("sleep 37"),
        0,
        "the script's own children went with it"
    );
    let js = jobs(&t);
    let cancelled: Vec<&Value> = js
        .iter()
        .filter(|j| {
            j["status"] == "cancelled"
                && j["cancel_reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("grace period ran out")
        })
        .collect();
    assert_eq!(cancelled.len(), 1, "{js:#?}");
}

/// Down for three seconds: `catch_up: last` runs the latest missed fire once on restart,
/// `all` runs each, `none` none; a fire is never run twice.
#[test]
fn missed_fires_are_caught_up_after_a_restart() {
    let t = TestCmd::new()
        .file("x.rhai", "print(1);")
        .file("s.yml", "- {name: last, schedule: '* * * * * *', script: x.rhai, catch_up: last}\n- {name: all, schedule: '* * * * * *', script: x.rhai, catch_up: all}\n- {name: none, schedule: '* * * * * *', script: x.rhai, catch_up: none}\n");
    serve_for(&t, "s.yml", 1.5, &[]);
    std::thread::sleep(Duration::from_secs(3));
    // Caught-up fires of an entry run one after another: 2.5 s leaves a loaded two-core
    // box time to start and run all of them before the stop (0.5 s did not).
    let err = serve_for(&t, "s.yml", 2.5, &[]);
    let js = jobs(&t);
    // Caught-up fires run (completed, one after another), not skipped as overlaps.
    let caught = |name: &str| {
        let (_, out, _) = t
            .spawn([
                "runs",
                "--filter",
                &format!("tags.`cron.catch_up` = 'true' and attributes.run_name = '{name}' and attributes.status = 'FINISHED'"),
                "--json",
            ])
            .finish();
        serde_json::from_str::<Vec<Value>>(&out).unwrap().len()
    };
    assert_eq!(caught("last"), 1, "{err}");
    assert!((3..=5).contains(&caught("all")), "{err}");
    assert_eq!(caught("none"), 0);
    // One run per entry and fire time.
    let mut keys: Vec<String> = js
        .iter()
        .filter_map(|j| j["key"].as_str().map(str::to_string))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n);
}

/// `labhost cron FILE.rhai`: entries a script defines with `cron::schedule`, functions
/// included; `--once` fires one entry now.
#[test]
fn script_defined_entries_and_once() {
    let t = TestCmd::new()
        .file("job.rhai", "fs::append(\"script.txt\", \"s\");")
        .file(
            "sched.rhai",
            "let who = \"me\";\n\
             cron::schedule(\"tick\", \"* * * * * *\", || { print(`tick ${who}`); fs::append(\"ticks.txt\", \"t\"); });\n\
             cron::schedule(\"spin\", \"* * * * * *\", || { loop { } }, #{timeout: 0.4});\n\
             cron::schedule(\"job\", \"* * * * * *\", \"job.rhai\", #{overlap: \"allow\"});\n",
        );
    serve_for(&t, "sched.rhai", 3.5, &[]);
    let ticks = std::fs::read_to_string(t.path().join("ticks.txt")).unwrap();
    let script = std::fs::read_to_string(t.path().join("script.txt")).unwrap();
    assert!(ticks.len() >= 2 && script.len() >= 2, "{ticks} {script}");
    let js = jobs(&t);
    let ticks: Vec<&Value> = js
        .iter()
        .filter(|j| j["name"] == "tick" && j["status"] == "completed")
        .collect();
    assert!(ticks.len() >= 2, "{js:#?}");
    // A function fire's prints are in its run's log; its timeout stops it.
    let (_, out, _) = t.spawn(["logs", &ticks[0]["id"].to_string()]).finish();
    assert_eq!(out, "tick me\n");
    let spins: Vec<&Value> = js.iter().filter(|j| j["name"] == "spin").collect();
    assert!(!spins.is_empty(), "{js:#?}");
    assert!(
        spins.iter().all(|j| (j["status"] == "timed_out"
            && j["cancel_reason"] == "timed out after 0.4s")
            || (j["status"] == "cancelled"
                && j["cancel_reason"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("skipped"))),
        "{spins:#?}"
    );
    assert!(spins.iter().any(|j| j["status"] == "timed_out"));
    let o = TestCmd::new().file("ok.rhai", "print(\"now\");").file("bad.rhai", "throw 1;").file("s.yml", "- {name: ok, schedule: '@yearly', script: ok.rhai}\n- {name: bad, schedule: '@yearly', script: bad.rhai}\n").args(["cron", "s.yml", "--once", "ok"]).run();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = TestCmd::new()
        .file("bad.rhai", "throw 1;")
        .file(
            "s.yml",
            "- {name: bad, schedule: '@yearly', script: bad.rhai}\n",
        )
        .args(["cron", "s.yml", "--once", "bad"])
        .run();
    assert_eq!(o.code, 1, "{}", o.stderr);
}

/// `kill -9` of `labhost cron` while a fire runs: the fire's processes die with it (checked
/// in /proc), and the next `labhost cron` records that fire as failed, not as running forever
/// and not run again.
#[test]
fn kill_9_of_the_cron_host_leaves_nothing_running() {
    let t = TestCmd::new()
        .file("hold.rhai", "sh::run(\"sleep 45\");")
        .file(
            "s.yml",
            "- {name: hold, schedule: '* * * * * *', script: hold.rhai, catch_up: none}\n",
        );
    let r = t.spawn(["cron", "s.yml"]);
    let until = Instant::now() + Duration::from_secs(10);
    while alive("hold.rhai") == 0 {
        assert!(Instant::now() < until, "the fire did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    r.signal(libc::SIGKILL);
    let _ = r.finish();
    let until = Instant::now() + Duration::from_secs(10);
    while alive("hold.rhai") + alive("sleep 45") > 0 {
        assert!(
            Instant::now() < until,
            "a fire outlived its cron host: {:?} {:?}",
            matching("hold.rhai"),
            matching("sleep 45")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before: Vec<Value> = jobs(&t);
    assert!(
        before.iter().any(|j| j["status"] == "running"),
        "{before:#?}"
    );
    let err = serve_for(&t, "s.yml", 0.3, &["--grace", "0"]);
    assert!(
        err.contains("its labhost cron died while it ran; recorded as failed"),
        "{err}"
    );
    let after = jobs(&t);
    let first = after
        .iter()
        .find(|j| j["id"] == before.last().unwrap()["id"])
        .unwrap();
    assert_eq!(first["status"], "failed");
    assert!(first["error"]
        .as_str()
        .unwrap()
        .contains("the fire is not run again"));
    assert_eq!(after.iter().filter(|j| j["key"] == first["key"]).count(), 1);
}

/// SIGTERM to `labhost run` (how cron, systemd or `kill` stop a script) cancels the script
/// as Ctrl-C does: the commands it started are stopped too, and it exits 130.
#[test]
fn sigterm_stops_a_script_and_what_it_started() {
    let t = TestCmd::new().file("main.rhai", "sh::run(\"sleep 41\");");
    let r = t.spawn(["run", "main.rhai"]);
    let until = Instant::now() + Duration::from_secs(10);
    while alive("sleep 41") == 0 {
        assert!(Instant::now() < until, "the command did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    r.signal(libc::SIGTERM);
    let (code, _, err) = r.finish();
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(alive("sleep 41"), 0, "the command went with the script");
}

/// Malformed expressions and expressions that never fire are refused by `--check` with the
/// file, line and column of the wrong part and a caret under it; `@midnight` is taken.
#[test]
fn check_refuses_malformed_and_never_firing_expressions_at_the_wrong_part() {
    let cases = [
        // (expression, location of the wrong part, message, caret line)
        (
            "0,,5 * * * *",
            "s.yml:2:14:",
            "minute field: an empty item in the list '0,,5'",
            "    ^^^^",
        ),
        (",0 * * * *", "s.yml:2:14:", "an empty item", "    ^^"),
        (
            "0 0 15WW * *",
            "s.yml:2:18:",
            "'15WW' is not a day of month",
            "        ^^^^",
        ),
        ("0 9 * * L", "s.yml:2:22:", "5L", "            ^"),
        (
            "0 25 * * *",
            "s.yml:2:16:",
            "hour field: 25 is out of range",
            "      ^^",
        ),
        ("0 0 30 2 *", "s.yml:2:14:", "never fires", "    ^^^^^^^^^^"),
        (
            "@fortnightly",
            "s.yml:2:14:",
            "unknown nickname",
            "    ^^^^^^^^^^^^",
        ),
    ];
    for (expr, at, msg, caret) in cases {
        let o = TestCmd::new()
            .file("ok.rhai", "print(1);")
            .file(
                "s.yml",
                format!("- name: a\n  schedule: '{expr}'\n  script: ok.rhai\n"),
            )
            .args(["cron", "s.yml", "--check"])
            .run();
        assert_ne!(o.code, 0, "{expr} accepted");
        let want = format!("{at} bad schedule '{expr}': ");
        assert!(
            o.stderr.contains(&want) && o.stderr.contains(msg),
            "{expr}: want {want}…{msg}, got:\n{}",
            o.stderr
        );
        let lines: Vec<&str> = o.stderr.lines().collect();
        let i = lines
            .iter()
            .position(|l| l.trim() == expr)
            .unwrap_or_else(|| panic!("{}", o.stderr));
        assert_eq!(lines[i + 1], caret, "{expr}:\n{}", o.stderr);
        assert!(
            !o.dir.join(".labhost/cron").exists(),
            "state written for {expr}"
        );
    }
    let o = TestCmd::new()
        .file("ok.rhai", "print(1);")
        .file(
            "s.yml",
            "- {name: a, schedule: '@midnight', script: ok.rhai, timezone: Asia/Kolkata}\n",
        )
        .args([
            "cron",
            "s.yml",
            "--next",
            "2",
            "--from",
            "2026-06-01T12:00:00Z",
        ])
        .run();
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        o.stdout,
        "a (@midnight, Asia/Kolkata):\n  2026-06-02 00:00:00 IST\n  2026-06-03 00:00:00 IST\n"
    );
}

/// `--next N --from INSTANT` shows what an entry does on a DST night ahead: the fixed
/// 02:30 of a list falls in Berlin's spring gap and runs once right after the jump; an
/// interval entry skips the missing hour.
#[test]
fn next_from_an_instant_shows_the_dst_night() {
    let o = TestCmd::new()
        .file("ok.rhai", "print(1);")
        .file("s.yml", "- {name: fixed, schedule: '30 1,2 * * *', script: ok.rhai, timezone: Europe/Berlin}\n- {name: every, schedule: '30 * * * *', script: ok.rhai, timezone: Europe/Berlin}\n")
        .args(["cron", "s.yml", "--next", "4", "--from", "2026-03-29T00:00:00+01:00"])
        .run();
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        o.stdout,
        "fixed (30 1,2 * * *, Europe/Berlin):\n  2026-03-29 01:30:00 CET\n  2026-03-29 03:00:00 CEST\n  2026-03-30 01:30:00 CEST\n  2026-03-30 02:30:00 CEST\n\
         every (30 * * * *, Europe/Berlin):\n  2026-03-29 00:30:00 CET\n  2026-03-29 01:30:00 CET\n  2026-03-29 03:30:00 CEST\n  2026-03-29 04:30:00 CEST\n"
    );
    let o = TestCmd::new()
        .file("ok.rhai", "print(1);")
        .file(
            "s.yml",
            "- {name: a, schedule: '@daily', script: ok.rhai}\n",
        )
        .args(["cron", "s.yml", "--next", "1", "--from", "tomorrow"])
        .run();
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("'tomorrow' is not an RFC 3339 instant"),
        "{}",
        o.stderr
    );
}

/// `--once NAME`: the fire's output on the terminal as well as in its run's logs, the exit
/// code its outcome; `cron status` then shows the manual fire, marked as such, and no next
/// fire (nothing serves the schedule).
#[test]
fn once_streams_the_fire_and_status_shows_it_as_manual() {
    let t = TestCmd::new()
        .file("ok.rhai", "print(\"hello from the fire\");\nsh::run(\"echo from a child process\");")
        .file("bad.rhai", "print(\"about to fail\");\nthrow \"boom\";")
        .file("s.yml", "- {name: ok, schedule: '0 3 * * *', script: ok.rhai}\n- {name: bad, schedule: '@yearly', script: bad.rhai}\n");
    let (code, out, err) = t.spawn(["cron", "s.yml", "--once", "ok"]).finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("hello from the fire\n"), "{out}");
    let (code, out, err) = t.spawn(["cron", "s.yml", "--once", "bad"]).finish();
    assert_eq!(code, Some(1), "{err}");
    assert!(out.contains("about to fail\n"), "{out}");
    assert!(err.contains("error[throw]: boom"), "{err}");
    let js = jobs(&t);
    let ok = js.iter().find(|j| j["name"] == "ok").expect("ok's run");
    let (_, logs, _) = t.spawn(["logs", &ok["id"].to_string()]).finish();
    assert!(logs.contains("hello from the fire"), "{logs}");
    let (code, out, _) = t.spawn(["cron", "status"]).finish();
    assert_eq!(code, Some(0));
    assert!(out.contains("not served"), "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{out}"))
            .to_string()
    };
    assert!(
        line("ok ").contains("(manual)")
            && line("ok ").contains("completed")
            && line("ok ").ends_with("next -"),
        "{out}"
    );
    assert!(
        line("bad ").contains("(manual)")
            && line("bad ").contains("failed (exit code 1: error[throw]: boom)"),
        "{out}"
    );
    let (_, json, _) = t.spawn(["cron", "status", "--json"]).finish();
    let rows: Vec<Value> = serde_json::from_str(&json).unwrap();
    assert!(
        rows.iter()
            .all(|r| r["last_manual"] == true && r["last_fire"].is_null() && r["next"].is_null()),
        "{json}"
    );
}
