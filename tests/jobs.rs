//! The persistent job engine across real processes: crash/resume under kill -9, two hosts on
//! one state directory, bad specs, and the jobs/logs/cancel commands.
use std::collections::HashMap;

use crate::util::TestCmd;

/// 200 jobs, each: log "start KEY", then its work in a grandchild (`sh -c` under the job's
/// shell, which a host's death does not kill by itself): note an overlap if the previous
/// attempt's worker still lives, record its own pid, sleep 0–200 ms, write done/KEY atomically,
/// log "done KEY".
const POOL: &str = r#"
let specs = [];
for i in 0..200 {
    let key = `k${i}`;
    let ms = (i * 37) % 200;
    specs.push(#{key: key, command: `echo start ${key} >> ledger.txt; mkdir -p done running; sh -c '` +
                 `if [ -f running/${key} ] && [ -r /proc/$(cat running/${key})/stat ] && ! grep -q ") Z " /proc/$(cat running/${key})/stat; then echo overlap ${key} >> ledger.txt; fi; ` +
                 `echo $$ > running/${key}; sleep 0.${ms / 100}${(ms / 10) % 10}${ms % 10}; ` +
                 `echo x > done/${key}.tmp && mv done/${key}.tmp done/${key}; echo done ${key} >> ledger.txt'`,
                 cwd: CWD});
}
let s = jobs::pool(specs, #{max_workers: 4});
print(`completed ${s.completed} of ${s.total}`);
"#;

#[test]
fn kill_9_the_host_twenty_times_and_every_job_runs_to_completion_once() {
    let t = TestCmd::new();
    let cwd = t.path().display().to_string();
    let t = t.file("pool.rhai", POOL.replace("CWD", &format!("{cwd:?}")));
    t.kill_9_at_random(&["run", "pool.rhai"], 20, 150, 700);
    let (code, out, err) = t.spawn(["run", "pool.rhai"]).finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "completed 200 of 200\n");
    // Exactly one done marker per job.
    for i in 0..200 {
        assert!(
            t.path().join(format!("done/k{i}")).exists(),
            "k{i} has no done marker"
        );
    }
    let markers = std::fs::read_dir(t.path().join("done")).unwrap().count();
    assert_eq!(markers, 200, "stray temp files or duplicates");
    // The database says completed for all; every start the ledger saw is an attempt the
    // database handed out (an attempt may end before its process starts, when the host is
    // killed right after claiming); and each job's last ledger entry is its own completion:
    // nothing was started again after it completed.
    let (_, json, _) = t.spawn(["jobs", "--json", "--limit", "1000"]).finish();
    let runs: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(runs.len(), 200);
    let ledger = std::fs::read_to_string(t.path().join("ledger.txt")).unwrap();
    let mut starts: HashMap<String, i64> = HashMap::new();
    let mut last: HashMap<String, &str> = HashMap::new();
    assert!(
        !ledger.contains("overlap"),
        "an attempt started while the previous one's worker lived:\n{ledger}"
    );
    // And nothing of any attempt is left running.
    let needle = t.path().display().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if env.windows(needle.len()).any(|w| w == needle.as_bytes()) && !stat.contains(") Z ") {
            panic!("process {pid} of a job outlived every host: {stat}");
        }
    }
    for l in ledger.lines() {
        let (what, key) = l.split_once(' ').unwrap();
        if what == "start" {
            *starts.entry(key.to_string()).or_default() += 1;
        }
        last.insert(key.to_string(), what);
    }
    for r in &runs {
        assert_eq!(r["status"], "completed", "{r}");
        let key = r["key"].as_str().unwrap();
        let n = starts.get(key).copied().unwrap_or(0);
        assert!(
            n >= 1 && n <= r["attempt"].as_i64().unwrap(),
            "{key}: {n} starts, {} attempts",
            r["attempt"]
        );
        assert_eq!(
            last.get(key).copied(),
            Some("done"),
            "{key} was started after it completed"
        );
    }
}

