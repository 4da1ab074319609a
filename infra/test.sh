#!/usr/bin/env bash
# The test command: installs what is missing, starts PostgreSQL, Redis and
# Garage on loopback, and runs the whole test suite against them and against
# the embedded default.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$INFRA_DIR/install-build-deps.sh"
# The tests make their fixtures with the ffmpeg command line and check
# outputs with ffprobe.
apt_install "${TEST_PACKAGES[@]}"
"$INFRA_DIR/install-protocol-clients.sh"
"$INFRA_DIR/build-web.sh"
"$INFRA_DIR/up.sh"
"$INFRA_DIR/drop-test-databases.sh"
# shellcheck source=/dev/null
source "$LOCAL_DIR/env"
cd "$REPO_DIR"
cargo build --locked --workspace --all-targets
exec cargo test --locked --workspace --all-targets "$@"
