#!/usr/bin/env bash
# `load chat` on both backend sets, each against a freshly started release
# service: the embedded default (a new data dir) and PostgreSQL + Redis +
# Garage (a new database, so earlier runs' rows do not weigh on this one).
#
#   cargo build --release --locked -p media-api && cargo build --release --locked -p load
#   infra/up.sh
#   load/bench-chat.sh [extra `load chat` options]
#
# Each report is printed, and kept in $OUT (default /tmp/bench-chat).
# SERVICE=path measures another build of the service (a before/after runs
# this script alternately with each).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN="${CARGO_TARGET_DIR:-target}/release"
# The service binary to measure (an older build, for a before/after).
SERVICE="${SERVICE:-$BIN/media-api}"
OUT="${OUT:-/tmp/bench-chat}"
PORT="${PORT:-18090}"
mkdir -p "$OUT"
export MALLOC_ARENA_MAX=2 MEDIA_JOBS__SERVE_WORKERS=0 MEDIA_LISTEN="127.0.0.1:$PORT"
set -a; . "$(dirname "$0")/quotas.env"; set +a
export MEDIA_JWT_SECRET="bench-chat-secret-0123456789abcdef0123"

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
    "$BIN/load" chat --base "http://127.0.0.1:$PORT" --service-pid "$pid" "${EXTRA[@]}" |
        tee "$OUT/$name.txt"
    kill "$pid"
    wait "$pid" || true
    rm -rf "$data"
}

EXTRA=("$@")
echo "== embedded default"
run embedded env -u MEDIA_DATABASE_URL -u MEDIA_REDIS_URL -u MEDIA_BLOB_STORE

# shellcheck disable=SC1091
source infra/.local/env
export MEDIA_JWT_SECRET="bench-chat-secret-0123456789abcdef0123"
db="bench_chat_$$"
admin="$MEDIA_DATABASE_URL"
psql -q "$admin" -c "create database $db" >/dev/null
echo "== PostgreSQL + Redis + Garage"
run postgres env MEDIA_DATABASE_URL="${MEDIA_DATABASE_URL%/*}/$db"
psql -q "$admin" -c "drop database $db" >/dev/null
