#!/usr/bin/env bash
# The run command: builds and runs the service on its embedded default
# (SQLite, in-process progress, filesystem blobs under ./data). No other process needed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$INFRA_DIR/install-build-deps.sh"
cd "$REPO_DIR"
exec cargo run --release --locked -p media-api --bin media-api -- "${@:-serve}"
