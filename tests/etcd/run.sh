#!/usr/bin/env bash
# Runs the etcd registry tests (core/tests/etcd.rs, feature `etcd`) against a
# real etcd on loopback: installs etcd and protoc if missing (apt), starts a
# throwaway single-node etcd on free ports with a temporary data dir, runs the
# tests with SQUALL_ETCD_REQUIRED=1 (an unreachable etcd fails them rather
# than skipping), and stops etcd whatever happens.
#
# Usage: tests/etcd/run.sh [extra args for the test binary, e.g. a test name]
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
# etcd-client's build script compiles etcd's .proto files with protoc.
command -v protoc >/dev/null 2>&1 || [ -n "${PROTOC:-}" ] || missing+=(protobuf-compiler)
if [ ${#missing[@]} -gt 0 ]; then
    echo "etcd tests: installing ${missing[*]}"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# A port nothing listens on (bash's /dev/tcp connect fails).
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

client_port=$(free_port)
peer_port=$(free_port)
while [ "$peer_port" = "$client_port" ]; do peer_port=$(free_port); done
data_dir=$(mktemp -d -t squall-etcd.XXXXXX)
log="$data_dir.log"
client_url="http://127.0.0.1:$client_port"
peer_url="http://127.0.0.1:$peer_port"

etcd --name squall-test --data-dir "$data_dir" \
    --listen-client-urls "$client_url" --advertise-client-urls "$client_url" \
    --listen-peer-urls "$peer_url" --initial-advertise-peer-urls "$peer_url" \
    --initial-cluster "squall-test=$peer_url" >"$log" 2>&1 &
etcd_pid=$!
cleanup() {
    kill "$etcd_pid" 2>/dev/null || true
    wait "$etcd_pid" 2>/dev/null || true
    rm -rf "$data_dir" "$log"
}
trap cleanup EXIT

# Wait (up to 20 s) for the client port to accept connections.
for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$client_port") 2>/dev/null; then
        break
    fi
    if ! kill -0 "$etcd_pid" 2>/dev/null; then
        echo "etcd tests: etcd exited at start-up; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done
echo "etcd tests: $(etcd --version | head -1) at $client_url (data dir $data_dir)"

export SQUALL_ETCD_ENDPOINTS="$client_url"
export SQUALL_ETCD_REQUIRED=1
# The integration tests, and the unit tests that need the raw etcd client.
# SQUALL_FEATURES: squall's features for the build (default `etcd`; CI passes
# its full set so the tests reuse the build it already made).
features=${SQUALL_FEATURES:-etcd}
if ! cargo test -p squall --features "$features" --test etcd -- "$@" ||
    ! cargo test -p squall --features "$features" --lib registry::etcd -- "$@"; then
    echo "etcd tests: failed; etcd's log:" >&2
    tail -n 50 "$log" >&2
    exit 1
fi
