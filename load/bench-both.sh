#!/usr/bin/env bash
# `load SCENARIO` on both backend sets, each against a freshly started
# release service: the embedded default (a new data dir) and PostgreSQL +
# Redis + Garage (a new database). The caller's MEDIA_* variables configure
# the service (bench-batch.sh and bench-tus.sh set theirs and call this).
#
#   load/bench-both.sh SCENARIO [extra `load SCENARIO` options]
#
# Each report is printed, and kept in $OUT (default /tmp/bench-SCENARIO).
set -euo pipefail
SCENARIO=$1
shift
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN="${CARGO_TARGET_DIR:-target}/release"
SERVICE="${SERVICE:-$BIN/media-api}"
OUT="${OUT:-/tmp/bench-$SCENARIO}"
PORT="${PORT:-18091}"
mkdir -p "$OUT"
export MALLOC_ARENA_MAX=2 MEDIA_LISTEN="127.0.0.1:$PORT"
set -a; . "$(dirname "$0")/quotas.env"; set +a
export MEDIA_JWT_SECRET="bench-$SCENARIO-secret-0123456789abcdef0123"

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
    "$BIN/load" "$SCENARIO" --base "http://127.0.0.1:$PORT" --service-pid "$pid" "${EXTRA[@]}" |
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
export MEDIA_JWT_SECRET="bench-$SCENARIO-secret-0123456789abcdef0123"
db="bench_${SCENARIO}_$$"
admin="$MEDIA_DATABASE_URL"
psql -q "$admin" -c "create database $db" >/dev/null
echo "== PostgreSQL + Redis + Garage"
run postgres env MEDIA_DATABASE_URL="${MEDIA_DATABASE_URL%/*}/$db"
psql -q "$admin" -c "drop database $db" >/dev/null
