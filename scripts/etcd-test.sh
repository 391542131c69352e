#!/usr/bin/env bash
# Runs the storage layer's tests (both backends) with what they need installed:
# etcd-server (the etcd tests start their own etcd) and protobuf-compiler (etcd-client's
# build script needs protoc). Usable from .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need+=(etcd-server)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Two threads: the machine has two cores and the etcd tests run an etcd beside them.
cargo test -p skiff-store -- --test-threads=2 "$@"
