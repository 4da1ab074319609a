#!/usr/bin/env bash
# Installs the stock protocol clients and the browser the tests run against
# the service, pinned, from the package registries only: tuspy and the API
# fuzzer Schemathesis (PyPI) in a virtualenv in infra/.local/venv,
# tus-js-client (npm) in tests/clients/node_modules, and Playwright (npm) in
# tests/browser/node_modules with Debian's chromium for it to drive.
# Idempotent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TUSPY_VERSION=1.1.0
# The API fuzzer the test command runs against /openapi.json.
SCHEMATHESIS_VERSION=4.32.5

apt_install python3 python3-venv
venv="$LOCAL_DIR/venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import tusclient, importlib.metadata as m; assert m.version('tuspy') == '$TUSPY_VERSION'" 2>/dev/null; then
    log "installing tuspy $TUSPY_VERSION from PyPI"
    "$venv/bin/pip" install -q "tuspy==$TUSPY_VERSION"
fi
if ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('schemathesis') == '$SCHEMATHESIS_VERSION'" 2>/dev/null; then
    log "installing schemathesis $SCHEMATHESIS_VERSION from PyPI"
    "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

# tus-js-client (npm), run under Node: pinned in tests/clients/package.json,
# locked in its package-lock.json, installed with `npm ci`.
if ! command -v npm >/dev/null; then
    apt_install nodejs npm
fi
clients="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/clients" && pwd)"
if [ ! -f "$clients/node_modules/.package-lock.json" ] ||
    ! cmp -s "$clients/package-lock.json" "$clients/node_modules/.lock-installed"; then
    log "installing tus-js-client from npm (tests/clients/package-lock.json)"
    (cd "$clients" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$clients/package-lock.json" "$clients/node_modules/.lock-installed"
fi

# The web client's browser suite: Playwright from npm (tests/browser,
# pinned in its package.json and lockfile) driving Debian's Chromium. The
# Playwright version is the one built against Debian's Chromium major
# version; Playwright never downloads a browser here.
# Its fonts are only a recommendation of the package; the screenshots need them.
apt_install chromium fonts-liberation
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "Playwright 1.64 needs Node.js 20 or later; this machine has $(node --version)"
suite="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/browser" && pwd)"
if [ ! -f "$suite/node_modules/.lock-installed" ] ||
    ! cmp -s "$suite/package-lock.json" "$suite/node_modules/.lock-installed"; then
    log "installing Playwright from npm (tests/browser/package-lock.json)"
    (cd "$suite" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    cp "$suite/package-lock.json" "$suite/node_modules/.lock-installed"
fi
want="$(node -e 'const b=require(process.argv[1]).browsers.find(b=>b.name==="chromium");console.log(b.browserVersion.split(".")[0])' \
    "$suite/node_modules/playwright-core/browsers.json")"
have="$(chromium --version 2>/dev/null | sed -E 's/^Chromium ([0-9]+).*/\1/')"
if [ "$want" != "$have" ]; then
    die "Playwright in tests/browser is built for Chromium $want, Debian's chromium is $have: pin the @playwright/test whose playwright-core/browsers.json names Chromium $have"
fi
