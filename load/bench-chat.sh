#!/usr/bin/env bash
# `load chat` on both backend sets (load/bench-both.sh), each against a
# freshly started release service with no workers: the embedded default (a
# new data dir) and PostgreSQL + Redis + Garage (a new database, so earlier
# runs' rows do not weigh on this one).
#
#   cargo build --release --locked -p media-api && cargo build --release --locked -p load
#   infra/up.sh
#   load/bench-chat.sh [extra `load chat` options]
#
# Each report is printed, and kept in $OUT (default /tmp/bench-chat).
# SERVICE=path measures another build of the service (a before/after runs
# this script alternately with each).
set -euo pipefail
export MEDIA_JOBS__SERVE_WORKERS=0
exec "$(dirname "${BASH_SOURCE[0]}")/bench-both.sh" chat "$@"
