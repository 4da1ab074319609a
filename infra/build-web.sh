#!/usr/bin/env bash
# Builds the web client (media-api/web) into media-api/web/dist, which the
# service embeds when it is compiled: installs Node.js and npm from Debian
# when missing, the page's packages from the npm registry exactly as
# media-api/web/package-lock.json pins them (`npm ci`), then bundles it with
# esbuild. Idempotent: reinstalls only when the lockfile changed, rebuilds
# only when a source did.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

web="$REPO_DIR/media-api/web"
if ! command -v npm >/dev/null; then
    apt_install nodejs npm
fi
if [ ! -f "$web/node_modules/.lock-installed" ] ||
    ! cmp -s "$web/package-lock.json" "$web/node_modules/.lock-installed"; then
    log "installing the web client's packages from npm (media-api/web/package-lock.json)"
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$web/package-lock.json" "$web/node_modules/.lock-installed"
fi
stamp="$web/dist/index.html"
if [ ! -f "$stamp" ] || [ -n "$(find "$web/src" "$web/build.mjs" "$web/package-lock.json" -newer "$stamp" -print -quit)" ]; then
    log "building the web client (media-api/web/dist)"
    (cd "$web" && node build.mjs)
fi
