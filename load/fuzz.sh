#!/usr/bin/env bash
# A longer Schemathesis run than the test command's (which runs 25 cases per
# operation and phase, seed 20261126): the same test, more cases, any seed.
#
#   infra/install-protocol-clients.sh && infra/up.sh && . infra/.local/env
#   load/fuzz.sh [CASES (default 500)] [SEED (default: a new one)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export MEDIA_FUZZ_CASES="${1:-500}"
export MEDIA_FUZZ_SEED="${2:-$RANDOM$RANDOM}"
echo "Schemathesis: $MEDIA_FUZZ_CASES cases, seed $MEDIA_FUZZ_SEED"
cargo build -p media-api --bins
exec cargo test -p media-e2e --test e2e -- fuzz:: --test-threads 1
