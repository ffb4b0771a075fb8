#!/usr/bin/env bash
# A live experiment against the dashboard, labhost and the real MLflow server side by side in
# one run (release build, headless Chromium): RUNS runs (default 50) each log RATE points a
# second (default 100) through the MLflow REST API for DURATION seconds (default 20), while a
# browser has one of those runs' page open. Prints, for each server:
#  - the points a second it took in (the writer keeps one HTTP/1.1 connection per server);
#  - the server's CPU (all its processes), in cores — goal: under one core for labhost — and
#    per point taken in (a server that cannot keep up takes in fewer points);
#  - labhost's page lag: at each look, the store's newest step of the watched run, then 1 s
#    later the step the page's chart shows; "within 1 s" when the page had caught up every
#    time (goal). MLflow's run page does not follow a run while it is open (it is read when
#    loaded), so only its server's cost is compared.
# Needs the venv tests/run-all.sh makes (target/mlflow-venv-<version>: mlflow and
# websocket-client) and Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-50}
RATE=${RATE:-100}
DURATION=${DURATION:-20}
. bench/dashboard-servers.sh

cat > "$work/live.py" <<'PY'
"""One server under a live load: RUNS runs each logging RATE points/s for DURATION s while a
browser shows one of them. Prints 'rate <points/s> cpu <cores> lag <max steps behind after
1 s> looks <n>'."""
import http.client, json, os, sys, threading, time
sys.path.insert(0, sys.argv[1])
from cdp import Browser
chromium, port, kind, pgid, runs, rate, seconds = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8])
conn = http.client.HTTPConnection("127.0.0.1", port)
def call(path, body):
    conn.request("POST", "/api/2.0/mlflow/" + path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"{path}: {r.status} {data[:300]!r}")
    return json.loads(data or b"{}")
exp = call("experiments/create", {"name": "live"})["experiment_id"]
ids = [call("runs/create", {"experiment_id": exp, "run_name": f"r{i}", "start_time": int(time.time() * 1000)})["run"]["info"]["run_id"] for i in range(runs)]
for r in ids:
    call("runs/log-batch", {"run_id": r, "metrics": [{"key": "m", "value": 0.0, "timestamp": int(time.time() * 1000), "step": 0}]})

def cpu():
    """CPU seconds of every process in the server's process group."""
    total = 0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(f[2]) == pgid:
            total += int(f[11]) + int(f[12])
    return total / os.sysconf("SC_CLK_TCK")

done_step = [0]  # the watched run's newest step the server has acknowledged
stop = threading.Event()
sent = [0]
def write():
    tick = 0.2
    per = max(1, int(rate * tick))
    step = 1
    t0 = time.perf_counter()
    while not stop.is_set():
        ts = int(time.time() * 1000)
        for r in ids:
            call("runs/log-batch", {"run_id": r, "metrics": [{"key": "m", "value": (step + k) % 97 / 97.0, "timestamp": ts, "step": step + k} for k in range(per)]})
            sent[0] += per
            if r == ids[0]:
                done_step[0] = step + per - 1
        step += per
        t0 += tick
        time.sleep(max(0.0, t0 - time.perf_counter()))

b = Browser(chromium)
try:
    for d in ["Runtime", "Page"]:
        b.call(d + ".enable")
    if kind == "labhost":
        b.call("Page.navigate", url=f"http://127.0.0.1:{port}/runs/{ids[0]}")
    else:
        b.call("Page.navigate", url=f"http://127.0.0.1:{port}/#/experiments/{exp}/runs/{ids[0]}/model-metrics")
    time.sleep(3)
    w = threading.Thread(target=write, daemon=True)
    w.start()
    time.sleep(1)
    c0, s0, t0 = cpu(), sent[0], time.perf_counter()
    lag, looks = 0, 0
    page = "(() => { const c = window.lhCharts && window.lhCharts.m; return c ? (c.last('m') || 0) : 0; })()"
    while time.perf_counter() - t0 < seconds:
        stored = done_step[0]
        time.sleep(1.0)
        if kind == "labhost":
            lag = max(lag, stored - int(b.js(page) or 0))
            looks += 1
    c1, s1, t1 = cpu(), sent[0], time.perf_counter()
    stop.set()
    w.join()
    print("rate %.0f cpu %.2f lag %s looks %d" % ((s1 - s0) / (t1 - t0), (c1 - c0) / (t1 - t0), lag if kind == "labhost" else "n/a", looks))
finally:
    b.close()
PY

echo "== $RUNS runs x $RATE points/s for ${DURATION} s, one run's page open in Chromium"
l=$("$PY" "$work/live.py" "$PWD/tests/browser" "$CHROMIUM" "$lp" labhost "$lpid" "$RUNS" "$RATE" "$DURATION")
m=$("$PY" "$work/live.py" "$PWD/tests/browser" "$CHROMIUM" "$mp" mlflow "$mpid" "$RUNS" "$RATE" "$DURATION")
field() { awk -v k="$2" '{for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}' <<<"$1"; }
echo "labhost: took in $(field "$l" rate) points/s, server CPU $(field "$l" cpu) cores, page at most $(field "$l" lag) steps behind the store 1 s later ($(field "$l" looks) looks)"
echo "mlflow:  took in $(field "$m" rate) points/s, server CPU $(field "$m" cpu) cores (its page does not follow the run live)"
python3 -c "
l, m, lr, mr = float('$(field "$l" cpu)'), float('$(field "$m" cpu)'), float('$(field "$l" rate)'), float('$(field "$m" rate)')
lag, want = int('$(field "$l" lag)'), $RUNS * $RATE
# A server that cannot keep up takes in less: compare CPU per point taken in.
lc, mc = l / lr * 1e6, m / mr * 1e6
print(f'CPU per point taken in: labhost {lc:.0f} us, mlflow {mc:.0f} us -> labhost {mc / lc:.1f}x cheaper')
print('labhost: page within 1 s of the store:', 'yes' if lag <= 0 else f'no ({lag} steps behind)', '; CPU under one core:', 'yes' if l < 1 else 'no', '; took the whole load:', 'yes' if lr >= 0.9 * want else 'no')
print('mlflow: took the whole load:', 'yes' if mr >= 0.9 * want else f'no ({mr:.0f} of {want} points/s: its server is the bottleneck; the writer waits on each request)')
"
