#!/usr/bin/env bash
# Interleaved A/B of the global allocator (issue 19): the service built with
# glibc's malloc (old) against jemalloc (new), on the embedded default.
# Each round runs, for each build: the soak's mix for 240 s without sockets
# (resident memory's slope and CPU per GB), a large-file ingest and a
# small-file run (throughput, latency, CPU s/GB, peak memory against the
# baseline the load tool measures in the same run).
#   AB_DIR holds old/ and new/ (each media-api, media-render and load).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
AB=${AB_DIR:-/tmp/ab19}
LOAD=$AB/new/load
export MEDIA_JWT_SECRET=ab-test-secret-long-enough-0123456789abcdef
run() { # $1 = old|new, $2.. = load args
    local which=$1; shift
    local dir=$AB/data-$which; rm -rf "$dir"; mkdir -p "$dir"
    local port=18091
    mapfile -t quotas < <(grep -v '^#' load/quotas.env)
    env -u MEDIA_DATABASE_URL -u MEDIA_REDIS_URL -u MEDIA_BLOB_STORE -u MEDIA_CDN_BASE_URL \
        "${quotas[@]}" MALLOC_ARENA_MAX=2 MEDIA_LISTEN=127.0.0.1:$port \
        MEDIA_DATA_DIR=$dir MEDIA_GC_GRACE=1m MEDIA_JOBS__SERVE_WORKERS=0 \
        $AB/$which/media-api serve >$AB/$which.log 2>&1 &
    local pid=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done
    sync
    echo "=== $which $*"
    $LOAD "$@" --base http://127.0.0.1:$port --service-pid $pid
    kill $pid; wait $pid 2>/dev/null
    rm -rf "$dir"
}
soak() { # $1 = old|new
    echo "=== $1 soak --seconds 240 --warmup 60 --sockets 0"
    SERVICE=$AB/$1/media-api LOAD=$LOAD OUT=$AB/soak-$1 PORT=18092 \
        load/soak.sh --seconds 240 --warmup 60 --sockets 0
}
mkdir -p "$AB/baseline"
for round in 1 2; do
  for which in old new; do
    soak $which
    run $which ingest --uploads 16 --concurrency 8 --size-mib 64 --parallel 4 --baseline-dir $AB/baseline
    run $which small --clients 32 --count 3000 --baseline-dir $AB/baseline
  done
done
