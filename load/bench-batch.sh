#!/usr/bin/env bash
# `load batch` on both backend sets (load/bench-both.sh), the service with
# its in-process workers (one per core; batch work takes all but one): a
# live upload's time to `ready` with the workers idle, then while a
# reprocessing batch runs.
#
#   cargo build --release --locked -p media-api -p media-render -p load
#   infra/up.sh
#   load/bench-batch.sh [extra `load batch` options]
set -euo pipefail
export MEDIA_JOBS__POLL_INTERVAL=1s
exec "$(dirname "${BASH_SOURCE[0]}")/bench-both.sh" batch "$@"
