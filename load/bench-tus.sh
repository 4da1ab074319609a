#!/usr/bin/env bash
# `load tus` on both backend sets (load/bench-both.sh), the service with no
# workers (only the bytes are measured): the same files through tus as a
# stock client sends them by default and through the native chunked API,
# rounds interleaved.
#
#   cargo build --release --locked -p media-api -p load
#   infra/up.sh
#   load/bench-tus.sh [extra `load tus` options]
set -euo pipefail
export MEDIA_JOBS__SERVE_WORKERS=0
exec "$(dirname "${BASH_SOURCE[0]}")/bench-both.sh" tus "$@"
