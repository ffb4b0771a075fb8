#!/usr/bin/env bash
# The dashboard against the real MLflow UI, side by side in one run, release build, headless
# Chromium (a fresh profile per load, so nothing is cached), median of REPEAT loads:
#  1. the runs table of an experiment of RUNS runs (default 10,000; each with 2 params and a
#     5-point metric): time from navigation to the first rows on screen — goal <= 1 s;
#  2. one run's metric of POINTS points (default 1,000,000): time from navigation to its chart
#     drawn — goal <= 1 s.
# The same runs are in both: made through labhost's MLflow-compatible endpoint by one client
# script, then copied to a real `mlflow server` with `labhost track push`.
# Takes long: the real server takes ~0.1 s a run to be pushed to (~20 min for 10,000 runs on
# a 2-core box); RUNS=1000 POINTS=100000 gives a first look in ~3 min; PUSH=0 times labhost's
# pages alone (no copy to mlflow, no MLflow UI timings): the goals checked in a few minutes.
# Needs the venv tests/run-all.sh makes (target/mlflow-venv-<version>: mlflow and
# websocket-client) and Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10000}
POINTS=${POINTS:-1000000}
REPEAT=${REPEAT:-3}
PUSH=${PUSH:-1}
. bench/dashboard-servers.sh

echo "== making $RUNS runs and a $POINTS-point metric in labhost (its MLflow endpoint)"
cat > "$work/make.py" <<'PY'
import json, sys, time, urllib.request
base, runs, points = sys.argv[1] + "/api/2.0/mlflow/", int(sys.argv[2]), int(sys.argv[3])
def call(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
    return json.loads(urllib.request.urlopen(req).read() or b"{}")
exp = call("experiments/create", {"name": "bench"})["experiment_id"]
t = int(time.time() * 1000)
for i in range(runs):
    r = call("runs/create", {"experiment_id": exp, "run_name": "r-%d" % i, "start_time": t + i})["run"]["info"]["run_id"]
    call("runs/log-batch", {"run_id": r, "params": [{"key": "lr", "value": str(10 ** -(1 + i % 5))}, {"key": "batch", "value": str(16 << (i % 3))}],
                            "metrics": [{"key": "loss", "value": 1.0 / (s + 1 + i % 7), "timestamp": t + s, "step": s} for s in range(5)]})
    call("runs/update", {"run_id": r, "status": "FINISHED", "end_time": t + i + 1000})
big = call("runs/create", {"experiment_id": exp, "run_name": "big", "start_time": t + runs})["run"]["info"]["run_id"]
import math
for b in range(0, points, 1000):
    call("runs/log-batch", {"run_id": big, "metrics": [{"key": "big", "value": math.sin(s / 5000.0) + (s % 997 == 0) * 3, "timestamp": t + s, "step": s} for s in range(b, min(points, b + 1000))]})
call("runs/update", {"run_id": big, "status": "FINISHED", "end_time": t + runs + 1000})
print(big)
PY
t0=$(date +%s.%N)
big=$("$PY" "$work/make.py" "http://127.0.0.1:$lp" "$RUNS" "$POINTS")
echo "   made in $(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')") s (labhost run $big)"
if [ "$PUSH" = 1 ]; then
echo "== copying them to the mlflow server: labhost track push"
t0=$(date +%s.%N)
"$BIN" -q track push --to "http://127.0.0.1:$mp" --experiment bench >"$work/push.log" 2>&1 || { tail -20 "$work/push.log"; exit 1; }
echo "   pushed in $(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')") s"
read -r mexp mbig < <("$PY" - "http://127.0.0.1:$mp" <<'PY'
import json, sys, urllib.request
base = sys.argv[1] + "/api/2.0/mlflow/"
e = json.load(urllib.request.urlopen(base + "experiments/get-by-name?experiment_name=bench"))["experiment"]["experiment_id"]
req = urllib.request.Request(base + "runs/search", data=json.dumps({"experiment_ids": [e], "filter": "attributes.run_name = 'big'"}).encode(), headers={"Content-Type": "application/json"})
r = json.loads(urllib.request.urlopen(req).read())["runs"][0]["info"]["run_id"]
print(e, r)
PY
)
fi

