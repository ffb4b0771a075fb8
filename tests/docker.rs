//! The docker module against a real engine. tests/run-all.sh starts a private dockerd (no
//! bridge, no iptables), imports `labhost-test:busybox`, exports DOCKER_HOST and runs these
//! with `--ignored`. Every container carries a per-test label and is removed at the end.
use crate::util::TestCmd;

const IMAGE: &str = "labhost-test:busybox";

/// Removes every container with the test's label when the test ends, pass or fail.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=labhost.test={}", self.0),
            ])
            .output();
        if let Ok(o) = out {
            for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f", id])
                    .output();
            }
        }
    }
}

fn labelled(test: &str) -> (Cleanup, String) {
    (
        Cleanup(test.into()),
        format!("labels: #{{\"labhost.test\": \"{test}\"}}, network: \"none\", image: \"{IMAGE}\""),
    )
}

fn remaining(test: &str) -> usize {
    let o = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=labhost.test={test}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .count()
}

#[test]
#[ignore = "needs a Docker engine (tests/run-all.sh starts one)"]
fn docker_examples_run() {
    let ran = crate::examples::run_examples(|m| m == "docker", &[]);
    assert!(ran >= 15, "only {ran} docker examples ran");
}

#[test]
#[ignore = "needs a Docker engine (tests/run-all.sh starts one)"]
fn docker_exit_codes_streams_env_and_workdir() {
    let (_c, common) = labelled("streams");
    let o = TestCmd::new()
        .script(&format!(
            r#"
            let r = docker::run(#{{ {common}, command: "echo out-$LR; echo err-line >&2; pwd; exit 5",
                                   env: #{{LR: 0.1}}, workdir: "/tmp", name: "streams" }});
            print("code " + r.exit_code);
            let ok = docker::run(#{{ {common}, command: ["echo", "a b"] }});
            print("code " + ok.exit_code);
            "#
        ))
        .run();
    o.success();
    assert!(o.stdout.starts_with("[streams"), "{}", o.stdout);
    assert!(
        o.stdout.contains("] out-0.1\n")
            && o.stdout.contains("] /tmp\n")
            && o.stdout.contains("code 5\n"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("] a b\ncode 0\n"), "{}", o.stdout);
    assert!(
        o.stderr.contains("] err-line") && !o.stdout.contains("err-line"),
        "{}",
        o.stderr
    );
    // Attached runs remove their container by default.
    assert_eq!(remaining("streams"), 0);
}

#[test]
#[ignore = "needs a Docker engine (tests/run-all.sh starts one)"]
fn docker_bind_mounts_read_only_and_read_write_with_owner() {
    use std::os::unix::fs::MetadataExt;
    let (_c, common) = labelled("mounts");
    let t = TestCmd::new()
        .file("in/data.txt", "input")
        .file("out/.keep", "");
    let (inp, out) = (t.path().join("in"), t.path().join("out"));
    // The host folder belongs to the test's user; the container's user 1234 may write to it.
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let o = t
        .script(&format!(
            r#"
            let r = docker::run(#{{ {common}, user: "1234:2345",
                volumes: ["{}:/in:ro", #{{source: "{}", target: "/out"}}],
                command: "cat /in/data.txt > /out/copy.txt && echo written" }});
            print(r.exit_code);
            let ro = docker::run(#{{ {common}, volumes: ["{}:/in:ro"], command: "touch /in/nope" }});
            print(ro.exit_code != 0);
            "#,
            inp.display(),
            out.display(),
            inp.display()
        ))
        .run();
    o.success();
    assert!(o.stdout.ends_with("0\ntrue\n"), "{}", o.stdout);
    let copy = out.join("copy.txt");
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "input");
    let meta = std::fs::metadata(&copy).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 2345));
    assert!(!inp.join("nope").exists());
}

