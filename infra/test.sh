#!/usr/bin/env bash
# The test command: installs what is missing, starts PostgreSQL, Redis and
# Garage on loopback, and runs the whole test suite against them and against
# the embedded default.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$INFRA_DIR/install-build-deps.sh"
"$INFRA_DIR/up.sh"
# shellcheck source=/dev/null
source "$LOCAL_DIR/env"
cd "$REPO_DIR"
cargo build --locked --workspace --all-targets
exec cargo test --locked --workspace --all-targets "$@"
