#!/usr/bin/env bash
# `load batch` on both backend sets, each against a freshly started release
# service with its in-process workers (one per core; batch work takes all
# but one): a live upload's time to `ready` with the workers idle, then
# while a reprocessing batch runs.
#
#   cargo build --release --locked -p media-api -p media-render -p load
#   infra/up.sh
#   load/bench-batch.sh [extra `load batch` options]
#
# Each report is printed, and kept in $OUT (default /tmp/bench-batch).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN="${CARGO_TARGET_DIR:-target}/release"
SERVICE="${SERVICE:-$BIN/media-api}"
OUT="${OUT:-/tmp/bench-batch}"
PORT="${PORT:-18091}"
mkdir -p "$OUT"
export MALLOC_ARENA_MAX=2 MEDIA_LISTEN="127.0.0.1:$PORT" MEDIA_JOBS__POLL_INTERVAL=1s
set -a; . "$(dirname "$0")/quotas.env"; set +a
export MEDIA_JWT_SECRET="bench-batch-secret-0123456789abcdef0123"

run() {
    local name=$1
    shift
    local data
    data=$(mktemp -d)
    env MEDIA_DATA_DIR="$data" "$@" "$SERVICE" serve >"$OUT/$name.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break
        sleep 0.1
    done
    "$BIN/load" batch --base "http://127.0.0.1:$PORT" --service-pid "$pid" "${EXTRA[@]}" |
        tee "$OUT/$name.txt"
    kill "$pid"
    wait "$pid" || true
    rm -rf "$data"
}

EXTRA=("$@")
echo "== embedded default"
run embedded env -u MEDIA_DATABASE_URL -u MEDIA_REDIS_URL -u MEDIA_BLOB_STORE -u MEDIA_CDN_BASE_URL

# shellcheck disable=SC1091
source infra/.local/env
export MEDIA_JWT_SECRET="bench-batch-secret-0123456789abcdef0123"
db="bench_batch_$$"
admin="$MEDIA_DATABASE_URL"
psql -q "$admin" -c "create database $db" >/dev/null
echo "== PostgreSQL + Redis + Garage"
run postgres env MEDIA_DATABASE_URL="${MEDIA_DATABASE_URL%/*}/$db"
psql -q "$admin" -c "drop database $db" >/dev/null
