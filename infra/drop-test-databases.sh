#!/usr/bin/env bash
# Drops the databases earlier test runs made (`t_` and 32 hex digits, one per
# test on the real set). They are never dropped by the tests themselves (a
# failed test's database is kept to look at), and on a machine that runs the
# suite often they pile up: with a thousand of them, PostgreSQL's autovacuum
# visits each one every minute and slows everything else down.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=/dev/null
source "$LOCAL_DIR/env"
names=$(psql -Atq "$MEDIA_DATABASE_URL" -c \
    "select datname from pg_database where datname ~ '^t_[0-9a-f]{32}$'")
count=0
for name in $names; do
    psql -q "$MEDIA_DATABASE_URL" -c "drop database if exists $name" >/dev/null
    count=$((count + 1))
done
log "dropped $count test databases left by earlier runs"
