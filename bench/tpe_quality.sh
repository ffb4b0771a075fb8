#!/usr/bin/env bash
# TPE quality, side by side in one run: labhost's TPE (sweep::study) against Optuna's
# TPESampler (default, and multivariate) and random search, on test functions from the HPO
# literature — sphere, Rastrigin, Ackley, Rosenbrock, Levy (in DIMS dimensions), six-hump
# camel (2-D), and a mixed space (a log-scaled float, an integer and a categorical) — SEEDS
# seeds at each of TRIALS budgets, sequential and 4 at once (4 asked before any is told:
# labhost's constant liar, Optuna's constant_liar=True). Prints, per function and budget, the
# median regret (best found minus the known optimum) of each sampler, labhost's ratio to
# Optuna's (below 1: labhost better) and on how many seeds labhost won.
#
#   bench/tpe_quality.sh                    # SEEDS=20 TRIALS="100 300" DIMS="2 5 10"
#   SEEDS=5 TRIALS=100 DIMS=2 bench/tpe_quality.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet
    BIN="$PWD/target/release/labhost"
fi
SEEDS=${SEEDS:-20}
TRIALS=${TRIALS:-"100 300"}
DIMS=${DIMS:-"2 5 10"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

VENV=target/bench-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import optuna' 2>/dev/null; then
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q optuna
fi

# The functions, each written once in Rhai and once in Python (same domains, same optimum).
cat > "$work/labhost.rhai" <<'RHAI'
// ARGS: function dim trials seeds batch → one best value per seed, a line each.
let f = ARGS[0]; let d = parse_int(ARGS[1]); let n = parse_int(ARGS[2]);
let seeds = parse_int(ARGS[3]); let batch = parse_int(ARGS[4]);
let bounds = #{sphere: [-5.12, 5.12], rastrigin: [-5.12, 5.12], ackley: [-32.768, 32.768],
               rosenbrock: [-5.0, 10.0], levy: [-10.0, 10.0]};
