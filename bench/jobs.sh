#!/usr/bin/env bash
# Job engine benchmarks, release build, one run each, printing ratios:
#  1. 1,000 jobs running `true` with 2 workers: labhost jobs::pool vs `xargs -P2 -n1 true` vs
#     task-spooler (Debian `task-spooler`, 2 slots) — goal: labhost <= 1.3x xargs;
#  2. `labhost jobs --limit 50` and `labhost jobs --json --limit 50` with 10,000 jobs in the
#     store — goal <= 50 ms;
#  3. peak RSS of the host running a 10,000-job pool — goal <= 40 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN="$PWD/target/release/labhost"
N=${N:-1000}
BIG=${BIG:-10000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. bench/timing.sh
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

cat > "$work/pool.rhai" <<'RHAI'
let n = parse_int(ARGS[0]);
let specs = [];
for i in 0..n { specs.push(#{command: ["true"]}); }
let s = jobs::pool(specs, #{max_workers: 2});
if s.completed != n { exit(`only ${s.completed} of ${n} completed`); }
RHAI

# Alternating rounds (this is a shared 2-core box: one round is noise); medians compared.
ROUNDS=${ROUNDS:-3}
if ! command -v tsp >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq task-spooler) >/dev/null 2>&1 || true
fi
# The state on disk (as users have it), and on tmpfs when there is one: the difference is
# what the filesystem charges for each job's run folder (5 inodes: runs/<id>/, outputs/,
# spec.json, stdout.log, stderr.log), which xargs does not create.
shm=""
[ -d /dev/shm ] && [ -w /dev/shm ] && shm=$(mktemp -d /dev/shm/labhost-bench.XXXXXX)
lhs=() xas=() tss=() shms=()
for r in $(seq "$ROUNDS"); do
    export LABHOST_HOME="$work/state1-$r"
    t0=$(now); "$BIN" -q run "$work/pool.rhai" "$N"; t1=$(now); lhs+=("$(secs "$t0" "$t1")")
    if [ -n "$shm" ]; then
        export LABHOST_HOME="$shm/state-$r"
        t0=$(now); "$BIN" -q run "$work/pool.rhai" "$N"; t1=$(now); shms+=("$(secs "$t0" "$t1")")
        rm -rf "$shm/state-$r"
    fi
    t0=$(now); seq "$N" | xargs -P2 -n1 true; t1=$(now); xas+=("$(secs "$t0" "$t1")")
    if command -v tsp >/dev/null 2>&1; then
        export TS_SOCKET="$work/ts$r.sock" TS_MAXFINISHED=$((N + 10)) TMPDIR="$work"
        tsp -S 2 >/dev/null
        t0=$(now)
        for _ in $(seq "$N"); do tsp -n true >/dev/null; done
        while [ "$(tsp -l | grep -c -E 'running|queued')" != 0 ]; do sleep 0.05; done
        t1=$(now); tss+=("$(secs "$t0" "$t1")")
        tsp -K >/dev/null 2>&1 || true
    fi
done
unset TS_SOCKET
lh=$(median "${lhs[@]}"); xa=$(median "${xas[@]}")
ts="n/a"; [ ${#tss[@]} -gt 0 ] && ts=$(median "${tss[@]}")
echo "$N x true, 2 workers, median of $ROUNDS: labhost ${lh}s, xargs -P2 ${xa}s, task-spooler ${ts}s"
echo "  rounds: labhost ${lhs[*]} | xargs ${xas[*]} | task-spooler ${tss[*]:-n/a}"
python3 -c "print(f'  labhost/xargs = {$lh / $xa:.2f}x (goal <= 1.3x), state on $(df --output=fstype "$work" | tail -1)')"
if [ ${#shms[@]} -gt 0 ]; then
    sm=$(median "${shms[@]}")
    echo "  labhost with the state on tmpfs: ${sm}s (rounds ${shms[*]})"
    python3 -c "print(f'  labhost(tmpfs)/xargs = {$sm / $xa:.2f}x')"
    rm -rf "$shm"
fi
[ "$ts" != "n/a" ] && python3 -c "print(f'  labhost/task-spooler = {$lh / $ts:.2f}x')"

# 2. Listing with a big store: fill it through the engine's own API (queued jobs), then time.
export LABHOST_HOME="$work/state2"
cat > "$work/fill.rhai" <<'RHAI'
jobs::workers(1);
let n = parse_int(ARGS[0]);
for i in 0..n { jobs::submit(#{command: ["true"], name: `j${i}`, priority: -1, depends_on: []}); }
RHAI
"$BIN" run "$work/fill.rhai" "$BIG" >/dev/null 2>&1 || true
t() { python3 - "$@" <<'PY'
import subprocess, sys, time, statistics
xs = []
for _ in range(20):
    t0 = time.perf_counter(); subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True); xs.append(time.perf_counter() - t0)
print(f"{statistics.median(xs) * 1000:.1f}")
PY
}
count=$("$BIN" jobs --json --limit 100000 | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "store holds $count jobs"
echo "labhost jobs --limit 50:        $(t "$BIN" jobs --limit 50) ms (goal <= 50 ms)"
echo "labhost jobs --json --limit 50: $(t "$BIN" jobs --json --limit 50) ms (goal <= 50 ms)"

# 3. Peak RSS of a host running a 10,000-job pool.
export LABHOST_HOME="$work/state3"
rss=$( { /usr/bin/time -f '%M' "$BIN" -q run "$work/pool.rhai" "$BIG" >/dev/null; } 2>&1 | tail -1)
echo "peak RSS running a $BIG-job pool: $((rss / 1024)) MB (goal <= 40 MB)"
