#!/usr/bin/env bash
# Tracking benchmarks, release build, one run, printing ratios:
#  1. log-batch throughput (50 requests of 1,000 metrics) and get-history latency (a 10,000-point
#     metric, median of 20) of `labhost track serve` vs the real `mlflow server --workers 1`,
#     same client, same box — goal: labhost >= 10x the real server on both;
#  2. an sklearn autolog training script against each — goal: no slower against labhost;
#  3. the HTML report of a 1,000-trial sweep loaded in headless Chromium: time to a rendered
#     table — goal <= 1 s.
# Needs the venv tests/run-all.sh makes (target/mlflow-venv-<version>: mlflow and
# websocket-client) and Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN="$PWD/target/release/labhost"
VENV=$(ls -d "$PWD"/target/mlflow-venv-* 2>/dev/null | tail -1 || true)
PY="${LABHOST_TEST_MLFLOW_PYTHON:-$VENV/bin/python}"
MLFLOW="${LABHOST_TEST_MLFLOW_SERVER:-$VENV/bin/mlflow}"
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 240); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 0.25; done; echo "server on $1 did not start" >&2; exit 1; }

cat > "$work/client.py" <<'PY'
import json, statistics, sys, time, urllib.request
base = sys.argv[1] + "/api/2.0/mlflow/"
def call(path, body=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body is not None else "GET")
    return json.loads(urllib.request.urlopen(req).read() or b"{}")
exp = call("experiments/create", {"name": "bench-%d" % time.time_ns()})["experiment_id"]
run = call("runs/create", {"experiment_id": exp, "run_name": "bench", "start_time": 1})["run"]["info"]["run_id"]
t0 = time.perf_counter()
for b in range(50):
    call("runs/log-batch", {"run_id": run, "metrics": [{"key": "m", "value": float(i), "timestamp": 1, "step": b * 1000 + i} for i in range(1000)]})
dt = time.perf_counter() - t0
lat = []
for _ in range(20):
    t0 = time.perf_counter()
    h = call("metrics/get-history?run_id=%s&metric_key=m&max_results=10000" % run)
    lat.append(time.perf_counter() - t0)
print("%.0f %.4f %d" % (50000 / dt, statistics.median(lat), len(h["metrics"])))
PY

echo "== 1. log-batch throughput and get-history latency"
lp=$(free_port)
mkdir -p "$work/lh"
LABHOST_HOME="$work/lh" setsid "$BIN" -q track serve --no-token --port "$lp" >/dev/null 2>&1 & pids+=($!)
mp=$(free_port)
mkdir -p "$work/ml"
(cd "$work/ml" && setsid "$MLFLOW" server --host 127.0.0.1 --port "$mp" --workers 1 \
    --backend-store-uri "sqlite:///$work/ml/mlflow.db" --artifacts-destination "$work/ml/art" >/dev/null 2>&1) & pids+=($!)
wait_up "$lp"; wait_up "$mp"
read -r lt ll ln < <("$PY" "$work/client.py" "http://127.0.0.1:$lp")
read -r mt ml mn < <("$PY" "$work/client.py" "http://127.0.0.1:$mp")
echo "log-batch: labhost ${lt} metrics/s, mlflow server ${mt} metrics/s: $(python3 -c "print(f'{$lt/$mt:.1f}')")x (goal >= 10x)"
echo "get-history of ${ln} points (median of 20): labhost ${ll} s, mlflow server ${ml} s ($mn points): $(python3 -c "print(f'{$ml/$ll:.1f}')")x faster"

echo "== 2. an sklearn autolog training script (a few seconds of fitting), wall time"
cat > "$work/autolog.py" <<'PY'
import time
t0 = time.perf_counter()
import mlflow
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
mlflow.set_experiment("bench-autolog")
mlflow.sklearn.autolog()
X, y = make_classification(n_samples=4000, n_features=30, random_state=0)
with mlflow.start_run():
    RandomForestClassifier(n_estimators=150, random_state=0).fit(X, y).score(X, y)
print("%.2f" % (time.perf_counter() - t0))
PY
la=$(cd "$work" && MLFLOW_TRACKING_URI="http://127.0.0.1:$lp" "$PY" autolog.py 2>/dev/null | tail -1)
ma=$(cd "$work" && MLFLOW_TRACKING_URI="http://127.0.0.1:$mp" "$PY" autolog.py 2>/dev/null | tail -1)
echo "autolog script: labhost ${la} s, mlflow server ${ma} s: $(python3 -c "print(f'{$ma/$la:.2f}')")x (goal >= 1: no slower)"

echo "== 3. the report of a 1,000-trial sweep in Chromium"
cat > "$work/s.yml" <<'YML'
type: sweep
trial: {command: "echo '{\"name\": \"acc\", \"value\":' ${{search_space.x}} '}' >> $LABHOST_METRICS"}
sampling_algorithm: {type: random, seed: 1}
search_space: {x: {type: uniform, min_value: 0, max_value: 1}, y: {type: choice, values: [a, b, c]}}
objective: {goal: maximize, primary_metric: acc}
limits: {max_total_trials: 1000, max_concurrent_trials: 2}
YML
export LABHOST_HOME="$work/sw"
"$BIN" -q sweep "$work/s.yml" --json > "$work/sweep.json"
id=$(python3 -c "import json; print(json.load(open('$work/sweep.json'))['sweep_id'])")
"$BIN" report "$id" --out "$work/r.html" >/dev/null
cat > "$work/load.py" <<'PY'
import json, os, subprocess, sys, tempfile, time, urllib.request
import websocket
chromium, page = sys.argv[1:3]
prof = tempfile.mkdtemp()
p = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--user-data-dir=" + prof, "--remote-debugging-port=0", "about:blank"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    f = os.path.join(prof, "DevToolsActivePort")
    while not (os.path.exists(f) and open(f).read().strip()): time.sleep(0.05)
    port = open(f).read().split()[0]
    t = next(x for x in json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json")) if x["type"] == "page")
    ws = websocket.create_connection(t["webSocketDebuggerUrl"]); n = 0
    def call(m, **kw):
        global n; n += 1; ws.send(json.dumps({"id": n, "method": m, "params": kw}))
        while True:
            r = json.loads(ws.recv())
            if r.get("id") == n: return r.get("result", {})
    call("Page.enable")
    t0 = time.perf_counter()
    call("Page.navigate", url="file://" + os.path.abspath(page))
    while True:
        r = call("Runtime.evaluate", expression="document.readyState === 'complete' && document.querySelectorAll('#trials tbody tr').length", returnByValue=True)
        v = r["result"].get("value")
        if v: break
        time.sleep(0.01)
    print("%.3f %d" % (time.perf_counter() - t0, v))
finally:
    p.kill()
PY
read -r secs rows < <("$PY" "$work/load.py" "$(command -v chromium)" "$work/r.html")
echo "report of ${rows} trials ($(du -k "$work/r.html" | cut -f1) KiB): rendered in ${secs} s (goal <= 1 s)"
