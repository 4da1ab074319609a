#!/usr/bin/env bash
# Stops the backends up.sh started. Their data stays in infra/.local.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_pidfile() {
    local name=$1 pidfile=$2
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        log "stopping $name"
        kill "$(cat "$pidfile")"
        wait_for 20 bash -c "! kill -0 $(cat "$pidfile") 2>/dev/null" || kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

if [ -f "$LOCAL_DIR/pg/data/postmaster.pid" ]; then
    log "stopping PostgreSQL"
    pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$pg_bin/pg_ctl" -D "$LOCAL_DIR/pg/data" -m fast -w stop || true
    else
        "$pg_bin/pg_ctl" -D "$LOCAL_DIR/pg/data" -m fast -w stop || true
    fi
fi
"$INFRA_DIR/edge.sh" stop
stop_pidfile Redis "$LOCAL_DIR/redis/redis.pid"
stop_pidfile Garage "$LOCAL_DIR/garage/garage.pid"
