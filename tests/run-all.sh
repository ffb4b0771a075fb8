#!/usr/bin/env bash
# The whole labhost test suite, from a fresh machine: installs what is missing, then checks
# formatting and lints, and runs every test (unit, integration, doc examples, scripts/).
# Service-backed suites (Docker engine, Azurite, mlflow) are started here as they land.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
    # apt_install CMD PACKAGE: install PACKAGE when CMD is missing.
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2"
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq >/dev/null
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

command -v cargo >/dev/null 2>&1 || { echo "cargo is required (Rust stable)" >&2; exit 1; }
apt_install cc gcc            # C compiler for bundled C dependencies
apt_install git git

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export INSTA_UPDATE=no        # snapshots are compared, never rewritten, here

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --locked --all-targets -- -D warnings

log "cargo test"
cargo test --locked --all-targets 2>&1