cat > "$work/load.py" <<'PY'
"""Loads URL in a fresh headless Chromium REPEAT times: prints the median seconds from
navigation until READY (a JavaScript expression) holds, or 'timeout'."""
import os, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from cdp import Browser
chromium, url, ready, repeat, shot = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
times = []
for _ in range(repeat):
    b = Browser(chromium)
    try:
        b.call("Page.enable")
        t0 = time.perf_counter()
        b.call("Page.navigate", url=url)
        ok = False
        while time.perf_counter() - t0 < 60:
            try:
                if b.js(ready):
                    ok = True
                    break
            except RuntimeError:
                pass
            time.sleep(0.01)
        times.append(time.perf_counter() - t0 if ok else float("inf"))
        time.sleep(0.5)
        b.screenshot(shot)
        if not ok:
            print("not ready after 60 s; the page shows: %r" % (b.js("document.body ? document.body.innerText.slice(0, 600) : ''"),), file=sys.stderr)
    finally:
        b.close()
m = statistics.median(times)
print("timeout" if m == float("inf") else "%.3f" % m)
PY
# What each page showed when it was judged ready (0.5 s later): target/bench-artifacts/.
shots="$PWD/target/bench-artifacts"
mkdir -p "$shots"
load() { "$PY" "$work/load.py" "$PWD/tests/browser" "$CHROMIUM" "$2" "$3" "$REPEAT" "$shots/dashboard-$1.png"; }
ratio() { python3 -c "a, b = '$1', '$2'; ok = all(x.replace('.', '', 1).isdigit() for x in (a, b)); print(f'{float(b) / float(a):.1f}x' if ok else 'n/a')"; }

# (MLflow's table draws only the rows in view: it is done when the newest 10 are on screen.)
echo "== 1. runs table of $((RUNS + 1)) runs: navigation to the first rows on screen (labhost: 100 rows; MLflow: the newest 10) (median of $REPEAT)"
l1=$(load labhost-runs "http://127.0.0.1:$lp/" "document.querySelectorAll('#runs tbody tr').length >= 100")
m1=not-run; [ "$PUSH" = 1 ] && m1=$(load mlflow-runs "http://127.0.0.1:$mp/#/experiments/$mexp/runs" "document.body && document.body.innerText.includes('r-$((RUNS - 1))') && document.body.innerText.includes('r-$((RUNS - 10))')")
echo "labhost ui: ${l1} s   mlflow ui: ${m1} s   labhost is $(ratio "$l1" "$m1") faster (goal <= 1 s)"

echo "== 2. a $POINTS-point metric: navigation to its chart drawn (median of $REPEAT)"
l2=$(load labhost-metric "http://127.0.0.1:$lp/runs/$big" "(() => { const c = document.querySelector('.lh-chart[data-name=big]'); return !!c && Number(c.dataset.points) > 0 && !!c.querySelector('canvas'); })()")
# MLflow's run page, its metric charts tab: a drawn plot line of the metric.
m2=not-run; [ "$PUSH" = 1 ] && m2=$(load mlflow-metric "http://127.0.0.1:$mp/#/experiments/$mexp/runs/$mbig/model-metrics" "(() => { const p = document.querySelectorAll('.js-plotly-plot .scatterlayer .trace path, canvas'); return [...p].some(e => e.tagName === 'CANVAS' ? e.width > 0 : (e.getAttribute('d') || '').length > 100); })()")
echo "labhost ui: ${l2} s   mlflow ui: ${m2} s   labhost is $(ratio "$l2" "$m2") faster (goal <= 1 s)"
