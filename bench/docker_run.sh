#!/usr/bin/env bash
# `labhost docker-run` of a trivial command vs `docker run --rm` of the same image, one run
# (hyperfine), printing the ratio. Goal: <= 1.05x. Needs a Docker engine (DOCKER_HOST or the
# local socket) and an image: IMAGE (default labhost-test:busybox, which tests/run-all.sh
# imports; set IMAGE to any local image otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN="$PWD/target/release/labhost"
IMAGE=${IMAGE:-labhost-test:busybox}
RUNS=${RUNS:-30}
docker image inspect "$IMAGE" >/dev/null 2>&1 || { echo "image $IMAGE not found (set IMAGE)" >&2; exit 2; }
if ! command -v hyperfine >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq hyperfine) >/dev/null 2>&1 || true
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$work/h.json" \
    -n labhost "$BIN docker-run --image $IMAGE --network none -- true" \
    -n docker "docker run --rm --network none $IMAGE true" >&2
python3 - "$work/h.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
lh, dk = r["labhost"]["median"] * 1000, r["docker"]["median"] * 1000
print(f"labhost docker-run  median {lh:.1f} ms")
print(f"docker run --rm     median {dk:.1f} ms")
print(f"ratio labhost/docker {lh / dk:.3f}x (goal <= 1.05x)")
PY