#[test]
#[ignore = "needs a Docker engine (tests/run-all.sh starts one)"]
fn docker_names_are_sanitised_unique_and_conflicts_are_errors() {
    let (_c, common) = labelled("names");
    TestCmd::new()
        .script(&format!(
            r#"
            let a = docker::run(#{{ {common}, command: "true", detach: true }});
            let b = docker::run(#{{ {common}, command: "true", detach: true }});
            assert(a.name != b.name);
            let c = docker::run(#{{ {common}, command: "true", detach: true, name: "Exp #1: lr=0.1!" }});
            assert_eq(c.name, "Exp-1-lr-0.1");
            let kind = ();
            try {{ docker::run(#{{ {common}, command: "true", detach: true, name: "Exp #1: lr=0.1!" }}); }}
            catch (e) {{ kind = e.kind; }}
            assert_eq(kind, "docker.conflict");
            "#
        ))
        .run()
        .success();
}

#[test]
#[ignore = "needs a Docker engine (tests/run-all.sh starts one)"]
fn docker_timeout_kills_and_removes_the_container() {
    let (_c, common) = labelled("timeout");
    TestCmd::new()
        .script(&format!(
            r#"
            let kind = ();
            try {{ docker::run(#{{ {common}, command: "sleep 300", timeout: "1s" }}); }} catch (e) {{ kind = e.kind; }}
            assert_eq(kind, "docker.timeout");
            "#
        ))
        .run()
        .success();
    assert_eq!(remaining("timeout"), 0);
}

#[test]
#[ignore = "needs a Docker engine (tests/run-all.sh starts one)"]
fn docker_ctrl_c_stops_attached_and_stop_on_exit_containers() {
    let (_c, common) = labelled("cancel");
    let t = TestCmd::new().file(
        "main.rhai",
        format!(
            r#"
            let bg = docker::run(#{{ {common}, command: "sleep 300", detach: true, stop_on_exit: true }});
            let keep = docker::run(#{{ {common}, command: "sleep 300", detach: true, name: "kept" }});
            print("started");
            docker::run(#{{ {common}, command: "echo running; sleep 300" }});
            "#
        ),
    );
    let mut r = t.spawn(["run", "main.rhai"]);
    r.expect_line("started");
    // The attached container is running once its first line has come through.
    assert!(r.line().ends_with("] running"));
    r.signal(libc::SIGINT);
    let (code, _, stderr) = r.finish();
    assert_eq!(code, Some(130), "{stderr}");
    let running = std::process::Command::new("docker")
        .args([
            "ps",
            "--format",
            "{{.Names}}",
            "--filter",
            "label=labhost.test=cancel",
        ])
        .output()
        .unwrap();
    // Only the detached container that was not marked stop_on_exit is still running.
    assert_eq!(String::from_utf8_lossy(&running.stdout).trim(), "kept");
}

#[test]
#[ignore = "needs a Docker engine (tests/run-all.sh starts one)"]
fn docker_error_kinds() {
    let (_c, common) = labelled("errors");
    let t = TestCmd::new().script(&format!(
        r#"
        let kinds = [];
        try {{ docker::run(#{{ image: "labhost-test:missing", network: "none", command: "true" }}); }} catch (e) {{ kinds.push(e.kind); }}
        try {{ docker::run(#{{ {common}, volumes: ["/no/such/dir:/x"], command: "true" }}); }} catch (e) {{ kinds.push(e.kind); }}
        try {{ docker::run(#{{ {common}, comand: "true" }}); }} catch (e) {{ kinds.push(e.kind); }}
        print(kinds);
        "#
    ));
    t.run().success().stdout_is(
        "[\"docker.image_not_found\", \"docker.invalid_mount\", \"invalid_argument\"]\n",
    );
    TestCmd::new()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .script("docker::ping();")
        .run()
        .code(1)
        .stderr_has("error[docker.unavailable]: cannot reach the Docker engine at unix:///nonexistent/docker.sock");
    TestCmd::new()
        .script("docker::run(#{command: \"true\"});")
        .run()
        .code(1)
        .stderr_has("error[docker.no_image]: no image given and DOCKER_IMAGE_NAME is not set");
}

#[test]
#[ignore = "needs a Docker engine (tests/run-all.sh starts one)"]
fn docker_run_cli_and_the_recipe() {
    let (_c, _) = labelled("cli");
    TestCmd::new()
        .args([
            "docker-run",
            "--image",
            IMAGE,
            "--network",
            "none",
            "--",
            "sh",
            "-c",
            "echo from-cli; exit 3",
        ])
        .run()
        .code(3)
        .stdout_is("from-cli\n");
    let recipe =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/docker_experiment.rhai");
    TestCmd::new()
        .env("LABHOST_FAKE_GPUS", "1x24GiB")
        .args(["run", recipe.to_str().unwrap()])
        .run()
        .success()
        .stdout_has("] training on 3 lines, GPUs: 0")
        .stdout_has("artifact: loss 0.25");
}

#[test]
#[ignore = "needs a Docker engine (tests/run-all.sh starts one)"]
fn a_job_runs_in_docker_with_its_run_folder_env_metrics_and_exit_code() {
    let t = TestCmd::new().file(
        "main.rhai",
        format!(
            r#"
        let base = #{{run_in: "docker", image: "{IMAGE}", network: "none", cwd: "work"}};
        let ok = jobs::submit(base + #{{
            command: `echo in $PWD as $(id -u) $LR; echo oops >&2; echo done > $LABHOST_RUN_DIR/outputs/r.txt; echo '{{"name":"loss","value":0.5,"step":1}}' >> $LABHOST_METRICS`,
            env: #{{LR: "0.1"}}}});
        let bad = jobs::submit(base + #{{command: ["sh", "-c", "exit 3"]}});
        let slow = jobs::submit(base + #{{command: "sleep 30", timeout: 1.0}});
        print(ok.wait()); print(ok.logs());
        print(fs::read(ok.run_dir + "/stderr.log"));
        print(fs::read(ok.run_dir + "/outputs/r.txt"));
        print(ok.metrics().loss.map(|m| m.value));
        print([bad.wait(), bad.exit_code]);
        print(slow.wait());
        print(ok.run_dir);
        "#
        ),
    )
    .file("work/.keep", "");
    let (code, out, err) = t.spawn(["run", "main.rhai"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let work = t.path().join("work").canonicalize().unwrap();
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    assert_eq!(
        out,
        format!(
            "completed\nin {} as {uid} 0.1\n\noops\n\ndone\n\n[0.5]\n[\"failed\", 3]\ntimed_out\n{}\n",
            work.display(),
            out.lines().last().unwrap()
        )
    );
    // Every job container of this state directory was removed.
    let run_dir = out.lines().last().unwrap();
    let state = std::path::Path::new(run_dir)
        .parent()
        .unwrap()
        .parent()
        .unwrap();
    let o = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=labhost.state={}", state.display()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "");
}

/// An MLflow script written for `mlflow` alone, run as a `run_in: docker` job, reports into
/// the job's run through the host's endpoint (`network: host` here: the test engine has no
/// bridge; on a bridge network the container reaches the endpoint at the gateway). The
/// host's Python and mlflow, mounted read-only, stand in for an image that has them.
#[test]
#[ignore = "needs a Docker engine and the mlflow client (tests/run-all.sh)"]
fn docker_job_an_unmodified_mlflow_script_lands_its_metrics() {
    let py = std::env::var("LABHOST_TEST_MLFLOW_PYTHON").expect("LABHOST_TEST_MLFLOW_PYTHON");
    let o = std::process::Command::new(&py)
        .args([
            "-c",
            "import sys, os; print(sys.prefix); print(sys.base_prefix); print(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))",
        ])
        .output()
        .unwrap();
    let mut mounts: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .chain(["/usr".into(), "/lib".into(), "/lib64".into()])
        .filter(|p| std::path::Path::new(p).exists())
        .collect();
    mounts.sort();
    mounts.dedup();
    let mounts: Vec<String> = mounts.iter().map(|m| format!("\"{m}:{m}:ro\"")).collect();
    let train = "import mlflow\nmlflow.log_param('where', 'container')\nfor i in range(3):\n    mlflow.log_metric('loss', 1.0 / (i + 1), step=i)\nmlflow.log_text('hello', 'note.txt')\n";
    let t = TestCmd::new().file("work/train.py", train).file(
        "main.rhai",
        format!(
            r#"
        let j = jobs::submit(#{{run_in: "docker", image: "{IMAGE}", network: "host", cwd: "work",
            mounts: [{}], env: #{{HOME: "/tmp", USER: "labhost"}},
            command: "{py} train.py", experiment: "in-docker"}});
        print(j.wait());
        print(j.metrics().loss.map(|m| m.value));
        print(j.info().params);
        print(fs::read(j.run_dir + "/artifacts/note.txt"));
        "#,
            mounts.join(", ")
        ),
    );
    let (code, out, err) = t.spawn(["run", "main.rhai"]).finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out, "completed\n[1.0, 0.5, 0.3333333333333333]\n#{\"where\": \"container\"}\nhello\n",
        "{err}"
    );
}

/// A distributed trial in a container: its ranks run in the one container (the image has
/// no labhost) with Azure ML's variables, as one job; the first rank to fail ends the
/// container with its code and the job fails with it.
#[test]
#[ignore = "needs a Docker engine (tests/run-all.sh starts one)"]
fn a_distributed_trial_runs_its_ranks_in_its_container() {
    let job = |mode: &str| {
        format!(
            "type: sweep\ntrial:\n  command: 'if [ {mode} = fail ] && [ $RANK = 2 ]; then exit 4; fi; [ {mode} = fail ] && sleep 60; echo rank=$RANK world=$WORLD_SIZE local=$LOCAL_RANK node=$NODE_RANK port=${{MASTER_PORT:+set}}'\n  environment: {{image: \"{IMAGE}\"}}\n  run_in: docker\n  distribution: {{type: pytorch, process_count_per_instance: 2}}\n  resources: {{instance_count: 2}}\nsampling_algorithm: grid\nsearch_space: {{k: {{type: choice, values: [1]}}}}\nobjective: {{goal: minimize, primary_metric: l}}\n"
        )
    };
    let t = TestCmd::new()
        .file("ok.yml", job("ok"))
        .file("fail.yml", job("fail"));
    let (code, _, log, err) = crate::util::sweep_json(&t, &["sweep", "ok.yml", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let mut lines: Vec<&str> = log.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "rank=0 world=4 local=0 node=0 port=set",
            "rank=1 world=4 local=1 node=0 port=set",
            "rank=2 world=4 local=0 node=1 port=set",
            "rank=3 world=4 local=1 node=1 port=set",
        ],
        "{log}"
    );
    crate::util::sweep_fails_within(
        &t,
        &["sweep", "fail.yml", "--json"],
        "exit 4",
        std::time::Duration::from_secs(40),
    );
}

/// `log_limit` bounds a container job's logs as a process job's.
#[test]
#[ignore = "needs a Docker engine (tests/run-all.sh starts one)"]
fn a_docker_jobs_logs_keep_within_its_log_limit() {
    let t = TestCmd::new().script(&format!(
        r#"
        let j = jobs::submit(#{{run_in: "docker", image: "{IMAGE}", network: "none", log_limit: "8KiB",
            command: "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done"}});
        print(j.wait());
        let log = j.logs();
        print(log.starts_with("[labhost] log_limit 8.0KiB"));
        print(log.ends_with("line 2999\n"));
        print(log.len() <= 4096);
        "#
    ));
    let o = t.run();
    o.success();
    assert_eq!(o.stdout, "completed\ntrue\ntrue\ntrue\n", "{}", o.stderr);
}
