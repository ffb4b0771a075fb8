//! The job host's MLflow-compatible endpoint: the real mlflow client (tests/run-all.sh puts
//! mlflow in a venv and runs these with `--ignored`, LABHOST_TEST_MLFLOW_PYTHON naming
//! its python), and the endpoint's errors through plain HTTP from a job.
use crate::util::TestCmd;

fn mlflow_python() -> String {
    std::env::var("LABHOST_TEST_MLFLOW_PYTHON")
        .expect("LABHOST_TEST_MLFLOW_PYTHON: a python with mlflow (tests/run-all.sh makes one)")
}

/// An unmodified training script as Azure ML's examples write it.
const TRAIN: &str = r#"
import mlflow
mlflow.start_run()
mlflow.log_param("lr", 0.01)
mlflow.log_params({"epochs": 5, "optimizer": "adam"})
for step in range(5):
    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
mlflow.set_tag("model", "tiny")
with open("hello.txt", "w") as f:
    f.write("hello artifact")
mlflow.log_artifact("hello.txt")
with open("weights.bin", "wb") as f:
    f.write(bytes(range(256)) * 12288)
mlflow.log_artifact("weights.bin", artifact_path="model")
mlflow.log_metrics({"acc": 0.9, "f1": 0.8})
mlflow.end_run()
"#;

