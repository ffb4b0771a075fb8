#!/usr/bin/env bash
# Startup benchmark: `labhost run hello.rhai` vs `python3 -c pass`, measured in one run.
# Goal: labhost median <= 10 ms and >= 10x faster than python3 -c pass.
# Uses hyperfine (Debian package; installed when missing), else a plain timing loop.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN="$PWD/target/release/labhost"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo 'print("hello");' > "$work/hello.rhai"
export LABHOST_HOME="$work/state"
runs=${RUNS:-200}
# The real interpreter, not a pyenv shim (a shell script that would inflate the baseline).
PY=$(python3 -c 'import sys; print(sys.executable)')

if ! command -v hyperfine >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq hyperfine) >/dev/null 2>&1 || true
fi

if command -v hyperfine >/dev/null 2>&1; then
    hyperfine -N --warmup 20 --runs "$runs" --export-json "$work/h.json" \
        -n labhost "$BIN run $work/hello.rhai" \
        -n python3 "$PY -c pass" >&2
    python3 - "$work/h.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
lh, py = r["labhost"]["median"] * 1000, r["python3"]["median"] * 1000
print(f"labhost run hello.rhai  median {lh:.2f} ms (goal <= 10 ms)")
print(f"python3 -c pass         median {py:.2f} ms")
print(f"ratio python3/labhost   {py / lh:.1f}x (goal >= 10x)")
PY
else
    t() { python3 - "$@" <<'PY'
import subprocess, sys, time, statistics
cmd, n = sys.argv[1:-1], int(sys.argv[-1])
xs = []
for _ in range(n):
    t0 = time.perf_counter(); subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True); xs.append(time.perf_counter() - t0)
print(statistics.median(xs) * 1000)
PY
    }
    lh=$(t "$BIN" run "$work/hello.rhai" "$runs")
    py=$(t "$PY" -c pass "$runs")
    python3 -c "lh,py=$lh,$py; print(f'labhost median {lh:.2f} ms, python3 -c pass median {py:.2f} ms, ratio {py/lh:.1f}x')"
fi
