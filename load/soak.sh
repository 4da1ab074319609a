#!/usr/bin/env bash
# `load soak` against a freshly started release service on the embedded
# default, as `infra/run.sh` runs it (SQLite, in-process progress, files,
# workers in-process): mixed traffic for SECONDS (600 by default), its
# resident memory and open descriptors sampled; the first WARMUP seconds
# (120) are the warm-up. The GC's grace is cut to 30 s so deleted media's
# contents are collected within the run and the store reaches a steady state;
# for the same reason the presigned-URL cache is bounded at 2,000 URLs, which
# this mix fills within the warm-up (at the default 20,000 it takes about nine
# minutes, so a ten-minute run would see it filling:
# MEDIA_DOWNLOAD_URL_CACHE=20000 load/soak.sh --seconds 1500 measures that).
#
#   cargo build --release --locked -p media-api -p load
#   load/soak.sh [extra `load soak` options]
#
# The report is printed and kept in $OUT (default /tmp/soak) with the
# service's log. SERVICE=path measures another build of the service
# (LOAD=path runs another build of the load tool).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN="${CARGO_TARGET_DIR:-target}/release"
SERVICE="${SERVICE:-$BIN/media-api}"
LOAD="${LOAD:-$BIN/load}"
OUT="${OUT:-/tmp/soak}"
PORT="${PORT:-18290}"
mkdir -p "$OUT"
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
set -a; . "$(dirname "$0")/quotas.env"; set +a
export MEDIA_JWT_SECRET="soak-secret-0123456789abcdef0123456789"
export MEDIA_GC_GRACE=30s MEDIA_GC_INTERVAL=15s
export MEDIA_DOWNLOAD_URL_CACHE="${MEDIA_DOWNLOAD_URL_CACHE:-2000}"
data=$(mktemp -d)
env -u MEDIA_DATABASE_URL -u MEDIA_REDIS_URL -u MEDIA_BLOB_STORE \
    MEDIA_DATA_DIR="$data" MEDIA_LISTEN="127.0.0.1:$PORT" \
    MEDIA_JOBS__RENDER_PROGRAM="$(dirname "$SERVICE")/media-render" \
    "$SERVICE" serve >"$OUT/service.log" 2>&1 &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break
    sleep 0.1
done
"$LOAD" soak --base "http://127.0.0.1:$PORT" --service-pid "$pid" "$@" | tee "$OUT/report.txt"
echo "store after the run: $(du -sh "$data" | cut -f1)"
# A panic in any task (one a client never sees: the GC, a worker) fails the soak.
if grep -q "panicked at" "$OUT/service.log"; then
    echo "the service panicked (see $OUT/service.log):" >&2
    grep -A1 "panicked at" "$OUT/service.log" >&2
    exit 1
fi
# It must stop when told to: SIGTERM, then 15 s at most.
kill "$pid"
for i in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || { echo "the service exited $((i / 10)).$((i % 10)) s after SIGTERM"; exit 0; }
    sleep 0.1
done
echo "the service had not exited 15 s after SIGTERM (killed)" >&2
exit 1
