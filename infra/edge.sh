#!/usr/bin/env bash
# Starts (or with `stop`, stops) the nginx CDN edge on 127.0.0.1:$EDGE_PORT in
# front of the local Garage. Idempotent. Its cache lives in infra/.local/nginx.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EDGE_PORT="${MEDIA_EDGE_PORT:-58080}"
dir="$LOCAL_DIR/nginx"
conf="$dir/edge.conf"

if [ "${1:-start}" = stop ]; then
    if [ -f "$dir/nginx.pid" ]; then
        nginx -c "$conf" -s quit 2>/dev/null || true
    fi
    exit 0
fi

apt_install nginx libnginx-mod-http-set-misc libnginx-mod-http-headers-more-filter
mkdir -p "$dir/cache" "$dir/tmp"
# Started as root, nginx's workers run as `nobody`: they must own what they write.
if [ "$(id -u)" -eq 0 ]; then
    chown -R nobody:nogroup "$dir/cache" "$dir/tmp"
fi
sed -e "s|@LOCAL@|$LOCAL_DIR|g" -e "s|@EDGE_PORT@|$EDGE_PORT|g" \
    -e "s|@UPSTREAM@|127.0.0.1:$GARAGE_S3_PORT|g" \
    "$INFRA_DIR/nginx/edge.conf.template" >"$conf"
nginx -t -c "$conf" -q 2>/dev/null || nginx -t -c "$conf"
if [ -f "$dir/nginx.pid" ] && kill -0 "$(cat "$dir/nginx.pid")" 2>/dev/null; then
    nginx -c "$conf" -s reload
else
    log "starting the nginx edge on 127.0.0.1:$EDGE_PORT"
    nginx -c "$conf"
fi
wait_for 10 curl -s -o /dev/null "http://127.0.0.1:$EDGE_PORT/" || die "the edge did not start; see $dir/error.log"