#[test]
fn two_hosts_on_one_state_never_start_a_job_twice() {
    let script = |who: &str| {
        format!(
            r#"
            let specs = [];
            for i in 0..60 {{ specs.push(#{{key: `{who}${{i}}`, command: `echo $LABHOST_JOB_ID >> ../ledger.txt; sleep 0.01`, cwd: "work"}}); }}
            let s = jobs::pool(specs, #{{max_workers: 3}});
            print(s.completed);
            "#
        )
    };
    let t = TestCmd::new()
        .file("a.rhai", script("a"))
        .file("b.rhai", script("b"))
        .file("work/.keep", "");
    let a = t.spawn(["run", "a.rhai"]);
    let b = t.spawn(["run", "b.rhai"]);
    let (ca, oa, ea) = a.finish();
    let (cb, ob, eb) = b.finish();
    assert_eq!((ca, oa.as_str()), (Some(0), "60\n"), "{ea}");
    assert_eq!((cb, ob.as_str()), (Some(0), "60\n"), "{eb}");
    let ledger = std::fs::read_to_string(t.path().join("ledger.txt")).unwrap();
    let mut ids: Vec<&str> = ledger.lines().collect();
    assert_eq!(ids.len(), 120);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 120, "a job was started twice");
}

#[test]
fn bad_job_specs_are_clear_errors() {
    let run = |s: &str| TestCmd::new().script(s).run();
    run("jobs::submit(#{comand: \"true\"});")
        .code(1)
        .stderr_has("error[invalid_argument]: jobs::submit spec: unknown key `comand` (did you mean `command`?)");
    run("jobs::submit(#{command: \"true\", num_gpus: -1});")
        .code(1)
        .stderr_has("error[invalid_argument]: jobs::submit spec: `num_gpus` must be an integer of 0 or more, got -1 (an integer)");
    run("jobs::submit(#{command: \"true\", depends_on: [4242]});")
        .code(1)
        .stderr_has("error[jobs.unknown_dependency]: depends_on: no job with id 4242");
    run("jobs::submit(#{command: \"true\", cwd: \"/no/such/dir\"});")
        .code(1)
        .stderr_has("error[jobs.invalid_spec]: working directory '/no/such/dir' does not exist");
    run("let j = jobs::submit(#{command: [\"no-such-program-xyz\"]}); print(j.wait()); print(j.exit_code); print(j.info().error);")
        .success()
        .stdout_is("failed\n127\ncommand not found: no-such-program-xyz\n");
    run("jobs::submit(#{command: \"true\", run_in: \"cloud\"});")
        .code(1)
        .stderr_has(
            "error[invalid_argument]: jobs::submit spec: `run_in` must be one of \"host\", \"docker\", got \"cloud\"",
        );
    run("jobs::submit(#{command: \"true\", image: \"busybox\"});")
        .code(1)
        .stderr_has(
            "error[jobs.invalid_spec]: image, mounts and network go with run_in: \"docker\"",
        );
    run(
        "jobs::submit(#{command: \"true\", run_in: \"docker\", mounts: [\"/no/such/src:/data\"]});",
    )
    .code(1)
    .stderr_has("error[docker.invalid_mount]");
    run("let a = jobs::submit(#{command: \"exit 1\"}); let b = jobs::submit(#{command: \"true\", depends_on: [a]}); print(b.wait()); print(b.info().error);")
        .success()
        .stdout_has("failed\ndependency ");
}

#[test]
fn retries_timeouts_and_idempotency_keys() {
    TestCmd::new()
        .script(
            r#"
            fs::write("count", "");
            let j = jobs::submit(#{command: "echo x >> count; [ $(wc -l < count) -ge 3 ]", retries: 2, backoff: 0.05});
            print(j.wait() + " after " + j.info().attempt);
            let t = jobs::submit(#{command: "sleep 30", timeout: 0.3});
            print(t.wait());
            let k1 = jobs::submit(#{command: "echo once >> once.txt", key: "only-once"});
            k1.wait();
            let k2 = jobs::submit(#{command: "echo once >> once.txt", key: "only-once"});
            print(k2.id == k1.id);
            print(fs::read("once.txt"));
            "#,
        )
        .run()
        .success()
        .stdout_is("completed after 3\ntimed_out\ntrue\nonce\n\n");
}

#[test]
fn jobs_logs_and_cancel_commands() {
    let t = TestCmd::new().file(
        "main.rhai",
        r#"
        let j = jobs::submit(#{command: "echo started; sleep 300", name: "long"});
        while j.logs() == "" || j.status() != "running" { time::sleep(0.05); }
        print(j.id);
        print(j.wait());
        "#,
    );
    let mut r = t.spawn(["run", "main.rhai"]);
    let id = r.line();
    let (_, table, _) = t.spawn(["jobs"]).finish();
    assert!(
        table
            .lines()
            .any(|l| l.contains(" running ") && l.contains("long")),
        "{table}"
    );
    let (_, logs, _) = t.spawn(["logs", &id]).finish();
    assert_eq!(logs, "started\n");
    let (code, out, _) = t.spawn(["cancel", &id]).finish();
    assert_eq!((code, out), (Some(0), format!("{id}: cancelled\n")));
    // The host running it sees the cancel and kills the process.
    assert_eq!(r.line(), "cancelled");
    assert_eq!(r.finish().0, Some(0));
    let (code, _, err) = t.spawn(["logs", "99999"]).finish();
    assert_eq!(code, Some(2));
    assert!(err.contains("no job with id 99999"));
}

#[test]
fn a_secret_in_a_job_env_reaches_the_job_but_not_the_store() {
    const SECRET: &str = "job-s3cret-value-77";
    let o = TestCmd::new()
        .env("JOB_TOKEN", SECRET)
        .script(
            r#"
            let tok = secrets::get("job_token");
            let j = jobs::submit(#{command: "[ \"$TOKEN\" = \"$EXPECTED\" ] && echo token-ok", env: #{TOKEN: tok, EXPECTED: env::get("JOB_TOKEN")}});
            print(j.wait());
            print(j.logs());
            print(fs::read(j.run_dir + "/spec.json").contains("***"));
            "#,
        )
        .run();
    o.success().stdout_is("completed\ntoken-ok\n\ntrue\n");
    // The database (with its WAL) and the run folder never hold it.
    let mut files = vec![
        o.dir.join(".labhost/labhost.db"),
        o.dir.join(".labhost/labhost.db-wal"),
    ];
    files.extend(
        std::fs::read_dir(o.dir.join(".labhost/runs/1"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file()),
    );
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(SECRET),
            "secret in {}",
            f.display()
        );
    }
}

/// A job that prints its secret — whole, and split across two writes with a pause between
/// them — to stdout and stderr: no log file, no `labhost logs`, no `j.logs()` holds it.
#[test]
fn a_secret_a_job_prints_never_reaches_its_logs_or_the_cli() {
    const SECRET: &str = "tok-5f2a9c-SUPERSECRET";
    let o = TestCmd::new()
        .env("JOB_TOKEN", SECRET)
        .script(
            r#"
            let tok = secrets::get("job_token");
            let half = "printf 'token=%s' \"${TOKEN%%-SUPER*}\"; sleep 0.3; printf '%s\\n' \"-SUPER${TOKEN##*-SUPER}\"";
            let j = jobs::submit(#{command: `echo "token=$TOKEN"; echo "err=$TOKEN" >&2; ${half}; { ${half}; } >&2`, env: #{TOKEN: tok}});
            print(j.wait());
            print(j.logs());
            "#,
        )
        .run();
    o.success();
    assert!(
        !o.stdout.contains(SECRET) && !o.stdout.contains("SUPERSECRET"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("token=***"), "{}", o.stdout);
    let logs = o.dir.join(".labhost/runs/1");
    for f in ["stdout.log", "stderr.log"] {
        let text = std::fs::read_to_string(logs.join(f)).unwrap();
        assert!(!text.contains("SUPERSECRET"), "{f}: {text}");
        assert_eq!(text.matches("***").count(), 2, "{f}: {text}");
    }
    for args in [vec!["logs", "1"], vec!["logs", "1", "--stderr"]] {
        let l = TestCmd::new()
            .env("LABHOST_HOME", o.dir.join(".labhost").to_str().unwrap())
            .args(args.clone())
            .run();
        l.success();
        assert!(!l.stdout.contains("SUPERSECRET"), "{args:?}: {}", l.stdout);
        assert!(l.stdout.contains("=***"), "{args:?}: {}", l.stdout);
    }
}

#[test]
fn a_blocking_job_ends_before_later_ones_start() {
    TestCmd::new()
        .script(
            r#"
            let specs = [
                #{command: "echo before >> order.txt"},
                #{command: "sleep 0.3; echo barrier >> order.txt", blocking: true},
                #{command: "echo after >> order.txt"},
            ];
            let s = jobs::pool(specs, #{max_workers: 4});
            print(s.completed);
            let lines = fs::read("order.txt").split("\n");
            print(lines.index_of("barrier") < lines.index_of("after"));
            "#,
        )
        .run()
        .success()
        .stdout_is("3\ntrue\n");
}

#[test]
fn resume_finishes_the_jobs_of_a_killed_host() {
    let t = TestCmd::new().file(
        "main.rhai",
        r#"
        for i in 0..10 { jobs::submit(#{command: `sleep 0.2; echo ${i} >> done.txt`, key: `r${i}`}); }
        print("submitted");
        time::sleep("1h");
        "#,
    );
    let mut r = t.spawn(["run", "main.rhai"]);
    r.expect_line("submitted");
    r.signal(libc::SIGKILL);
    r.finish();
    let (code, _, err) = t.spawn(["resume", "--workers", "4"]).finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.ends_with("0 job(s) left\n"), "{err}");
    let (_, json, _) = t.spawn(["jobs", "--json"]).finish();
    let runs: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(runs.len(), 10);
    assert!(runs.iter().all(|r| r["status"] == "completed"), "{json}");
    let mut done: Vec<i64> = std::fs::read_to_string(t.path().join("done.txt"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    done.sort();
    done.dedup();
    assert_eq!(done, (0..10).collect::<Vec<_>>());
}

#[test]
fn a_pool_reports_progress_on_stderr_and_fail_fast_cancels_the_rest() {
    let t = TestCmd::new().file(
        "main.rhai",
        r#"
        let specs = [#{command: "exit 1"}];
        for i in 0..5 { specs.push(#{command: "sleep 30"}); }
        let s = jobs::pool(specs, #{max_workers: 1, fail_fast: true});
        print([s.failed, s.cancelled, s.completed]);
        let s = jobs::pool([#{command: "true"}, #{command: "exit 2"}], #{max_workers: 2});
        print([s.completed, s.failed]);
        // One key twice is one job: the pool still ends.
        let s = jobs::pool([#{command: "true", key: "twice"}, #{command: "true", key: "twice"}], #{quiet: true});
        print([s.total, s.completed, s.jobs[0].id == s.jobs[1].id]);
        "#,
    );
    let (code, out, err) = t.spawn(["run", "main.rhai"]).finish();
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "[1, 5, 0]\n[1, 1]\n[2, 2, true]\n"),
        "{err}"
    );
    assert!(
        err.contains("pool: 6/6 done, 0 running, 0 queued, 1 failed, 5 cancelled"),
        "{err}"
    );
    assert!(
        err.contains("pool: 2/2 done, 0 running, 0 queued, 1 failed"),
        "{err}"
    );
    let (_, _, err) = t.spawn(["-q", "run", "main.rhai"]).finish();
    assert!(!err.contains("pool:"), "{err}");
}

#[test]
fn a_nussl_pipeline_runs_in_order_and_a_second_run_only_retries_what_failed() {
    let t = TestCmd::new()
        .env("STEP_WORD", "mixed")
        .file(
            "pipeline.yml",
            r#"
num_jobs: 2
jobs:
# nussl: blocking data preparation first
- script: prep.sh
  config: -y data.yml
  blocking: true
- command: "test -f prepared && echo ${STEP_WORD} $LABHOST_JOB_ID >> ledger.txt"
  run_in: host
- script: tools/flaky.sh
  args: [one, "two words"]
- script: check.rhai
  args: "--n=3"
"#,
        )
        .file(
            "prep.sh",
            "sleep 0.3; echo \"prep $*\" >> ledger.txt; touch prepared\n",
        )
        .file(
            "tools/flaky.sh",
            "echo \"flaky $1|$2\" >> ledger.txt; test ! -f fail\n",
        )
        .file(
            "check.rhai",
            "fs::append(\"ledger.txt\", `rhai ${OPTS.n}\n`);\n",
        )
        .file("fail", "");
    let (code, out, err) = t.spawn(["pipeline", "pipeline.yml"]).finish();
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.starts_with("3 of 4 job(s) completed\n"), "{out}");
    assert!(out.contains(" failed (labhost logs "), "{out}");
    assert!(err.contains("pipeline.yml: 4/4 done"), "{err}");
    let ledger = std::fs::read_to_string(t.path().join("ledger.txt")).unwrap();
    let lines: Vec<&str> = ledger.lines().collect();
    assert_eq!(lines[0], "prep -y data.yml", "{ledger}");
    assert!(lines.iter().any(|l| l.starts_with("mixed ")), "{ledger}");
    assert!(lines.contains(&"flaky one|two words"), "{ledger}");
    assert!(lines.contains(&"rhai 3"), "{ledger}");
    assert_eq!(lines.len(), 4);

    // Again, with the cause of the failure gone: only the failed job runs.
    std::fs::remove_file(t.path().join("fail")).unwrap();
    let (code, out, err) = t.spawn(["pipeline", "pipeline.yml"]).finish();
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "4 of 4 job(s) completed\n"),
        "{err}"
    );
    let ledger = std::fs::read_to_string(t.path().join("ledger.txt")).unwrap();
    assert_eq!(ledger.lines().count(), 5, "{ledger}");
    assert_eq!(ledger.lines().last(), Some("flaky one|two words"));

    // --rerun runs everything; --dry-run shows the resolved commands and runs nothing.
    let (code, out, _) = t.spawn(["pipeline", "--dry-run", "pipeline.yml"]).finish();
    assert_eq!(code, Some(0));
    assert!(out.contains("sh prep.sh -y data.yml"), "{out}");
    assert!(out.contains("sh tools/flaky.sh one 'two words'"), "{out}");
    assert!(out.contains("blocking"), "{out}");
    assert!(out.ends_with("4 job(s), 2 at once\n"), "{out}");
    let (code, _, err) = t.spawn(["pipeline", "--rerun", "pipeline.yml"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let ledger = std::fs::read_to_string(t.path().join("ledger.txt")).unwrap();
    assert_eq!(ledger.lines().count(), 9, "{ledger}");
}

#[test]
fn bad_pipelines_are_clear_errors() {
    let t = TestCmd::new()
        .file("typo.yml", "jobs:\n- script: a.sh\n  blockng: true\n")
        .file("both.yml", "- script: a.sh\n  command: echo\n")
        .file("where.yml", "- command: echo\n  run_in: cloud\n")
        .file("none.yml", "jobs:\n- num_gpus: 1\n")
        .file("scalar.yml", "just text\n")
        .file("zero.yml", "num_jobs: 0\njobs: []\n");
    for (file, want) in [
        ("typo.yml", "typo.yml:3:3: jobs[0]: unknown field `blockng`"),
        (
            "both.yml",
            "both.yml: jobs[0]: give either `script` or `command`, not both",
        ),
        (
            "where.yml",
            "where.yml:2:11: jobs[0]: run_in must be host, container or docker, not \"cloud\"",
        ),
        (
            "none.yml",
            "none.yml: jobs[0]: a job needs `script` or `command`",
        ),
        (
            "scalar.yml",
            "scalar.yml: a pipeline is a list of jobs, or a map with `jobs:`",
        ),
        (
            "zero.yml",
            "zero.yml:1:1: num_jobs must be 1 or more, not 0",
        ),
    ] {
        let (code, out, err) = t.spawn(["pipeline", file]).finish();
        assert_eq!(code, Some(1), "{file}: {out}{err}");
        assert!(err.contains(want), "{file}: {err}");
    }
}

/// The metrics channel is labhost's file: a job that puts a FIFO, a symlink out of its run
/// or `/dev/zero` at `$LABHOST_METRICS`, writes a 50 MB line or a 300-character metric name,
/// ends on its own terms (the FIFO one on its timeout), labhost reads nothing outside the
/// run folder, quotes no more than a bounded piece of a bad line, and every listing works.
#[test]
fn hostile_metrics_files_neither_hang_the_host_nor_reach_outside_the_run() {
    let t = TestCmd::new().script(
        r#"
let fifo = jobs::submit(#{command: "rm -f $LABHOST_METRICS; mkfifo $LABHOST_METRICS; sleep 30", timeout: 3.0});
let link = jobs::submit(#{command: "ln -sf /etc/passwd $LABHOST_METRICS; sleep 1"});
let zero = jobs::submit(#{command: "ln -sf /dev/zero $LABHOST_METRICS; sleep 1"});
let big = jobs::submit(#{command: "head -c 50000000 /dev/zero | tr '\\0' x >> $LABHOST_METRICS; echo >> $LABHOST_METRICS; echo '{\"name\":\"ok\",\"value\":1,\"step\":1}' >> $LABHOST_METRICS"});
let name = jobs::submit(#{command: "printf '{\"name\":\"%0300d\",\"value\":1,\"step\":1}\\n' 0 >> $LABHOST_METRICS"});
print([fifo.wait(), link.wait(), zero.wait(), big.wait(), name.wait()]);
print([fifo.metrics().len(), link.metrics().len(), zero.metrics().len(), name.metrics().len()]);
print(big.metrics().keys());
"#,
    );
    let t0 = std::time::Instant::now();
    let (code, stdout, stderr) = t.spawn(["run", "main.rhai"]).finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(
        stdout,
        "[\"timed_out\", \"completed\", \"completed\", \"completed\", \"completed\"]\n[0, 0, 0, 0]\n[\"ok\"]\n",
        "{stderr}"
    );
    assert!(!stderr.contains("root:"), "{stderr}");
    assert!(stderr.len() < 20_000, "{} bytes of warnings", stderr.len());
    for cmd in [&["runs"][..], &["jobs"], &["status"]] {
        let (code, _, err) = t.spawn(cmd).finish();
        assert_eq!(code, Some(0), "{cmd:?}: {err}");
    }
}

/// A host that exits empties the WAL into the database: a state folder does not keep a
/// write-ahead log many times the database's size after a long run.
#[test]
fn the_wal_is_emptied_when_the_host_exits() {
    let t = TestCmd::new().script(
        "let js = []; for i in 0..200 { js.push(jobs::submit(#{command: [\"true\"], name: `j${i}`})); }\nfor j in js { j.wait(); }\nprint(\"done\");",
    );
    let dir = t.path().to_path_buf();
    let o = t.run();
    o.success().stdout_is("done\n");
    let wal = dir.join(".labhost/labhost.db-wal");
    let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, 0, "{} bytes left in the WAL", len);
}

/// A retried job is judged on its own attempt: each attempt reports steps 1–3; the history
/// read back holds the last attempt's three points once, not six (or nine) mixed ones.
#[test]
fn a_retry_reports_its_own_metric_history() {
    let t = TestCmd::new().script(
        r#"
let j = jobs::submit(#{retries: 1, backoff: 0.1, command: `if [ -f tried ]; then v=2; else v=1; touch tried; fi
for i in 1 2 3; do echo "{\"name\":\"m\",\"value\":$v,\"step\":$i}" >> $LABHOST_METRICS; done
[ $v = 2 ]`});
print(j.wait());
print(j.metrics().m.map(|p| [p.step, p.value]));
"#,
    );
    t.run()
        .success()
        .stdout_is("completed\n[[1, 2.0], [2, 2.0], [3, 2.0]]\n");
}

/// Jobs start in the script's environment of the moment they start, though the job supervisor
/// that starts them was started with the first job.
#[test]
fn a_job_sees_what_its_script_set_in_the_environment_after_the_first_job() {
    TestCmd::new()
        .script(
            r#"
            jobs::submit(#{command: "true"}).wait();
            env::set("LABHOST_T_LATE", "late-value");
            env::unset("HOME");
            let j = jobs::submit(#{command: "echo ${LABHOST_T_LATE}:${HOME:-unset}"});
            j.wait();
            print(j.logs());
            "#,
        )
        .run()
        .success()
        .stdout_is("late-value:unset\n\n");
}

/// Another process holds the state database's write lock past the busy timeout: the host
/// tries again a few times, then stops taking work, says why once and exits non-zero. The
/// ends it could not record are not lost: a job that finished is never run again.
#[test]
fn a_lock_held_past_the_busy_timeout_stops_the_host_and_loses_no_finished_job() {
    let t = TestCmd::new()
        .env("LABHOST_BUSY_TIMEOUT", "300ms")
        .file(
            "main.rhai",
            r#"
            let specs = [];
            for i in 0..12 { specs.push(#{command: `sleep 0.2; echo ${i} >> done.txt`, key: `k${i}`}); }
            let s = jobs::pool(specs, #{max_workers: 2, quiet: true});
            print([s.completed, s.failed]);
            "#,
        )
        .file(
            "hold.py",
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             time.sleep(float(sys.argv[2]))\n\
             c.execute('COMMIT')\n",
        );
    let host = t.spawn(["run", "main.rhai"]);
    let done = t.path().join("done.txt");
    let lines = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while lines(&done) < 2 {
        assert!(std::time::Instant::now() < deadline, "no job ran");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut holder = std::process::Command::new("python3")
        .arg(t.path().join("hold.py"))
        .arg(t.path().join(".labhost/labhost.db"))
        .arg("10")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let (code, _, err) = host.finish();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("error[jobs.store]"), "{err}");
    assert_eq!(
        err.matches("this labhost starts no new job").count(),
        1,
        "said once: {err}"
    );
    assert!(holder.wait().unwrap().success());
    // The lock is gone: running the script again finishes the rest, and runs nothing twice.
    let (code, out, err) = t.spawn(["run", "main.rhai"]).finish();
    assert_eq!((code, out.as_str()), (Some(0), "[12, 0]\n"), "{err}");
    let mut ran: Vec<i64> = std::fs::read_to_string(&done)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    ran.sort_unstable();
    assert_eq!(ran, (0..12).collect::<Vec<i64>>(), "each job exactly once");
}

/// `LABHOST_LOG_LIMIT` bounds every job's logs (a trial that writes without end once filled
/// the disk): both files keep the latest output, the part before is in `.1`, nothing more.
#[test]
fn a_log_limit_keeps_each_log_within_it_and_the_latest_output() {
    let t = TestCmd::new().env("LABHOST_LOG_LIMIT", "64KiB").script(
        r#"
        let j = jobs::submit(#{command: "seq 2000000; seq 1000000 >&2; echo last-out; echo last-err >&2"});
        print(j.wait());
        "#,
    );
    let o = t.run();
    o.success();
    assert_eq!(o.stdout, "completed\n", "{}", o.stderr);
    let run = o.dir.join(".labhost/runs/1");
    for (name, last) in [("stdout.log", "last-out\n"), ("stderr.log", "last-err\n")] {
        let now = std::fs::read_to_string(run.join(name)).unwrap();
        let before = std::fs::metadata(run.join(format!("{name}.1")))
            .unwrap()
            .len();
        assert!(now.starts_with(&format!(
            "[labhost] log_limit 64.0KiB: the output before this line is in {name}.1"
        )));
        assert!(now.ends_with(last), "{name}: {}", &now[now.len() - 40..]);
        assert!(now.len() <= 32 * 1024 && before <= 32 * 1024, "{name}");
    }
}

/// A test folder with `main.rhai`: `script` with `CWD` replaced by the folder (quoted).
fn with_main(script: &str) -> TestCmd {
    let t = TestCmd::new();
    let cwd = format!("{:?}", t.path().display().to_string());
    t.file("main.rhai", script.replace("CWD", &cwd))
}

/// The time (ns) on the line of `spans` that begins with `what`.
fn span_at(spans: &str, what: &str) -> u128 {
    let l = spans.lines().find(|l| l.starts_with(what)).unwrap();
    l.split(' ').nth(1).unwrap().parse().unwrap()
}

/// After a short job, a worker hands its slot's next job to the job supervisor while the
/// current one runs, to start the moment it ends: that job waits its turn (one worker never
/// runs two jobs at once), and a cancel before its turn means it never starts at all.
#[test]
fn the_job_handed_over_next_in_a_slot_waits_its_turn_and_a_cancel_keeps_it_from_starting() {
    let t = with_main(
        r#"
        jobs::workers(1);
        let a = jobs::submit(#{command: "true"});
        let b = jobs::submit(#{command: "echo b-start $(date +%s%N) >> spans; sleep 1; echo b-end $(date +%s%N) >> spans", cwd: CWD});
        let c = jobs::submit(#{command: "touch c-ran", cwd: CWD});
        let d = jobs::submit(#{command: "echo d-start $(date +%s%N) >> spans", cwd: CWD});
        while b.status() != "running" { time::sleep(0.01); }
        print(c.status());
        c.cancel();
        print([a.wait(), b.wait(), c.wait(), d.wait()]);
        print([c.info().attempt, d.info().attempt]);
        "#,
    );
    let (code, out, err) = t.spawn(["run", "main.rhai"]).finish();
    assert_eq!(
        (code, out.as_str()),
        (
            Some(0),
            "leased\n[\"completed\", \"completed\", \"cancelled\", \"completed\"]\n[1, 1]\n"
        ),
        "{err}"
    );
    assert!(!t.path().join("c-ran").exists(), "the cancelled job ran");
    let spans = std::fs::read_to_string(t.path().join("spans")).unwrap();
    let at = |what: &str| span_at(&spans, what);
    assert!(
        at("b-start") < at("b-end") && at("b-end") < at("d-start"),
        "d started before b ended, on one worker:\n{spans}"
    );
}

/// One worker, a chain of short jobs, each handed over while the one before runs: no two of
/// them ever overlap, each runs once, in the order of the queue.
#[test]
fn a_chain_of_short_jobs_on_one_worker_never_overlaps_and_keeps_queue_order() {
    let t = with_main(
        r#"
        let specs = [];
        for i in 0..40 {
            specs.push(#{command: `echo start ${i} >> spans; sleep 0.0${i % 3}; echo end ${i} >> spans`, cwd: CWD});
        }
        let s = jobs::pool(specs, #{max_workers: 1, quiet: true});
        print(`${s.completed} of ${s.total}`);
        "#,
    );
    let (code, out, err) = t.spawn(["run", "main.rhai"]).finish();
    assert_eq!((code, out.as_str()), (Some(0), "40 of 40\n"), "{err}");
    let spans = std::fs::read_to_string(t.path().join("spans")).unwrap();
    let want: String = (0..40).map(|i| format!("start {i}\nend {i}\n")).collect();
    assert_eq!(spans, want);
    let (_, json, _) = t.spawn(["jobs", "--json", "--limit", "100"]).finish();
    let runs: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert!(runs.iter().all(|r| r["attempt"] == 1), "{json}");
}

/// A lower `jobs::workers` takes back the job handed over to start next in a slot: it goes
/// back to the queue before it starts (its attempt not counted), and runs only once a single
/// slot is left.
#[test]
fn fewer_workers_take_back_the_job_waiting_next_in_a_slot() {
    let t = with_main(
        r#"
        jobs::workers(2);
        let a = jobs::submit(#{command: "true"});
        let b = jobs::submit(#{command: "sleep 1.5; echo b-end $(date +%s%N) >> spans", cwd: CWD});
        let x = jobs::submit(#{command: "sleep 1.5; echo x-end $(date +%s%N) >> spans", cwd: CWD});
        let c = jobs::submit(#{command: "echo c-start $(date +%s%N) >> spans", cwd: CWD});
        while c.status() != "leased" { time::sleep(0.01); }
        jobs::workers(1);
        while c.status() == "leased" { time::sleep(0.01); }
        print(c.status());
        print([a.wait(), b.wait(), x.wait(), c.wait()]);
        print(c.info().attempt);
        "#,
    );
    let (code, out, err) = t.spawn(["run", "main.rhai"]).finish();
    assert_eq!(
        (code, out.as_str()),
        (
            Some(0),
            "queued\n[\"completed\", \"completed\", \"completed\", \"completed\"]\n1\n"
        ),
        "{err}"
    );
    let spans = std::fs::read_to_string(t.path().join("spans")).unwrap();
    let at = |what: &str| span_at(&spans, what);
    assert!(
        at("c-start") > at("b-end") && at("c-start") > at("x-end"),
        "c started while two jobs ran, with one worker:\n{spans}"
    );
}

/// Ctrl-C while a job waits next in its slot: the running job is stopped and put back, the
/// waiting one never starts and goes back to the queue as it was (its attempt not counted);
/// `labhost resume` then runs both, once each.
/// A job stopped by Ctrl-C and run again by `labhost resume` still has its retry: the
/// stopped attempt was not a failure.
#[test]
fn a_job_stopped_by_ctrl_c_keeps_its_retries() {
    let t = with_main(
        r#"
        // First run: stopped while it sleeps; second: fails; third: completes.
        let a = jobs::submit(#{retries: 1, backoff: 0, cwd: CWD, command:
            "echo x >> ran; n=$(grep -c x ran); [ $n -eq 2 ] && exit 3; [ $n -ge 3 ] && exit 0; sleep 30"});
        while a.status() != "running" { time::sleep(0.01); }
        print(a.id);
        a.wait();
        "#,
    );
    let mut run = t.spawn(["run", "main.rhai"]);
    let id = run.line();
    run.signal(libc::SIGINT);
    let (_, _, err) = run.finish();
    assert!(err.contains(&format!("stopped job(s) {id}")), "{err}");
    let (code, _, err) = t.spawn(["resume"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let (_, json, _) = t.spawn(["jobs", "--json"]).finish();
    let runs: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let id: i64 = id.parse().unwrap();
    let r = runs.iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(
        (
            r["status"].as_str(),
            r["attempt"].as_i64(),
            r["retries"].as_i64()
        ),
        (Some("completed"), Some(3), Some(1)),
        "{r}"
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("ran")).unwrap(),
        "x\nx\nx\n"
    );
}

#[test]
fn ctrl_c_puts_back_the_job_waiting_next_in_a_slot_without_starting_it() {
    let t = with_main(
        r#"
        jobs::workers(1);
        let a = jobs::submit(#{command: "true"});
        let b = jobs::submit(#{command: "echo b >> ran; [ $(grep -c b ran) -gt 1 ] || sleep 30", cwd: CWD});
        let c = jobs::submit(#{command: "echo c >> ran", cwd: CWD});
        while b.status() != "running" || c.status() != "leased" { time::sleep(0.01); }
        print(`${b.id} ${c.id}`);
        b.wait();
        "#,
    );
    let mut run = t.spawn(["run", "main.rhai"]);
    let ids = run.line();
    let (b, c) = ids.split_once(' ').unwrap();
    run.signal(libc::SIGINT);
    let (_, _, err) = run.finish();
    assert!(
        err.contains(&format!(
            "stopped job(s) {b} and put them back in the queue, beside 1 other queued job(s)"
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("ran")).unwrap(),
        "b\n"
    );
    // (status, attempt) of a job, as `labhost jobs --json` says.
    let state = |id: &str| {
        let (_, json, _) = t.spawn(["jobs", "--json"]).finish();
        let runs: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        let r = runs
            .iter()
            .find(|r| r["id"] == id.parse::<i64>().unwrap())
            .unwrap();
        (
            r["status"].as_str().unwrap().to_string(),
            r["attempt"].as_i64().unwrap(),
        )
    };
    assert_eq!(state(c), ("queued".to_string(), 0));
    assert_eq!(state(b).0, "queued");
    let (code, _, err) = t.spawn(["resume"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let ran = std::fs::read_to_string(t.path().join("ran")).unwrap();
    let mut lines: Vec<&str> = ran.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["b", "b", "c"]);
    assert_eq!(state(c), ("completed".to_string(), 1));
}
