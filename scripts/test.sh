#!/usr/bin/env bash
# The whole test suite. The store tests start their own etcd (Debian's etcd-server) on free
# loopback ports and stop it; the end-to-end tests start skiff and drive the real kubectl.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v etcd >/dev/null || ! command -v protoc >/dev/null; then
  apt-get update -q && apt-get install -y -q etcd-server etcd-client protobuf-compiler >/dev/null
fi
# The Python client test uses the `kubernetes` package from PyPI, in a virtualenv of its own.
if ! target/pyenv/bin/python -c 'import kubernetes' 2>/dev/null; then
  python3 -m venv target/pyenv 2>/dev/null || {
    apt-get update -q && apt-get install -y -q python3-venv >/dev/null && python3 -m venv target/pyenv
  }
  target/pyenv/bin/pip install -q kubernetes==37.0.2
fi
# Each run gets its own kubectl cache so a stale one never hides a bug.
export KUBECACHEDIR="$(mktemp -d)"
trap 'rm -rf "$KUBECACHEDIR"' EXIT
cargo build --workspace --all-targets
log="$(mktemp)"
trap 'rm -rf "$KUBECACHEDIR" "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast -- --test-threads=2 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit "$rc"
