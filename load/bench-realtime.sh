#!/usr/bin/env bash
# `load realtime` against freshly started release services: the embedded
# default (one node), then two API nodes on PostgreSQL + Redis + Garage
# (a new database), every other socket on the second node.
#
#   cargo build --release --locked -p media-api && cargo build --release --locked -p load
#   infra/up.sh
#   load/bench-realtime.sh [extra `load realtime` options]
#
# Each report is printed, and kept in $OUT (default /tmp/bench-realtime).
# SERVICE=path measures another build of the service.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN="${CARGO_TARGET_DIR:-target}/release"
SERVICE="${SERVICE:-$BIN/media-api}"
OUT="${OUT:-/tmp/bench-realtime}"
PORT_A="${PORT_A:-18190}"
PORT_B="${PORT_B:-18191}"
mkdir -p "$OUT"
export MALLOC_ARENA_MAX=2 MEDIA_JOBS__SERVE_WORKERS=0
set -a; . "$(dirname "$0")/quotas.env"; set +a
export MEDIA_JWT_SECRET="bench-realtime-secret-0123456789abcdef01"
EXTRA=("$@")
PIDS=()
DIRS=()

start() { # port, then env assignments; prints nothing, appends to PIDS
    local port=$1
    shift
    local data
    data=$(mktemp -d)
    DIRS+=("$data")
    env MEDIA_DATA_DIR="$data" MEDIA_LISTEN="127.0.0.1:$port" "$@" "$SERVICE" serve \
        >"$OUT/node-$port.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && return 0
        sleep 0.1
    done
    echo "node on $port did not start; see $OUT/node-$port.log" >&2
    return 1
}

stop_all() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for d in "${DIRS[@]}"; do rm -rf "$d"; done
    PIDS=()
    DIRS=()
}
trap stop_all EXIT

echo "== embedded default (one node)"
start "$PORT_A" env -u MEDIA_DATABASE_URL -u MEDIA_REDIS_URL -u MEDIA_BLOB_STORE
"$BIN/load" realtime --base "http://127.0.0.1:$PORT_A" --service-pid "${PIDS[0]}" "${EXTRA[@]}" |
    tee "$OUT/embedded.txt"
stop_all

# shellcheck disable=SC1091
source infra/.local/env
export MEDIA_JWT_SECRET="bench-realtime-secret-0123456789abcdef01"
db="bench_rt_$$"
admin="$MEDIA_DATABASE_URL"
psql -q "$admin" -c "create database $db" >/dev/null
url="${MEDIA_DATABASE_URL%/*}/$db"
ns="bench-rt-$$"
echo "== PostgreSQL + Redis + Garage, two nodes"
start "$PORT_A" env MEDIA_DATABASE_URL="$url" MEDIA_REDIS_NAMESPACE="$ns"
start "$PORT_B" env MEDIA_DATABASE_URL="$url" MEDIA_REDIS_NAMESPACE="$ns"
"$BIN/load" realtime --base "http://127.0.0.1:$PORT_A" --service-pid "${PIDS[0]}" \
    --other-base "http://127.0.0.1:$PORT_B" --other-pid "${PIDS[1]}" "${EXTRA[@]}" |
    tee "$OUT/postgres.txt"
stop_all
psql -q "$admin" -c "drop database $db" >/dev/null
