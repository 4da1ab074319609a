#!/usr/bin/env bash
# Installs what the benchmarks in load/ compare against: the ffmpeg command
# line and vipsthumbnail (Debian), and b3sum (crates.io). Idempotent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$INFRA_DIR/install-build-deps.sh"
apt_install "${TEST_PACKAGES[@]}"
command -v b3sum >/dev/null || cargo install b3sum --locked --quiet
