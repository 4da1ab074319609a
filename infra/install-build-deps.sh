#!/usr/bin/env bash
# Installs what building the workspace needs on a machine that has only Rust.
# Used by both README commands. Idempotent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v cargo >/dev/null || die "cargo is not on PATH: install Rust first (rustup)"
apt_install "${BUILD_PACKAGES[@]}"
