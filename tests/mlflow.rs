//! The job host's MLflow-compatible endpoint: the real mlflow client (tests/run-all.sh puts
//! `mlflow-skinny` in a venv and runs these with `--ignored`, LABHOST_TEST_MLFLOW_PYTHON naming
//! its python), and the endpoint's errors through plain HTTP from a job.
use crate::util::TestCmd;

fn mlflow_python() -> String {
    std::env::var("LABHOST_TEST_MLFLOW_PYTHON").expect(
        "LABHOST_TEST_MLFLOW_PYTHON: a python with mlflow-skinny (tests/run-all.sh makes one)",
    )
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
mlflow.log_metrics({"acc": 0.9, "f1": 0.8})
mlflow.end_run()
"#;

#[test]
#[ignore = "needs mlflow-skinny (tests/run-all.sh installs it)"]
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
"#
    ));
    let o = t.run();
    o.success();
    assert_eq!(
        o.stdout,
        "completed\n#{\"epochs\": \"5\", \"lr\": \"0.01\", \"optimizer\": \"adam\"}\ntiny\n[[0, 1.0], [1, 0.5], [2, 0.3333333333333333], [3, 0.25], [4, 0.2]]\n[0.9, 0.8]\nhello artifact\n"
    );
}

/// The primary metric reported through `mlflow.log_metric` drives early termination.
#[test]
#[ignore = "needs mlflow-skinny (tests/run-all.sh installs it)"]
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
    assert!(
        reason.starts_with("cancelled by policy: bandit, 0.2 < 0.8"),
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
        "no-token 401 UNAUTHENTICATED\nunknown-run 404 RESOURCE_DOES_NOT_EXIST\nwrong-type 400 INVALID_PARAMETER_VALUE\nno-timestamp 400 INVALID_PARAMETER_VALUE\noversize 400 INVALID_PARAMETER_VALUE\nparam 200 ok\nparam-change 400 INVALID_PARAMETER_VALUE\nbatch-half 400 INVALID_PARAMETER_VALUE\nunknown-experiment 404 RESOURCE_DOES_NOT_EXIST\nhistory 200 ok\n\n[]\n#{\"p\": \"1\"}\n"
    );
}

/// `labhost track serve`: the real MlflowClient searches the store (filter, order, paging)
/// and reads histories.
#[test]
#[ignore = "needs mlflow-skinny (tests/run-all.sh installs it)"]
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
    let mut server = std::process::Command::new(crate::util::BIN)
        .args(["track", "serve", "--port", &port.to_string()])
        .current_dir(&o.dir)
        .env("LABHOST_HOME", o.dir.join(".labhost"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = std::process::Command::new(&py)
        .arg("client.py")
        .current_dir(&o.dir)
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