fn value(f, p, d) {
    let pi = PI();
    if f == "camel" {
        let x = p.x0; let y = p.x1;
        return (4.0 - 2.1 * x ** 2 + x ** 4 / 3.0) * x ** 2 + x * y + (-4.0 + 4.0 * y ** 2) * y ** 2 + 1.031628453489877;
    }
    if f == "mixed" {
        let act = #{relu: 0.0, tanh: 0.5, sigmoid: 1.0};
        return (log(p.lr) + 3.0) ** 2 + ((p.units - 20) / 10.0) ** 2 + act[p.act];
    }
    let xs = []; for i in 0..d { xs.push(p[`x${i}`]); }
    if f == "sphere" { let s = 0.0; for x in xs { s += x * x; } return s; }
    if f == "rastrigin" { let s = 10.0 * d; for x in xs { s += x * x - 10.0 * cos(2.0 * pi * x); } return s; }
    if f == "ackley" {
        let a = 0.0; let b = 0.0;
        for x in xs { a += x * x; b += cos(2.0 * pi * x); }
        return -20.0 * exp(-0.2 * sqrt(a / d)) - exp(b / d) + 20.0 + E();
    }
    if f == "rosenbrock" {
        let s = 0.0;
        for i in 0..d - 1 { s += 100.0 * (xs[i + 1] - xs[i] ** 2) ** 2 + (1.0 - xs[i]) ** 2; }
        return s;
    }
    if f == "levy" {
        let w = xs.map(|x| 1.0 + (x - 1.0) / 4.0);
        let s = sin(pi * w[0]) ** 2;
        for i in 0..d - 1 { s += (w[i] - 1.0) ** 2 * (1.0 + 10.0 * sin(pi * w[i] + 1.0) ** 2); }
        return s + (w[d - 1] - 1.0) ** 2 * (1.0 + sin(2.0 * pi * w[d - 1]) ** 2);
    }
    throw `unknown function ${f}`;
}
for seed in 0..seeds {
    let space = #{};
    if f == "camel" { space.x0 = sweep::uniform(-3, 3); space.x1 = sweep::uniform(-2, 2); }
    else if f == "mixed" {
        // Azure's loguniform: exp(uniform(min, max)), so lr in [1e-5, 1].
        space.lr = sweep::loguniform(ln(0.00001), 0.0);
        space.units = sweep::randint(64);
        space.act = sweep::choice(["relu", "tanh", "sigmoid"]);
    } else {
        let b = bounds[f];
        for i in 0..d { space[`x${i}`] = sweep::uniform(b[0], b[1]); }
    }
    let st = sweep::study(space, #{sampler: "tpe", goal: "minimize", seed: seed});
    let best = 1e300; let done = 0;
    while done < n {
        let asked = [];
        for k in 0..batch { if done + asked.len() < n { asked.push(st.ask()); } }
        for t in asked {
            let v = value(f, t.params, d);
            if v < best { best = v; }
            st.tell(t, v);
            done += 1;
        }
    }
    print(best);
}
RHAI

cat > "$work/optuna_runs.py" <<'PY'
# argv: function dim trials seeds batch sampler → one best value per seed, a line each.
import math, sys, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
f, d, n, seeds, batch, which = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
B = {"sphere": (-5.12, 5.12), "rastrigin": (-5.12, 5.12), "ackley": (-32.768, 32.768),
     "rosenbrock": (-5.0, 10.0), "levy": (-10.0, 10.0)}

def value(t):
    if f == "camel":
        x, y = t.suggest_float("x0", -3, 3), t.suggest_float("x1", -2, 2)
        return (4 - 2.1 * x**2 + x**4 / 3) * x**2 + x * y + (-4 + 4 * y**2) * y**2 + 1.031628453489877
    if f == "mixed":
        lr = t.suggest_float("lr", 1e-5, 1.0, log=True)
        units = t.suggest_int("units", 0, 63)
        act = t.suggest_categorical("act", ["relu", "tanh", "sigmoid"])
        return (math.log10(lr) + 3) ** 2 + ((units - 20) / 10) ** 2 + {"relu": 0.0, "tanh": 0.5, "sigmoid": 1.0}[act]
    lo, hi = B[f]
    xs = [t.suggest_float(f"x{i}", lo, hi) for i in range(d)]
    if f == "sphere":
        return sum(x * x for x in xs)
    if f == "rastrigin":
        return 10 * d + sum(x * x - 10 * math.cos(2 * math.pi * x) for x in xs)
    if f == "ackley":
        a = sum(x * x for x in xs) / d
        b = sum(math.cos(2 * math.pi * x) for x in xs) / d
        return -20 * math.exp(-0.2 * math.sqrt(a)) - math.exp(b) + 20 + math.e
    if f == "rosenbrock":
        return sum(100 * (xs[i + 1] - xs[i] ** 2) ** 2 + (1 - xs[i]) ** 2 for i in range(d - 1))
    if f == "levy":
        w = [1 + (x - 1) / 4 for x in xs]
        s = math.sin(math.pi * w[0]) ** 2
        s += sum((w[i] - 1) ** 2 * (1 + 10 * math.sin(math.pi * w[i] + 1) ** 2) for i in range(d - 1))
        return s + (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)
    raise SystemExit(f"unknown function {f}")

for seed in range(seeds):
    if which == "random":
        s = optuna.samplers.RandomSampler(seed=seed)
    else:
        s = optuna.samplers.TPESampler(seed=seed, multivariate=(which == "multivariate"),
                                       constant_liar=(batch > 1))
    st = optuna.create_study(sampler=s, direction="minimize")
    done = 0
    while done < n:
        # Optuna samples at suggest time: every asked trial suggests (and is evaluated)
        # before any is told, so the batch runs "at once" as labhost's does.
        asked = [st.ask() for _ in range(min(batch, n - done))]
        values = [value(t) for t in asked]
        for t, v in zip(asked, values):
            st.tell(t, v)
            done += 1
    print(st.best_value)
PY

cat > "$work/summary.py" <<'PY'
import statistics, sys
lh, op, mv, rnd = ([float(x) for x in open(p).read().split()] for p in sys.argv[2:6])
med = lambda v: statistics.median(v)
eps = 1e-12
ratio = (med(lh) + eps) / (med(op) + eps)
wins = sum(1 for a, b in zip(lh, op) if a < b)
print(f"{sys.argv[1]:<34} labhost {med(lh):>10.4g}  optuna {med(op):>10.4g}  multivariate {med(mv):>10.4g}"
      f"  random {med(rnd):>10.4g}  labhost/optuna {ratio:5.2f}  wins {wins}/{len(lh)}")
PY

echo "== median regret over $SEEDS seeds (lower is better); ratio < 1: labhost better than Optuna's TPESampler"
for trials in $TRIALS; do
    for batch in 1 4; do
        mode=$([ "$batch" = 1 ] && echo sequential || echo "4 at once")
        cases=""
        for f in sphere rastrigin ackley rosenbrock levy; do
            for d in $DIMS; do cases="$cases $f:$d"; done
        done
        cases="$cases camel:2 mixed:3"
        for c in $cases; do
            f=${c%%:*}; d=${c##*:}
            "$BIN" -q run "$work/labhost.rhai" "$f" "$d" "$trials" "$SEEDS" "$batch" > "$work/lh"
            "$VENV/bin/python" "$work/optuna_runs.py" "$f" "$d" "$trials" "$SEEDS" "$batch" tpe > "$work/op"
            "$VENV/bin/python" "$work/optuna_runs.py" "$f" "$d" "$trials" "$SEEDS" "$batch" multivariate > "$work/mv"
            "$VENV/bin/python" "$work/optuna_runs.py" "$f" "$d" "$trials" "$SEEDS" 1 random > "$work/rnd"
            python3 "$work/summary.py" "$f ${d}-D, $trials trials, $mode" "$work/lh" "$work/op" "$work/mv" "$work/rnd"
        done
    done
done
