#!/usr/bin/env bash
# Interleaved A/B of tus's PATCH before (old: one part received, then
# stored, then the next) and after (new: one part stored while the next
# arrives), with `load tus` (tus against the native chunked API in the same
# run), on the embedded default and on PostgreSQL + Redis + Garage.
#   AB_DIR holds old/ and new/, each with media-api and load; AB_ROUNDS
#   (3), AB_SETS ("emb real") and AB_ARGS (extra `load tus` options) vary it.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
AB=${AB_DIR:-/tmp/ab17}
set -a; . infra/.local/env; . load/quotas.env; set +a
export MEDIA_JWT_SECRET=ab-test-secret-long-enough-0123456789abcdef
LOAD=$AB/new/load
run() { # $1 = old|new, $2 = real|emb
    local which=$1 set=$2
    local dir=$AB/data-$which-$set; rm -rf "$dir"; mkdir -p "$dir"
    local port=18090 unset=() db=() name=""
    if [ "$set" = emb ]; then
        unset=(-u MEDIA_DATABASE_URL -u MEDIA_REDIS_URL -u MEDIA_BLOB_STORE -u MEDIA_CDN_BASE_URL)
    else
        name="ab_${which}_$RANDOM"
        psql -q "$MEDIA_DATABASE_URL" -c "create database $name" >/dev/null
        db=(MEDIA_DATABASE_URL="${MEDIA_DATABASE_URL%/*}/$name")
    fi
    env "${unset[@]}" "${db[@]}" MALLOC_ARENA_MAX=2 MEDIA_LISTEN=127.0.0.1:$port \
        MEDIA_DATA_DIR=$dir MEDIA_JOBS__SERVE_WORKERS=0 \
        $AB/$which/media-api serve >$AB/$which-$set.log 2>&1 &
    local pid=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done
    sync
    echo "=== $which $set"
    $LOAD tus --base http://127.0.0.1:$port --service-pid $pid ${AB_ARGS:-}
    kill $pid; wait $pid 2>/dev/null
    rm -rf "$dir"
    if [ -n "$name" ]; then psql -q "$MEDIA_DATABASE_URL" -c "drop database $name" >/dev/null; fi
}
for round in $(seq "${AB_ROUNDS:-3}"); do
  for which in old new; do
    for set in ${AB_SETS:-emb real}; do run $which $set; done
  done
done
