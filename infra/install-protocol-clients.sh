#!/usr/bin/env bash
# Installs the stock protocol clients the tests run against the service,
# pinned, from the package registries only: tuspy (PyPI) in a virtualenv in
# infra/.local/venv. Idempotent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TUSPY_VERSION=1.1.0

apt_install python3 python3-venv
venv="$LOCAL_DIR/venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import tusclient, importlib.metadata as m; assert m.version('tuspy') == '$TUSPY_VERSION'" 2>/dev/null; then
    log "installing tuspy $TUSPY_VERSION from PyPI"
    "$venv/bin/pip" install -q "tuspy==$TUSPY_VERSION"
fi
