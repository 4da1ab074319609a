#!/usr/bin/env bash
# Interleaved A/B of the upload hot paths before (old) and after (new) the
# issue 15 hardening (per-user rates charged per chunk, the per-user memory
# share, the least body rate, the filesystem store's part files), on
# PostgreSQL + Redis + Garage and on the embedded default.
#   AB_DIR holds old/ and new/ (each media-api, media-render and load).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
AB=${AB_DIR:-/tmp/ab15}
set -a; . infra/.local/env; set +a
export MEDIA_JWT_SECRET=ab-test-secret-long-enough-0123456789abcdef
LOAD=$AB/new/load
run() { # $1 = old|new, $2 = real|emb, $3.. = load args
    local which=$1 set=$2; shift 2
    local dir=$AB/data-$which-$set; rm -rf "$dir"; mkdir -p "$dir"
    local port=18090
    # The old build knows no [quotas]; the new one gets them raised.
    local quotas=()
    if [ "$which" = new ]; then mapfile -t quotas < <(grep -v '^#' load/quotas.env); fi
    # The same share of the memory budget for both: the code's cost, not
    # the per-user share's (AB_SHARE=default measures that too).
    if [ "$which" = new ] && [ "${AB_SHARE:-equal}" = equal ]; then
        quotas+=(MEDIA_LIMITS__INFLIGHT_MEMORY_PER_USER=128MiB)
    fi
    local unset=() db=""
    if [ "$set" = emb ]; then
        unset=(-u MEDIA_DATABASE_URL -u MEDIA_REDIS_URL -u MEDIA_BLOB_STORE -u MEDIA_CDN_BASE_URL)
    else
        # A database of its own: each build migrates its own schema.
        db="ab_${which}_$RANDOM"
        psql -q "$MEDIA_DATABASE_URL" -c "create database $db" >/dev/null
        quotas+=(MEDIA_DATABASE_URL="${MEDIA_DATABASE_URL%/*}/$db")
    fi
    env "${unset[@]}" "${quotas[@]}" MALLOC_ARENA_MAX=2 MEDIA_LISTEN=127.0.0.1:$port \
        MEDIA_DATA_DIR=$dir MEDIA_GC_GRACE=1m MEDIA_JOBS__SERVE_WORKERS=0 \
        $AB/$which/media-api serve >$AB/$which-$set.log 2>&1 &
    local pid=$!
    for i in $(seq 100); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done
    sync
    echo "=== $which $set $*"
    $LOAD "$@" --base http://127.0.0.1:$port --service-pid $pid
    kill $pid; wait $pid 2>/dev/null
    rm -rf "$dir"
    if [ -n "$db" ]; then psql -q "$MEDIA_DATABASE_URL" -c "drop database $db" >/dev/null; fi
}
mkdir -p "$AB/baseline"
for round in 1 2; do
  for which in old new; do
    run $which emb ingest --uploads 16 --concurrency 8 --size-mib 64 --parallel 4 --baseline-dir $AB/baseline
    run $which emb small --clients 32 --count 3000 --baseline-dir $AB/baseline
    run $which real ingest --uploads 16 --concurrency 8 --size-mib 64 --parallel 4 --baseline-s3 s3://media/loadbench
    run $which real small --clients 32 --count 3000 --baseline-s3 s3://media/loadbench
  done
done
