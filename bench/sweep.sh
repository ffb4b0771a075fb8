#!/usr/bin/env bash
# Sweep benchmarks, release build, one run, printing ratios:
#  1. 1,000 TPE suggestions over 4 parameters (ask/tell on a quadratic): labhost sweep::study
#     vs Optuna's TPESampler (pip optuna in a venv under target/) — goal <= 0.5 s and faster
#     than Optuna;
#  2. a 1,000-trial random sweep of `true`, 2 at once: labhost sweep vs `xargs -P2` — goal
#     <= 1.3x.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN="$PWD/target/release/labhost"
N=${N:-1000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { python3 -c 'import time; print(time.perf_counter())'; }
secs() { python3 -c "print(f'{$2 - $1:.3f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

VENV=target/bench-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import optuna' 2>/dev/null; then
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q optuna
fi

cat > "$work/tpe.rhai" <<'RHAI'
let n = parse_int(ARGS[0]);
let st = sweep::study(#{x: sweep::uniform(-5, 5), y: sweep::uniform(-5, 5), z: sweep::quniform(-5, 5, 0.1),
                        k: sweep::choice([0, 1, 2, 3])}, #{sampler: "tpe", goal: "minimize", seed: 1});
for i in 0..n {
    let t = st.ask();
    let p = t.params;
    st.tell(t, (p.x - 1.0) ** 2 + (p.y + 2.0) ** 2 + p.z ** 2 + (p.k - 2) ** 2);
}
print(`labhost best ${st.best().value}`);
RHAI
cat > "$work/tpe.py" <<'PY'
import sys, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
n = int(sys.argv[1])
st = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1), direction="minimize")
for _ in range(n):
    t = st.ask()
    x = t.suggest_float("x", -5, 5); y = t.suggest_float("y", -5, 5)
    z = t.suggest_float("z", -5, 5, step=0.1); k = t.suggest_categorical("k", [0, 1, 2, 3])
    st.tell(t, (x - 1) ** 2 + (y + 2) ** 2 + z ** 2 + (k - 2) ** 2)
print(f"optuna best {st.best_value}")
PY
echo "== 1. $N TPE suggestions over 4 parameters (ask/tell, whole process)"
t0=$(now); "$BIN" -q run "$work/tpe.rhai" "$N"; t1=$(now); lh=$(secs "$t0" "$t1")
t0=$(now); "$VENV/bin/python" "$work/tpe.py" "$N"; t1=$(now); op=$(secs "$t0" "$t1")
echo "labhost ${lh}s  optuna ${op}s  optuna/labhost = $(ratio "$op" "$lh")x  (goal: labhost <= 0.5 s and faster)"

cat > "$work/sweep.yml" <<YML
type: sweep
trial: {command: "true"}
sampling_algorithm: {type: random, seed: 1}
search_space: {x: {type: uniform, min_value: 0, max_value: 1}}
objective: {goal: maximize, primary_metric: acc}
limits: {max_total_trials: $N, max_concurrent_trials: 2}
YML
echo "== 2. $N-trial random sweep of true, 2 at once"
export LABHOST_HOME="$work/state"
t0=$(now); "$BIN" -q sweep "$work/sweep.yml" >/dev/null; t1=$(now); lh=$(secs "$t0" "$t1")
t0=$(now); seq "$N" | xargs -P2 -n1 true; t1=$(now); xa=$(secs "$t0" "$t1")
echo "labhost ${lh}s  xargs -P2 ${xa}s  labhost/xargs = $(ratio "$lh" "$xa")x  (goal <= 1.3x)"
