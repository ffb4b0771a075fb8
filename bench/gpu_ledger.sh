#!/usr/bin/env bash
# GPU ledger benchmark on fake GPUs (no GPU needed), release build, one run:
#  1. reservations per second: 1 process, and 16 processes contending for 4 one-slot GPUs;
#     baseline: the same count of `flock -x` calls from a shell loop (util-linux flock(1)),
#     what a hand-rolled lock-file ledger costs;
#  2. hand-off latency: time from one process's release to the next waiting process holding
#     the slot (goal: median <= 20 ms).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN="$PWD/target/release/labhost"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export LABHOST_HOME="$work/state" LABHOST_FAKE_GPUS=4x24GiB
N=${N:-500}

cat > "$work/cycle.rhai" <<'RHAI'
let n = parse_int(ARGS[0]);
for i in 0..n { let l = gpu::reserve(1, #{timeout: "300s"}); l.release(); }
RHAI

. bench/timing.sh
rate() { python3 -c "print(f'{$1 / ($3 - $2):,.0f}')"; }

t0=$(now); "$BIN" run "$work/cycle.rhai" "$N"; t1=$(now)
one=$(rate "$N" "$t0" "$t1")
t0=$(now)
for i in $(seq 1 16); do "$BIN" run "$work/cycle.rhai" "$N" & done
wait
t1=$(now)
sixteen=$(rate "$((16 * N))" "$t0" "$t1")

touch "$work/f.lock"
t0=$(now); for _ in $(seq 1 "$N"); do flock -x "$work/f.lock" true; done; t1=$(now)
base=$(rate "$N" "$t0" "$t1")

echo "reservations/s, 1 process:             $one"
echo "reservations/s, 16 processes, 4 GPUs: $sixteen"
echo "baseline flock(1) shell loop, 1 proc:  $base"

# Hand-off latency: two processes ping-pong one GPU; each logs when it releases and when it
# acquires; latency = next acquire - previous release (same clock: CLOCK_REALTIME).
export LABHOST_FAKE_GPUS=1x24GiB
cat > "$work/pingpong.rhai" <<'RHAI'
let log = ARGS[0]; let me = ARGS[1]; let n = parse_int(ARGS[2]);
for i in 0..n {
    let l = gpu::reserve(1, #{timeout: "300s"});
    fs::append(log, `acq ${me} ${time::unix()}` + "\n");
    time::sleep(0.005);
    fs::append(log, `rel ${me} ${time::unix()}` + "\n");
    l.release();
}
RHAI
M=${M:-200}
"$BIN" run "$work/pingpong.rhai" "$work/pp.log" a "$M" &
"$BIN" run "$work/pingpong.rhai" "$work/pp.log" b "$M" &
wait
python3 - "$work/pp.log" <<'PY'
import sys, statistics
ev = [l.split() for l in open(sys.argv[1])]
lat, last_rel = [], None
for kind, who, t in ev:
    t = float(t)
    if kind == "rel":
        last_rel = (who, t)
    elif last_rel and last_rel[0] != who:
        lat.append((t - last_rel[1]) * 1000)
lat.sort()
print(f"release -> next holder: median {statistics.median(lat):.2f} ms, p90 {lat[int(len(lat)*0.9)]:.2f} ms, n={len(lat)} (goal median <= 20 ms)")
PY
