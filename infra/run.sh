#!/usr/bin/env bash
# The run command: builds and runs the service on its embedded default
# (SQLite, in-process progress, filesystem blobs under ./data). No other process needed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$INFRA_DIR/install-build-deps.sh"
# The web client at http://127.0.0.1:8080/ (embedded into the binary).
"$INFRA_DIR/build-web.sh"
cd "$REPO_DIR"
# The service's own allocations go through jemalloc; glibc's malloc serves
# the C libraries in it and the render children. glibc gives each busy
# thread its own arena and keeps freed buffers in them; two arenas keep that
# small (load/RESULTS.md). Deployments should set it too.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
# Both binaries: the service, and `media-render`, the child each processing
# job runs (found beside the service's binary). Built one after the other so
# that the service is compiled without the transcoder's `decoders` feature
# (building them together would unify the features) and links no decoder.
cargo build --release --locked -p media-api
cargo build --release --locked -p media-render
exec "$REPO_DIR/target/release/media-api" "${@:-serve}"
