#!/usr/bin/env bash
# Build skiff and run a cluster on the embedded SQLite store. The kubeconfig path is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { apt-get update -q && apt-get install -y -q protobuf-compiler >/dev/null; }
cargo build --release -p skiff
exec ./target/release/skiff server --data-dir "${SKIFF_DATA_DIR:-$HOME/.skiff}" "$@"
