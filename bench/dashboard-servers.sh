# Sourced by the dashboard benches: a release build, the venv tests/run-all.sh makes
# (target/mlflow-venv-<version>: mlflow and websocket-client) and Debian's chromium found or
# refused; then `labhost ui` (port $lp, process group $lpid, state $LABHOST_HOME) and a real
# `mlflow server` (port $mp, process group $mpid) started on fresh state in $work, both
# stopped (and $work removed) on exit.
cargo build --release --quiet
BIN="$PWD/target/release/labhost"
VENV=$(ls -d "$PWD"/target/mlflow-venv-* 2>/dev/null | tail -1 || true)
PY="${LABHOST_TEST_MLFLOW_PYTHON:-$VENV/bin/python}"
MLFLOW="${LABHOST_TEST_MLFLOW_SERVER:-$VENV/bin/mlflow}"
CHROMIUM="${LABHOST_TEST_CHROMIUM:-$(command -v chromium || true)}"
[ -x "$MLFLOW" ] && [ -x "$PY" ] || { echo "no mlflow venv: run tests/run-all.sh once, or set LABHOST_TEST_MLFLOW_PYTHON and LABHOST_TEST_MLFLOW_SERVER" >&2; exit 2; }
[ -x "$CHROMIUM" ] || { echo "no chromium: apt-get install chromium, or set LABHOST_TEST_CHROMIUM" >&2; exit 2; }
export MLFLOW_DISABLE_TELEMETRY=true
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 240); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 0.25; done; echo "server on $1 did not start" >&2; exit 1; }

export LABHOST_HOME="$work/lh"
mkdir -p "$LABHOST_HOME" "$work/ml"
lp=$(free_port)
setsid "$BIN" -q ui --no-token --port "$lp" >/dev/null 2>&1 & pids+=($!)
lpid=$!
mp=$(free_port)
(cd "$work/ml" && exec setsid "$MLFLOW" server --host 127.0.0.1 --port "$mp" --workers 1 \
    --backend-store-uri "sqlite:///$work/ml/mlflow.db" --artifacts-destination "$work/ml/art" >/dev/null 2>&1) & pids+=($!)
mpid=$!
wait_up "$lp"; wait_up "$mp"