#[test]
#[ignore = "needs the mlflow client (tests/run-all.sh installs it)"]
fn an_unmodified_mlflow_script_reports_into_the_run_store() {
    let py = mlflow_python();
    let t = TestCmd::new().file("train.py", TRAIN).script(&format!(
        r#"
let j = jobs::submit(#{{command: "{py} train.py", name: "mlflow-job"}});
print(j.wait());
let i = j.info();
print(i.params);
print(i.tags.model);
let m = j.metrics();
print(m.loss.map(|p| [p.step, p.value]));
print([m.acc[0].value, m.f1[0].value]);
print(fs::read(j.run_dir + "/artifacts/hello.txt"));
print(track::artifacts(j.id));
"#
    ));
    let o = t.run();
    o.success();
    // A 3 MiB artifact (over axum's default body limit) arrives whole.
    let dir = std::fs::read_dir(o.dir.join(".labhost/runs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::metadata(dir.join("artifacts/model/weights.bin"))
            .unwrap()
            .len(),
        256 * 12288
    );
    assert_eq!(
        o.stdout,
        "completed\n#{\"epochs\": \"5\", \"lr\": \"0.01\", \"optimizer\": \"adam\"}\ntiny\n[[0, 1.0], [1, 0.5], [2, 0.3333333333333333], [3, 0.25], [4, 0.2]]\n[0.9, 0.8]\nhello artifact\n[\"artifacts/hello.txt\", \"artifacts/model/weights.bin\"]\n"
    );
}

/// Azure ML's sweep shape with MLflow's client: the trial script logs its own arguments with
/// `mlflow.log_param` (the swept value, stored typed, comes back as text: not a change), then
/// starts a second run and a parent run with nested children, as MLflow's tuning tutorial
/// does — all inside the job's experiment 0.
#[test]
#[ignore = "needs the mlflow client (tests/run-all.sh installs it)"]
fn a_trial_script_logs_its_own_arguments_and_runs_nested_runs() {
    let py = mlflow_python();
    let trial = r#"
import argparse, mlflow
p = argparse.ArgumentParser(); p.add_argument("--C", type=float); p.add_argument("--k", type=int)
a = p.parse_args()
with mlflow.start_run():
    mlflow.log_param("C", a.C)
    mlflow.log_param("k", a.k)
    mlflow.log_metric("acc", a.C * a.k)
with mlflow.start_run(run_name="second") as r2:
    mlflow.log_metric("x", float("nan"))
with mlflow.start_run(run_name="tuning") as tuning:
    for i in range(3):
        with mlflow.start_run(run_name=f"child{i}", nested=True):
            mlflow.log_param("i", i)
c = mlflow.tracking.MlflowClient()
import os
runs = c.search_runs([os.environ["MLFLOW_EXPERIMENT_ID"]], f"tags.mlflow.parentRunId = '{tuning.info.run_id}'")
print(sorted(r.info.run_name for r in runs), len({r.data.tags.get("mlflow.parentRunId") for r in runs}))
print(c.get_metric_history(r2.info.run_id, "x")[0].value)
"#;
    let sweep = format!(
        "type: sweep\ntrial:\n  command: {py} trial.py --C ${{{{search_space.C}}}} --k ${{{{search_space.k}}}}\nsearch_space:\n  C: {{type: uniform, min_value: 0.1, max_value: 1}}\n  k: {{type: choice, values: [1, 2]}}\nsampling_algorithm: {{type: random, seed: 3}}\nobjective: {{goal: maximize, primary_metric: acc}}\nlimits: {{max_total_trials: 3}}\n"
    );
    let t = TestCmd::new().file("trial.py", trial).file("s.yml", &sweep);
    let (code, out, err) = t.spawn(["sweep", "s.yml", "--json"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let trials = r["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 3);
    for tr in trials {
        assert_eq!(tr["status"], "completed", "{tr}");
        let id = tr["run_id"].to_string();
        let (_, logs, _) = t.spawn(["logs", &id]).finish();
        assert!(logs.contains("['child0', 'child1', 'child2'] 1"), "{logs}");
        assert!(logs.contains("nan"), "{logs}");
    }
}

/// A sweep whose primary metric comes from `mlflow.sklearn.autolog()`: the trial script
/// only fits a model; autolog's `training_accuracy_score` lands in each trial's run, the
/// sweep ranks trials by it, and the one with the larger `C` (a better fit on iris) wins.
#[test]
#[ignore = "needs the mlflow client (tests/run-all.sh installs it)"]
fn a_sweep_takes_its_primary_metric_from_autolog() {
    let py = mlflow_python();
    let train = "import argparse, mlflow\nfrom sklearn.datasets import load_iris\nfrom sklearn.linear_model import LogisticRegression\np = argparse.ArgumentParser(); p.add_argument('--C', type=float); a = p.parse_args()\nmlflow.sklearn.autolog(log_models=False)\nX, y = load_iris(return_X_y=True)\nLogisticRegression(C=a.C, max_iter=500).fit(X, y)\n";
    let sweep = format!(
        "type: sweep\ntrial:\n  command: {py} train.py --C ${{{{search_space.C}}}}\nsearch_space:\n  C: {{type: choice, values: [0.001, 10.0]}}\nsampling_algorithm: grid\nobjective: {{goal: maximize, primary_metric: training_accuracy_score}}\n"
    );
    let t = TestCmd::new().file("train.py", train).file("s.yml", &sweep);
    let (code, out, err) = t.spawn(["sweep", "s.yml", "--json"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let trials = r["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2, "{r}");
    let mut by_c = std::collections::BTreeMap::new();
    for tr in trials {
        assert_eq!(tr["status"], "completed", "{tr}");
        let acc = tr["best"]
            .as_f64()
            .unwrap_or_else(|| panic!("no autolog metric: {tr}"));
        assert!((0.0..=1.0).contains(&acc), "{tr}");
        by_c.insert(tr["params"]["C"].to_string(), (acc, tr["run_id"].as_i64()));
    }
    let (low, high) = (by_c["0.001"], by_c["10.0"]);
    assert!(high.0 > low.0, "{by_c:?}");
    assert_eq!(r["best_child_run_id"].as_i64(), high.1);
}

/// The primary metric reported through `mlflow.log_metric` drives early termination.
#[test]
#[ignore = "needs the mlflow client (tests/run-all.sh installs it)"]
fn mlflow_metrics_drive_a_sweeps_early_termination() {
    let py = mlflow_python();
    let trial = "import mlflow, sys, time\nx = float(sys.argv[1])\nmlflow.start_run()\nfor i in range(12):\n    mlflow.log_metric('acc', x)\n    time.sleep(0.15)\n";
    let yml = format!(
        "type: sweep\ntrial:\n  command: {py} t.py ${{{{search_space.x}}}}\n  snapshot: false\nsampling_algorithm: grid\nsearch_space:\n  x: {{type: choice, values: [0.9, 0.2, 0.85, 0.3]}}\nobjective: {{goal: maximize, primary_metric: acc}}\nlimits: {{max_concurrent_trials: 4}}\nearly_termination: {{type: bandit, slack_factor: 0.1, delay_evaluation: 3}}\n"
    );
    let t = TestCmd::new().file("t.py", trial).file("s.yml", yml);
    let (code, out, err) = t.spawn(["sweep", "s.yml", "--json"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let st: Vec<(f64, &str)> = r["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["params"]["x"].as_f64().unwrap(),
                t["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        st,
        [
            (0.9, "completed"),
            (0.2, "cancelled"),
            (0.85, "completed"),
            (0.3, "cancelled")
        ],
        "{err}"
    );
    let reason = r["trials"][1]["reason"].as_str().unwrap_or("");
    // Judged against the best any trial had reached at that interval (0.9, or 0.85 when
    // the 0.9 trial had not got there yet): 0.2 is below either line.
    assert!(
        reason.starts_with("cancelled by policy: bandit, 0.2 < 0."),
        "{reason}"
    );
}

/// The endpoint's answers to bad requests, as MLflow's: status codes, error codes, nothing
/// written; and a client without the host's token is refused.
#[test]
fn the_endpoint_rejects_bad_requests_as_mlflow_does() {
    let probe = r#"
import json, os, urllib.request
base = os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/"
run = os.environ["MLFLOW_RUN_ID"]
def call(method, path, body=None, token=os.environ["MLFLOW_TRACKING_TOKEN"]):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
def show(name, res):
    code, body = res
    print(name, code, body.get("error_code", "ok"))
show("no-token", call("POST", "runs/log-metric", {"run_id": run, "key": "m", "value": 1, "timestamp": 1}, token=None))
show("unknown-run", call("GET", "runs/get?run_id=999999"))
show("wrong-type", call("POST", "runs/log-metric", {"run_id": run, "key": "m", "value": "x", "timestamp": 1}))
show("no-timestamp", call("POST", "runs/log-metric", {"run_id": run, "key": "m", "value": 1}))
show("oversize", call("POST", "runs/log-batch", {"run_id": run, "metrics": [{"key": "m", "value": 1, "timestamp": 1, "step": i} for i in range(1001)]}))
show("param", call("POST", "runs/log-parameter", {"run_id": run, "key": "p", "value": "1"}))
show("param-change", call("POST", "runs/log-parameter", {"run_id": run, "key": "p", "value": "2"}))
show("batch-half", call("POST", "runs/log-batch", {"run_id": run, "metrics": [{"key": "half", "value": 1, "timestamp": 1}], "params": [{"key": "p", "value": "3"}]}))
show("unknown-experiment", call("GET", "experiments/get?experiment_id=424242"))
show("history", call("GET", "metrics/get-history?run_id=" + run + "&metric_key=half"))
show("two", call("POST", "runs/log-batch", {"run_id": run, "metrics": [{"key": "m2", "value": 1, "timestamp": 1, "step": 0}, {"key": "m2", "value": 2, "timestamp": 1, "step": 1}]}))
code, body = call("GET", "metrics/get-history?run_id=" + run + "&metric_key=m2&max_results=1")
print("page", [m["value"] for m in body["metrics"]], "next_page_token" in body)
code, body = call("GET", "metrics/get-history?run_id=" + run + "&metric_key=m2&max_results=1&page_token=" + body["next_page_token"])
print("page", [m["value"] for m in body["metrics"]], "next_page_token" in body)
"#;
    let t = TestCmd::new().file("probe.py", probe).script(
        r#"
let j = jobs::submit(#{command: "python3 probe.py"});
j.wait();
print(j.logs());
print(j.metrics().keys());
print(j.info().params);
"#,
    );
    let o = t.run();
    o.success();
    assert_eq!(
        o.stdout,
        "no-token 401 UNAUTHENTICATED\nunknown-run 404 RESOURCE_DOES_NOT_EXIST\nwrong-type 400 INVALID_PARAMETER_VALUE\nno-timestamp 400 INVALID_PARAMETER_VALUE\noversize 400 INVALID_PARAMETER_VALUE\nparam 200 ok\nparam-change 400 INVALID_PARAMETER_VALUE\nbatch-half 400 INVALID_PARAMETER_VALUE\nunknown-experiment 404 RESOURCE_DOES_NOT_EXIST\nhistory 200 ok\ntwo 200 ok\npage [1.0] True\npage [2.0] False\n\n[\"m2\"]\n#{\"p\": \"1\"}\n"
    );
}

/// What MLflow 3 clients rely on, over plain HTTP from a job: experiment 0 "Default" exists
/// (jobs get MLFLOW_EXPERIMENT_ID=0); a run created without a name gets one as MLflow makes
/// them; NaN and ±Inf metrics read back as the real server answers them (`"NaN"`,
/// ±1.7976931348623157e308), not 0.0; a param the job was given typed (0.39) may be logged
/// again as the client's text ("0.39") — a trial script logging its own arguments — while
/// another value is still refused.
#[test]
fn experiment_zero_run_names_non_finite_metrics_and_typed_params_as_mlflow() {
    let probe = r#"
import json, os, re, urllib.request
base = os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/"
run = os.environ["MLFLOW_RUN_ID"]
def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json", "Authorization": "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"]})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
code, e = call("GET", "experiments/get?experiment_id=" + os.environ["MLFLOW_EXPERIMENT_ID"])
print("exp", code, e["experiment"]["experiment_id"], e["experiment"]["name"])
code, e = call("GET", "experiments/get-by-name?experiment_name=Default")
print("by-name", code, e["experiment"]["experiment_id"])
code, r = call("POST", "runs/create", {"experiment_id": "0", "start_time": 1})
print("named", code, re.fullmatch(r"[a-z]+-[a-z]+-\d{1,3}", r["run"]["info"]["run_name"]) is not None)
code, r = call("POST", "runs/create", {"experiment_id": "0", "tags": [{"key": "mlflow.runName", "value": "from-tag"}]})
print("tag-named", r["run"]["info"]["run_name"])
for v in ["NaN", "Infinity", "-Infinity", 1e308, 5e-324]:
    call("POST", "runs/log-metric", {"run_id": run, "key": "odd", "value": v, "timestamp": 1, "step": 0})
code, h = call("GET", "metrics/get-history?run_id=" + run + "&metric_key=odd")
print("history", [m["value"] for m in h["metrics"]])
print("same", call("POST", "runs/log-parameter", {"run_id": run, "key": "C", "value": "0.39"})[0],
      call("POST", "runs/log-parameter", {"run_id": run, "key": "n", "value": "4"})[0],
      call("POST", "runs/log-parameter", {"run_id": run, "key": "on", "value": "True"})[0],
      call("POST", "runs/log-parameter", {"run_id": run, "key": "C", "value": "0.4"})[0])
"#;
    let o = TestCmd::new()
        .file("probe.py", probe)
        .script(
            r#"
let j = jobs::submit(#{command: "python3 probe.py", params: #{C: 0.39, n: 4, on: true}});
j.wait();
print(j.logs());
"#,
        )
        .run();
    o.success();
    assert_eq!(
        o.stdout,
        "exp 200 0 Default\nby-name 200 0\nnamed 200 True\ntag-named from-tag\nhistory ['NaN', 1.7976931348623157e+308, -1.7976931348623157e+308, 1e+308, 5e-324]\nsame 200 200 200 400\n\n"
    );
}

/// Hostile artifact paths — absolute, `..`, percent-encoded `..` and `/`, backslashes,
/// over-long names, symlinks planted in the run's artifact folder pointing out of it — get
/// 400 from PUT, GET and both list calls, and nothing outside the folder is read or touched.
#[test]
fn hostile_artifact_paths_are_refused_and_nothing_outside_is_touched() {
    let probe = r#"
import http.client, json, os, urllib.parse
u = urllib.parse.urlparse(os.environ["MLFLOW_TRACKING_URI"])
run = os.environ["MLFLOW_RUN_ID"]
tok = os.environ["MLFLOW_TRACKING_TOKEN"]
outside = os.path.abspath("outside")
arts = os.path.join(os.environ["LABHOST_RUN_DIR"], "artifacts")
os.makedirs(arts, exist_ok=True)
os.symlink(outside, os.path.join(arts, "out"))
os.symlink(os.path.relpath(os.path.join(outside, "secret"), arts), os.path.join(arts, "up"))
def call(method, path, body=None):
    c = http.client.HTTPConnection(u.hostname, u.port)
    c.request(method, path, body=body, headers={"Authorization": "Bearer " + tok})
    r = c.getresponse()
    data = r.read()
    return r.status, data
base = "/api/2.0/mlflow-artifacts/artifacts/0/" + run + "/artifacts/"
hostile = ["/" + outside.lstrip("/") + "/new", "//" + outside.lstrip("/") + "/secret", "../../new", "a/../../../new",
           "%2e%2e/%2e%2e/new", "a%2f..%2f..%2f..%2fnew", "%2F" + outside.lstrip("/").replace("/", "%2F") + "%2Fsecret",
           "a\\..\\..\\new", "x" * 300, "out/new", "out/secret", "up"]
for h in hostile:
    print("PUT", call("PUT", base + h, b"pwned")[0], "GET", call("GET", base + h)[0])
for q in [outside, "../..", "out", "a/../.."]:
    print("list", call("GET", "/api/2.0/mlflow/artifacts/list?run_id=" + run + "&path=" + urllib.parse.quote(q))[0],
          "proxy-list", call("GET", "/api/2.0/mlflow-artifacts/artifacts?path=" + urllib.parse.quote("0/" + run + "/artifacts/" + q))[0])
print("plain", call("PUT", base + "ok/a.txt", b"fine")[0], call("GET", base + "ok/a.txt"))
print("listed", json.loads(call("GET", "/api/2.0/mlflow/artifacts/list?run_id=" + run)[1])["files"])
"#;
    let t = TestCmd::new()
        .file("probe.py", probe)
        .file("outside/secret", "s3cret")
        .script(
            r#"
let j = jobs::submit(#{command: "python3 probe.py"});
j.wait();
print(j.logs());
"#,
        );
    let o = t.run();
    o.success();
    let lines: Vec<&str> = o.stdout.lines().collect();
    for l in &lines[..12] {
        assert_eq!(*l, "PUT 400 GET 400", "{}", o.stdout);
    }
    for l in &lines[12..16] {
        assert_eq!(*l, "list 400 proxy-list 400", "{}", o.stdout);
    }
    assert_eq!(lines[16], "plain 200 (200, b'fine')", "{}", o.stdout);
    assert!(
        lines[17].contains("'path': 'ok', 'is_dir': True"),
        "{}",
        o.stdout
    );
    let outside: Vec<String> = std::fs::read_dir(o.dir.join("outside"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(outside, ["secret"]);
    assert_eq!(
        std::fs::read_to_string(o.dir.join("outside/secret")).unwrap(),
        "s3cret"
    );
    assert!(!o.dir.join("new").exists() && !o.dir.parent().unwrap().join("new").exists());
}

/// Starts `labhost track serve --port PORT EXTRA…` over `dir`'s state and waits until it
/// listens; returns it and the token from its `export MLFLOW_TRACKING_TOKEN=` line, if any.
fn track_serve(
    dir: &std::path::Path,
    port: u16,
    extra: &[&str],
) -> (std::process::Child, Option<String>) {
    use std::io::BufRead;
    let mut server = std::process::Command::new(crate::util::BIN)
        .args(["track", "serve", "--port", &port.to_string()])
        .args(extra)
        .current_dir(dir)
        .env("LABHOST_HOME", dir.join(".labhost"))
        .env_remove("LABHOST_TRACK_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if extra.contains(&"--no-token") {
        return (server, None);
    }
    let out = server.stdout.take().unwrap();
    let token = std::io::BufReader::new(out)
        .lines()
        .next()
        .and_then(|l| l.ok())
        .and_then(|l| {
            l.strip_prefix("export MLFLOW_TRACKING_TOKEN=")
                .map(str::to_string)
        });
    (server, token)
}

/// The HTTP status of GET `path` on `port` with an optional bearer token.
fn status_of(port: u16, path: &str, token: Option<&str>) -> u16 {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    let _ = c.read_to_string(&mut r);
    r.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `labhost track serve` is token-protected by default: a random token, printed once as an
/// `export` line, kept in a file only the user can read and reused on the next start; a
/// client without it gets 401. `--no-token` serves without one (loopback only); `--host`
/// beyond loopback without a token is refused.
#[test]
fn track_serve_requires_a_token_unless_told_otherwise() {
    let o = TestCmd::new()
        .script("jobs::submit(#{command: \"true\"}).wait();")
        .run();
    o.success();
    let port = crate::util::free_port();
    let (mut server, token) = track_serve(&o.dir, port, &[]);
    let token = token.expect("an export line on stdout");
    assert_eq!(token.len(), 32);
    let path = "/api/2.0/mlflow/runs/get?run_id=1";
    assert_eq!(status_of(port, path, None), 401);
    assert_eq!(status_of(port, path, Some("wrong")), 401);
    assert_eq!(status_of(port, path, Some(&token)), 200);
    let _ = server.kill();
    let _ = server.wait();
    use std::os::unix::fs::PermissionsExt;
    let f = o.dir.join(".labhost/track-serve.token");
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read_to_string(&f).unwrap().trim(), token);
    let port = crate::util::free_port();
    let (mut again, token2) = track_serve(&o.dir, port, &[]);
    assert_eq!(
        token2.as_deref(),
        Some(token.as_str()),
        "the kept token is reused"
    );
    let _ = again.kill();
    let _ = again.wait();
    let port = crate::util::free_port();
    let (mut open, none) = track_serve(&o.dir, port, &["--no-token"]);
    assert_eq!(none, None);
    assert_eq!(status_of(port, path, None), 200);
    let _ = open.kill();
    let _ = open.wait();
    let r = TestCmd::new()
        .args(["track", "serve", "--host", "0.0.0.0", "--no-token"])
        .run();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("needs a token"), "{}", r.stderr);
}

/// `labhost track serve`: the real MlflowClient searches the store (filter, order, paging)
/// and reads histories.
#[test]
#[ignore = "needs the mlflow client (tests/run-all.sh installs it)"]
fn the_mlflow_client_searches_the_store_through_track_serve() {
    let py = mlflow_python();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = TestCmd::new().script(
        r#"
for x in [0.2, 0.9, 0.5, 0.7] {
    jobs::submit(#{command: `echo '{"name": "acc", "value": ${x}, "step": 1}' >> $LABHOST_METRICS`, params: #{x: x}, name: `x${x}`}).wait();
}
"#,
    );
    let o = t.run();
    o.success();
    let client = format!(
        r#"
from mlflow.tracking import MlflowClient
c = MlflowClient("http://127.0.0.1:{port}")
page = c.search_runs(["0"], "metrics.acc > 0.3", order_by=["metrics.acc DESC"], max_results=2)
print([r.info.run_name for r in page], page.token is not None)
rest = c.search_runs(["0"], "metrics.acc > 0.3", order_by=["metrics.acc DESC"], max_results=2, page_token=page.token)
print([r.info.run_name for r in rest])
r = page[0]
print(r.data.params["x"], [m.value for m in c.get_metric_history(r.info.run_id, "acc")])
try:
    c.search_runs(["0"], "metrics.acc > 0.3 or params.x = '1'")
except Exception as e:
    print(type(e).__name__, "INVALID_PARAMETER_VALUE" in str(e))
"#
    );
    std::fs::write(o.dir.join("client.py"), client).unwrap();
    let (mut server, token) = track_serve(&o.dir, port, &[]);
    let out = std::process::Command::new(&py)
        .arg("client.py")
        .current_dir(&o.dir)
        .env("MLFLOW_TRACKING_TOKEN", token.unwrap())
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "['x0.9', 'x0.7'] True\n['x0.5']\n0.9 [0.9]\nRestException True\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `labhost track push` into a real `mlflow server` (tests/run-all.sh installs full mlflow
/// in a venv; LABHOST_TEST_MLFLOW_SERVER names its `mlflow`): every field read back through
/// the server's REST API equals the store's; a second push adds nothing.
#[test]
#[ignore = "needs an mlflow server (tests/run-all.sh installs it)"]
fn track_push_copies_runs_to_a_real_mlflow_server_once() {
    let mlflow = std::env::var("LABHOST_TEST_MLFLOW_SERVER").expect("LABHOST_TEST_MLFLOW_SERVER");
    let py = mlflow_python();
    let yml = "type: sweep\ntrial:\n  command: >-\n    for i in 1 2 3; do echo '{\"name\": \"loss\", \"value\":' ${{search_space.x}} ', \"step\":' $i '}' >> $LABHOST_METRICS; done;\n    echo model-${{search_space.x}} > $LABHOST_RUN_DIR/outputs/model.txt\nsampling_algorithm: grid\nsearch_space:\n  x: {type: choice, values: [1, 2]}\nobjective: {goal: minimize, primary_metric: loss}\nexperiment_name: pushed\n";
    let t = TestCmd::new().file("s.yml", yml);
    let (code, out, err) = t.spawn(["-q", "sweep", "s.yml", "--json"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let sweep: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = sweep["sweep_id"].to_string();
    let server = crate::util::MlflowServer::start(&mlflow);
    let url = server.url.clone();
    let (code, out, err) = t.spawn(["track", "push", "--to", &url, &id]).finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "3 run(s): 3 created, 0 already there; 6 metric point(s), 6 param(s), 2 artifact(s) sent\n",
        "{err}"
    );
    // Read back, field by field, through the REST API.
    let read = format!(
        r##"
import json, urllib.request
base = "{url}/api/2.0/mlflow/"
def call(path, body=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body else None, headers={{"Content-Type": "application/json"}}, method="POST" if body else "GET")
    return json.loads(urllib.request.urlopen(req).read())
exp = call("experiments/get-by-name?experiment_name=pushed")["experiment"]["experiment_id"]
runs = call("runs/search", {{"experiment_ids": [exp], "max_results": 100}})["runs"]
by_remote = {{r["info"]["run_id"]: r for r in runs}}
out = {{}}
for r in runs:
    tags = {{t["key"]: t["value"] for t in r["data"].get("tags", [])}}
    local = tags["labhost.source"].rsplit("#", 1)[1]
    parent = tags.get("mlflow.parentRunId")
    hist = {{}}
    for m in r["data"].get("metrics", []):
        h = call("metrics/get-history?run_id=%s&metric_key=%s" % (r["info"]["run_id"], m["key"]))["metrics"]
        hist[m["key"]] = sorted([[x["step"], x["value"], x["timestamp"]] for x in h])
    arts = call("artifacts/list?run_id=%s&path=outputs" % r["info"]["run_id"]).get("files", [])
    out[local] = {{
        "name": r["info"]["run_name"], "status": r["info"]["status"],
        "params": {{p["key"]: p["value"] for p in r["data"].get("params", [])}},
        "hyperparameters": tags.get("hyperparameters"),
        "parent": by_remote[parent]["data"]["tags"] and {{t["key"]: t["value"] for t in by_remote[parent]["data"]["tags"]}}["labhost.source"].rsplit("#", 1)[1] if parent else None,
        "metrics": hist, "artifacts": sorted(a["path"] for a in arts),
    }}
print(json.dumps(out, sort_keys=True))
"##
    );
    std::fs::write(t.path().join("read.py"), read).unwrap();
    let remote = || {
        let o = std::process::Command::new(&py)
            .arg("read.py")
            .current_dir(t.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let got = remote();
    // The same from the store.
    let (_, local, _) = t
        .spawn(["runs", "--experiment", "pushed", "--json", "--limit", "100"])
        .finish();
    let local: Vec<serde_json::Value> = serde_json::from_str(&local).unwrap();
    assert_eq!(got.as_object().unwrap().len(), 3);
    for l in &local {
        let id = l["id"].to_string();
        let g = &got[&id];
        assert_eq!(g["name"], l["name"], "{id}");
        assert_eq!(g["status"], "FINISHED", "{id}");
        assert_eq!(g["params"], l["params"], "{id}");
        assert_eq!(g["hyperparameters"], l["tags"]["hyperparameters"], "{id}");
        assert_eq!(
            g["parent"],
            l["parent_id"]
                .as_i64()
                .map(|p| serde_json::json!(p.to_string()))
                .unwrap_or(serde_json::Value::Null),
            "{id}"
        );
        if l["kind"] == "trial" {
            let x = l["params"]["x"].as_str().unwrap().parse::<f64>().unwrap();
            let steps: Vec<(i64, f64)> = g["metrics"]["loss"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            assert_eq!(steps, [(1, x), (2, x), (3, x)], "{id}");
            assert_eq!(
                g["artifacts"],
                serde_json::json!(["outputs/model.txt"]),
                "{id}"
            );
        }
    }
    // Timestamps match the store's to the millisecond.
    let trial = local.iter().find(|l| l["kind"] == "trial").unwrap();
    let tid = trial["id"].as_i64().unwrap();
    std::fs::write(
        t.path().join("ts.rhai"),
        format!("print(track::metrics({tid}, \"loss\").map(|m| (m.ts * 1000.0).to_int()));"),
    )
    .unwrap();
    let (_, ts, _) = t.spawn(["run", "ts.rhai"]).finish();
    let want: Vec<i64> = serde_json::from_str(ts.trim()).unwrap();
    let have: Vec<i64> = got[&tid.to_string()]["metrics"]["loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[2].as_i64().unwrap())
        .collect();
    assert_eq!(have, want);
    // A second push adds nothing.
    let (code, out, err) = t.spawn(["track", "push", "--to", &url, &id]).finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "3 run(s): 0 created, 3 already there; 0 metric point(s), 0 param(s), 0 artifact(s) sent\n"
    );
    assert_eq!(remote(), got);
    drop(server);
}

/// 8 clients at once, each logging 10,000 metric points through the endpoint (9,000 by
/// log-batch, 1,000 by log-metric): every point is stored once with its step, and the host
/// answers `labhost status` meanwhile.
#[test]
fn eight_clients_log_ten_thousand_metrics_each_and_every_point_is_stored_once() {
    let client = r#"
import json, os, urllib.request
base = os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/"
run = os.environ["MLFLOW_RUN_ID"]
tok = os.environ["MLFLOW_TRACKING_TOKEN"]
def post(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer " + tok})
    urllib.request.urlopen(req).read()
for b in range(9):
    post("runs/log-batch", {"run_id": run, "metrics": [{"key": "m", "value": float(s), "timestamp": 1, "step": s} for s in range(b * 1000, b * 1000 + 1000)]})
for s in range(9000, 10000):
    post("runs/log-metric", {"run_id": run, "key": "m", "value": float(s), "timestamp": 1, "step": s})
open(os.environ["LABHOST_RUN_DIR"] + "/outputs/done", "w").write("ok")
"#;
    let t = TestCmd::new().file("client.py", client).file(
        "load.rhai",
        r#"
let specs = [];
for i in 0..8 { specs.push(#{command: "python3 client.py", name: `client${i}`}); }
let s = jobs::pool(specs, #{max_workers: 8, quiet: true});
let ok = 0;
for j in s.jobs {
    let h = track::metrics(j.id, "m");
    // In step order: exactly steps 0..9999, each once, with its value.
    let good = h.len() == 10000;
    if good { for k in 0..10000 { if h[k].step != k || h[k].value != k.to_float() { good = false; break; } } }
    if good { ok += 1; }
}
print(`${s.completed} ${ok}`);
"#,
    );
    let mut r = t.spawn(["run", "load.rhai"]);
    // The host answers while the clients write.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let st = t.spawn(["status"]).finish();
    assert_eq!(st.0, Some(0), "labhost status failed under load: {}", st.2);
    assert!(
        r.is_running(),
        "the load ended before status was asked; make it bigger"
    );
    let (code, out, err) = r.finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "8 8\n", "{err}");
}

/// The differential harness (`tests/mlflow_diff`): 32 client scripts written the way MLflow's
/// docs write them (autolog, logged models and `models:/` URIs, the registry with aliases,
/// nested runs, datasets, tables and figures, lifecycles, searches, special values, async
/// logging, resumed runs, errors) run against a real `mlflow server` and against
/// `labhost track serve`, and as labhost jobs; what MlflowClient reads back afterwards must
/// be equal field by field (ids, uuids and times normalised), bar the differences listed
/// with their reasons in tests/mlflow_diff/differences.json.
#[test]
#[ignore = "needs an mlflow server (tests/run-all.sh installs it)"]
fn the_client_corpus_reads_back_as_from_a_real_mlflow_server() {
    let mlflow = std::env::var("LABHOST_TEST_MLFLOW_SERVER").expect("LABHOST_TEST_MLFLOW_SERVER");
    let root = env!("CARGO_MANIFEST_DIR");
    let o = std::process::Command::new("python3")
        .arg(format!("{root}/tests/mlflow_diff/harness.py"))
        .args(["--mlflow", &mlflow, "--labhost", crate::util::BIN, "--job"])
        .current_dir(root)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let cases = crate::util::count_files(&format!("{root}/tests/mlflow_diff/cases"), "py");
    assert!(cases >= 30, "the corpus has {cases} scripts");
    assert!(
        out.contains(&format!("{cases} of {cases} cases read back the same")),
        "{out}"
    );
}
