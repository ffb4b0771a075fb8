//! No job outlives its run: host death, cancel, timeouts, background and `setsid`
//! descendants, scripts that end without waiting, and no `pidfd_open` — checked against live
//! processes in /proc, in both containment modes (cgroup v2 where the machine allows it, and
//! the child-subreaper fallback, forced with LABHOST_CONTAINMENT=subreaper).
use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::TestCmd;

/// Both containment modes: the machine's choice, and the forced fallback.
const MODES: [&str; 2] = ["auto", "subreaper"];

fn cmd(mode: &str) -> TestCmd {
    let t = TestCmd::new().env("LABHOST_KILL_GRACE", "300ms");
    if mode == "subreaper" {
        t.env("LABHOST_CONTAINMENT", "subreaper")
    } else {
        t
    }
}

/// A live process (a zombie is not alive).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            rest.chars().next()
        })
        .is_some_and(|state| state != 'Z')
}

/// Live processes whose environment mentions `needle` (every job process carries its run
/// folder, which lies in the test's folder).
fn processes_of(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.windows(needle.len()).any(|w| w == needle.as_bytes()) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// Asserts that no process of the test's jobs (their run folders lie in `dir`) is alive.
fn assert_none_left(dir: &Path, mode: &str) {
    assert_eq!(
        processes_of(&dir.display().to_string()),
        Vec::<i32>::new(),
        "{mode}: job processes outlived their run"
    );
}

/// Starts `labhost run main.rhai` (a script that submits, prints "submitted" and sleeps) and
/// returns it with the pid its job wrote to gc.pid.
fn start_host(t: &TestCmd) -> (crate::util::Running, i32) {
    let mut r = t.spawn(["run", "main.rhai"]);
    r.expect_line("submitted");
    let gc = read_pid(&t.path().join("gc.pid"));
    (r, gc)
}

fn read_pid(p: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "{} never written", p.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The parent of `pid`, from /proc.
fn ppid(pid: i32) -> i32 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    s.rfind(')')
        .and_then(|i| s[i + 2..].split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// A job of two steps whose first is a grandchild (`sh -c` under the job's shell) that runs
/// until `go` exists; each step and each attempt leaves a line, and a point in its metrics.
/// A second attempt records whether the first one's grandchild was still alive when it
/// started (it must not be: it also held the GPU).
const TWO_STEPS: &str = r#"
    jobs::submit(#{key: "train", num_gpus: 1, command:
        "echo attempt >> attempts.txt; " +
        "echo '{\"name\":\"loss\",\"value\":1,\"step\":1}' >> $LABHOST_METRICS; " +
        // Alive means not a zombie (an orphan's zombie waits for init to reap it).
        "if [ -f gc.pid ] && [ -r /proc/$(cat gc.pid)/stat ] && ! grep -q ') Z ' /proc/$(cat gc.pid)/stat; then echo overlap >> overlap.txt; fi; " +
        "if [ ! -f gc.pid ]; then sh -c 'echo $$ > gc.pid; while [ ! -f go ]; do sleep 0.02; done; echo step1 >> steps.txt'; fi; " +
        "echo '{\"name\":\"loss\",\"value\":2,\"step\":2}' >> $LABHOST_METRICS; " +
        "echo step2 >> steps.txt"});
    print("submitted");
    time::sleep("1h");
"#;

fn job_json(t: &TestCmd) -> serde_json::Value {
    let (_, json, _) = t.spawn(["jobs", "--json"]).finish();
    let runs: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    runs[0].clone()
}

#[test]
fn kill_9_of_the_host_leaves_its_job_to_its_supervisor_which_records_it_once() {
    for mode in MODES {
        let t = cmd(mode)
            .env("LABHOST_FAKE_GPUS", "1x24GiB")
            .file("main.rhai", TWO_STEPS);
        let (r, gc) = start_host(&t);
        let leader = ppid(gc);
        let supervisor = ppid(leader);
        r.signal(libc::SIGKILL);
        r.finish();
        std::thread::sleep(Duration::from_millis(100));
        // The job runs on: its grandchild, its shell and the supervisor over them.
        for (what, pid) in [
            ("grandchild", gc),
            ("job shell", leader),
            ("supervisor", supervisor),
        ] {
            assert!(alive(pid), "{mode}: the job's {what} died with its host");
        }
        let cmdline = std::fs::read(format!("/proc/{supervisor}/cmdline")).unwrap();
        assert!(
            String::from_utf8_lossy(&cmdline).contains("__supervise"),
            "{mode}: the job's shell is not under the job supervisor"
        );
        let (_, st, _) = t.spawn(["status"]).finish();
        assert!(
            st.contains("gone: its job supervisor runs it on and records its end)")
                && st.contains("1 run(s) go on without their host")
                && !st.contains("whose host is gone"),
            "{mode}: {st}"
        );
        // The next labhost leaves it alone and waits for it; the work goes on to its end.
        let resume = t.spawn(["resume"]);
        std::thread::sleep(Duration::from_millis(300));
        assert!(alive(gc), "{mode}: resume stopped the running job");
        std::fs::write(t.path().join("go"), "").unwrap();
        let (code, _, err) = resume.finish();
        assert_eq!(code, Some(0), "{mode}: {err}");
        assert!(
            err.contains("run on under the job supervisor"),
            "{mode}: {err}"
        );
        let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
        assert_eq!(
            read("attempts.txt"),
            "attempt\n",
            "{mode}: the job ran again"
        );
        assert_eq!(
            read("steps.txt"),
            "step1\nstep2\n",
            "{mode}: each step once"
        );
        let job = job_json(&t);
        assert_eq!(
            (
                job["status"].as_str(),
                job["attempt"].as_i64(),
                job["exit_code"].as_i64()
            ),
            (Some("completed"), Some(1), Some(0)),
            "{mode}: {job}"
        );
        // Its metrics: each point once, the one written after the host died included.
        assert_eq!(loss_points(&t), "[[1, 1.0], [2, 2.0]]\n", "{mode}");
        wait_until("the supervisor exits", || !alive(supervisor));
        assert_none_left(t.path(), mode);
    }
}

#[test]
fn kill_9_of_the_host_and_its_supervisor_requeues_and_resume_runs_it_exactly_once() {
    for mode in MODES {
        let t = cmd(mode)
            .env("LABHOST_FAKE_GPUS", "1x24GiB")
            .file("main.rhai", TWO_STEPS);
        let (r, gc) = start_host(&t);
        let supervisor = ppid(ppid(gc));
        r.signal(libc::SIGKILL);
        r.finish();
        signal(supervisor, libc::SIGKILL);
        // Every thread of it, not only the main one (the others hold its files until they
        // exit).
        wait_until("the supervisor is gone", || {
            std::fs::read_dir(format!("/proc/{supervisor}/task"))
                .map(|d| {
                    d.flatten().all(|t| {
                        std::fs::read_to_string(t.path().join("stat"))
                            .map(|s| s.rfind(')').is_none_or(|i| s[i + 2..].starts_with('Z')))
                            .unwrap_or(true)
                    })
                })
                .unwrap_or(true)
        });
        // The premise: the grandchild outlived both (only its leader had a death signal).
        assert!(alive(gc), "{mode}: the grandchild died with its host");
        let (_, st, _) = t.spawn(["status"]).finish();
        assert!(
            st.contains(" gone)\n")
                && st.contains("1 run(s) whose host is gone: `labhost resume` continues them"),
            "{mode}: {st}"
        );
        let (code, _, err) = t.spawn(["resume"]).finish();
        assert_eq!(code, Some(0), "{mode}: {err}");
        assert!(
            !alive(gc),
            "{mode}: the first attempt's grandchild outlived resume"
        );
        let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
        assert_eq!(read("attempts.txt"), "attempt\nattempt\n", "{mode}");
        assert_eq!(
            read("steps.txt"),
            "step2\n",
            "{mode}: exactly one attempt completed"
        );
        assert_eq!(
            read("overlap.txt"),
            "",
            "{mode}: the second attempt started beside the first one's processes"
        );
        let job = job_json(&t);
        assert_eq!(
            (job["status"].as_str(), job["attempt"].as_i64()),
            (Some("completed"), Some(2)),
            "{mode}"
        );
        // The resumed run is judged on its own attempt's points.
        assert_eq!(loss_points(&t), "[[1, 1.0], [2, 2.0]]\n", "{mode}");
        assert_none_left(t.path(), mode);
    }
}

/// The `loss` history of job 1, as a script reads it.
fn loss_points(t: &TestCmd) -> String {
    std::fs::write(
        t.path().join("points.rhai"),
        "print(jobs::get(1).metrics().loss.map(|m| [m.step, m.value]));",
    )
    .unwrap();
    let (code, out, err) = t.spawn(["run", "points.rhai"]).finish();
    assert_eq!(code, Some(0), "{err}");
    out
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill with a plain pid of a process this test found under its own job.
    unsafe { libc::kill(pid, sig) };
}

#[test]
fn cancel_of_a_job_that_ignores_sigterm_returns_once_it_is_gone() {
    for mode in MODES {
        let o = cmd(mode)
            .script(
                r#"
            let j = jobs::submit(#{command: "trap '' TERM; echo $$ > leader.pid; sh -c 'trap \"\" TERM; echo $$ > child.pid; exec sleep 303'"});
            while !fs::exists("child.pid") || fs::read("child.pid") == "" { time::sleep(0.01); }
            let t0 = time::unix();
            print(j.cancel());
            print(j.wait());
            for f in ["leader.pid", "child.pid"] {
                // Gone when cancel returned (a zombie left for init to reap counts as gone).
                let p = fs::read(f);
                p.trim();
                let r = sh::run(`[ -r /proc/${p}/stat ] && ! grep -q ') Z ' /proc/${p}/stat && echo alive || echo gone`).stdout;
                r.trim();
                print(r);
            }
            print(j.info().cancel_reason);
            print(time::unix() - t0 >= 0.3);
            "#,
            )
            .run();
        o.success();
        assert_eq!(
            o.stdout, "cancelled\ncancelled\ngone\ngone\ncancelled by script\ntrue\n",
            "{mode}: {}",
            o.stderr
        );
    }
}

#[test]
fn background_and_setsid_descendants_are_gone_after_completion_timeout_and_cancel() {
    for mode in MODES {
        let o = cmd(mode)
            .script(
                r#"
            // Completion: the leader ends at once, its background sleep would live on.
            let a = jobs::submit(#{command: "sleep 301 >/dev/null 2>&1 & echo $! > a.pid; echo started"});
            print(a.wait());
            // Timeout: a setsid child (its own session and group) beside a foreground sleep.
            let b = jobs::submit(#{timeout: 1, command: "setsid sh -c 'echo $$ > b.pid; exec sleep 300' & sleep 300"});
            print(b.wait());
            // Cancel: the same, cancelled.
            let c = jobs::submit(#{command: "setsid sh -c 'echo $$ > c.pid; exec sleep 300' & sleep 300"});
            while !fs::exists("c.pid") || fs::read("c.pid") == "" { time::sleep(0.01); }
            print(c.cancel());
            for f in ["a.pid", "b.pid", "c.pid"] {
                let p = fs::read(f);
                p.trim();
                let r = sh::run(`[ -r /proc/${p}/stat ] && ! grep -q ') Z ' /proc/${p}/stat && echo alive || echo gone`).stdout;
                r.trim();
                print(r);
            }
            "#,
            )
            .run();
        o.success();
        assert_eq!(
            o.stdout, "completed\ntimed_out\ncancelled\ngone\ngone\ngone\n",
            "{mode}: {}",
            o.stderr
        );
        assert_none_left(&o.dir, mode);
    }
}

#[test]
fn a_script_that_ends_waits_for_its_jobs_and_an_interrupted_one_puts_them_back() {
    for mode in MODES {
        // Ends without waiting: the jobs are waited for, with a line saying so.
        let o = cmd(mode)
            .script(
                r#"
            jobs::submit(#{command: "sleep 0.3; echo one > one.txt"});
            jobs::submit(#{command: "sleep 0.3; echo two > two.txt"});
            print("script done");
            "#,
            )
            .run();
        o.success();
        assert_eq!(o.stdout, "script done\n");
        assert!(
            o.stderr
                .contains("waiting for 2 job(s) this script started"),
            "{mode}: {}",
            o.stderr
        );
        assert!(o.dir.join("one.txt").exists() && o.dir.join("two.txt").exists());

        // Interrupted: the running job is stopped (all of it) and queued again.
        let t = a_long_job_then(mode, r#"time::sleep("1h");"#);
        let (r, gc) = start_host(&t);
        r.signal(libc::SIGINT);
        let (code, _, err) = r.finish();
        assert_eq!(code, Some(130), "{mode}: {err}");
        assert_put_back(&t, &err, gc);
    }
}

/// A script that submits a job (its process writes `gc.pid`), prints `submitted`, then runs
/// `then`.
fn a_long_job_then(mode: &str, then: &str) -> TestCmd {
    cmd(mode).file(
        "main.rhai",
        format!(
            r#"
            jobs::submit(#{{key: "long", command: "sh -c 'echo $$ > gc.pid; exec sleep 300'"}});
            print("submitted");
            {then}
            "#
        ),
    )
}

/// The interrupted host stopped its job (process `gc`), said so, and queued it again.
fn assert_put_back(t: &TestCmd, err: &str, gc: i32) {
    assert!(
        err.contains("stopped job(s) 1 and put them back in the queue: `labhost resume` runs them"),
        "{err}"
    );
    assert!(!alive(gc), "the job's process outlived its host");
    let (_, json, _) = t.spawn(["jobs", "--json"]).finish();
    let runs: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(runs[0]["status"], "queued", "{json}");
}

/// Runs a job and a shell command whose own fork ignores SIGTERM (a grandchild of labhost:
/// no death signal reaches it), sends `sig` twice 100 ms apart, and returns the script's exit
/// code and stderr, the pids of the job's process and of the fork, and the test folder.
fn stop_twice(sig: i32) -> (Option<i32>, String, i32, i32, TestCmd) {
    let t = a_long_job_then(
        "auto",
        r#"sh::run("trap '' TERM; sh -c 'echo $$ > fork.pid; exec sleep 301'; :");"#,
    );
    let (r, gc) = start_host(&t);
    let fork = read_pid(&t.path().join("fork.pid"));
    r.signal(sig);
    std::thread::sleep(Duration::from_millis(100));
    r.signal(sig);
    let (code, _, err) = r.finish();
    (code, err, gc, fork, t)
}

/// A second SIGTERM stops a script as the first does (a parent-death signal comes once per
/// thread of a dying parent: a `labhost cron` killed with -9 sends its fire two): the job is
/// stopped and queued again, and the shell command's fork, which ignores SIGTERM, is killed
/// after the grace. A second Ctrl-C exits at once and still leaves no fork behind.
#[test]
fn a_second_sigterm_stops_a_script_as_the_first_and_a_second_ctrl_c_leaves_no_fork() {
    let (code, err, gc, fork, t) = stop_twice(libc::SIGTERM);
    assert_eq!(code, Some(130), "{err}");
    assert_put_back(&t, &err, gc);
    assert!(!alive(fork), "the command's fork outlived its host");

    let (code, err, gc, fork, _t) = stop_twice(libc::SIGINT);
    assert_eq!(code, Some(130), "{err}");
    wait_until("the job's process is gone after a hard exit", || !alive(gc));
    wait_until("the command's fork is gone after a hard exit", || {
        !alive(fork)
    });
}

#[test]
fn labhost_cancel_waits_until_the_job_is_gone_even_when_its_host_died() {
    let t = cmd("auto").file(
        "main.rhai",
        r#"
        jobs::submit(#{command: "sh -c 'echo $$ > gc.pid; exec sleep 300'"});
        print("submitted");
        time::sleep("1h");
        "#,
    );
    let (r, gc) = start_host(&t);
    wait_until("the job runs", || {
        let (_, out, _) = t.spawn(["jobs", "--status", "running"]).finish();
        out.lines().count() == 2
    });
    r.signal(libc::SIGKILL);
    r.finish();
    assert!(alive(gc));
    let (code, out, err) = t.spawn(["cancel", "1"]).finish();
    assert_eq!((code, out.as_str()), (Some(0), "1: cancelled\n"), "{err}");
    assert!(!alive(gc), "cancel returned while the job's process lived");
    let (_, table, _) = t.spawn(["jobs"]).finish();
    assert!(table.contains("cancelled by labhost cancel"), "{table}");
}

/// An `LD_PRELOAD` library whose `syscall()` answers ENOSYS for `pidfd_open`, as an old kernel
/// or a seccomp profile would.
fn no_pidfd_shim(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("nopidfd.c");
    std::fs::write(
        &src,
        r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <sys/syscall.h>
long syscall(long n, ...) {
    va_list ap; va_start(ap, n);
    long a = va_arg(ap, long), b = va_arg(ap, long), c = va_arg(ap, long);
    long d = va_arg(ap, long), e = va_arg(ap, long), f = va_arg(ap, long);
    va_end(ap);
    if (n == SYS_pidfd_open) { errno = ENOSYS; return -1; }
    long (*real)(long, ...) = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    return real(n, a, b, c, d, e, f);
}
"#,
    )
    .unwrap();
    let lib = dir.join("libnopidfd.so");
    let st = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .status()
        .expect("cc (gcc) to build the test shim");
    assert!(st.success());
    lib
}

#[test]
fn jobs_run_without_pidfd_open() {
    let shim_dir = tempfile::tempdir().unwrap();
    let lib = no_pidfd_shim(shim_dir.path());
    let lib = lib.to_str().unwrap();
    let o = cmd("auto")
        .env("LD_PRELOAD", lib)
        .script(
            r#"
            let s = jobs::pool([#{command: "exit 0"}, #{command: "exit 3"}, #{command: "sleep 0.2"}], #{max_workers: 2});
            print([s.completed, s.failed]);
            let j = jobs::submit(#{command: "sleep 30", timeout: 0.3});
            print(j.wait());
            "#,
        )
        .run();
    o.success();
    assert_eq!(o.stdout, "[2, 1]\ntimed_out\n", "{}", o.stderr);
    let o = TestCmd::new()
        .env("LD_PRELOAD", lib)
        .args(["-v", "status"])
        .run();
    o.success()
        .stdout_has("exit watch: SIGCHLD + waitpid(WNOHANG)");
    TestCmd::new()
        .args(["-v", "status"])
        .run()
        .success()
        .stdout_has("exit watch: pidfd")
        .stdout_has("containment: ");
}

#[test]
fn sh_run_with_a_timeout_does_not_wait_out_the_grace() {
    let o = TestCmd::new()
        .script(
            r#"
            let t0 = time::unix();
            try { sh::run("sleep 30", #{timeout: 0.3}); } catch (e) { print(e.kind); }
            print(time::unix() - t0 < 2.0);
            "#,
        )
        .run();
    o.success();
    assert_eq!(o.stdout, "sh.timeout\ntrue\n");
}

/// SIGTERM to labhost stops what an `sh::run` and a cron fire started exactly as it stops a
/// job's processes: a background descendant that ignores SIGTERM gets SIGKILL after the
/// grace, and nothing of the command is left (checked in /proc, by the marker every process
/// of the command carries in its environment).
#[test]
fn sigterm_stops_sh_run_and_cron_fire_descendants_that_ignore_it() {
    // The command: a descendant in the background that ignores SIGTERM, then a wait.
    let stubborn = "trap '' TERM; (trap '' TERM; sleep 60; sleep 60) & echo started; wait";
    let script = format!(
        "sh::run(\"{stubborn}\", #{{env: #{{LH_MARK: \"lh-mark-\" + env::get(\"LH_TAG\", \"\")}}}});"
    );
    for (what, args) in [
        ("sh::run", vec!["run", "main.rhai"]),
        ("cron fire", vec!["cron", "s.yml", "--grace", "0"]),
    ] {
        let tag = format!("{}-{}", std::process::id(), what.replace([':', ' '], "_"));
        let needle = format!("LH_MARK=lh-mark-{tag}");
        let t = TestCmd::new()
            .env("LABHOST_KILL_GRACE", "300ms")
            .env("LH_TAG", &tag)
            .file("main.rhai", &script)
            .file(
                "s.yml",
                "- {name: hold, schedule: '* * * * * *', script: main.rhai, overlap: skip, catch_up: none}\n",
            );
        let r = t.spawn(args);
        wait_until(&format!("{what}: the command started"), || {
            processes_of(&needle).len() >= 2
        });
        r.signal(libc::SIGTERM);
        let (_, _, err) = r.finish();
        wait_until(
            &format!("{what}: nothing of the command is left ({err})"),
            || processes_of(&needle).is_empty(),
        );
    }
}

/// Subreaper mode finds a job's processes by their token, which a daemon that cleared its
/// environment does not carry: whatever the job left re-parented to the job supervisor is
/// stopped when the job ends (no other job runs to claim it).
#[test]
fn an_environment_less_setsid_daemon_goes_with_its_job_in_subreaper_mode() {
    let t = cmd("subreaper").script(
        r#"
        let j = jobs::submit(#{command: "env -i setsid sh -c 'echo $$ > d.pid; exec /bin/sleep 300' & sleep 0.3; echo ok"});
        print(j.wait());
        "#,
    );
    let o = t.run();
    o.success();
    assert_eq!(o.stdout, "completed\n", "{}", o.stderr);
    let daemon = read_pid(&o.dir.join("d.pid"));
    wait_until("the daemon is gone", || !alive(daemon));
}
