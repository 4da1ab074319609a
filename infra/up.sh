#!/usr/bin/env bash
# Installs (if missing) and starts the real backends on loopback, in a
# project-local directory (infra/.local, ignored by git):
#   PostgreSQL  127.0.0.1:$PG_PORT     database `media`, role `media` (may create test databases)
#   Redis       127.0.0.1:$REDIS_PORT
#   Garage      127.0.0.1:$GARAGE_S3_PORT (S3), single node, bucket `media`, one access key
#   nginx       127.0.0.1:58080, the CDN edge in front of Garage (infra/edge.sh)
# and writes $LOCAL_DIR/env with the MEDIA_* and AWS_* variables that point at them.
# Idempotent: what is installed is not reinstalled, what runs is not restarted.
# Works as root (PostgreSQL then runs as the `postgres` user) and as a normal user.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_install postgresql redis-server ca-certificates curl openssl

garage_version="$(garage --version 2>/dev/null || true)"
if ! grep -q "$GARAGE_VERSION" <<<"$garage_version"; then
    log "building Garage $GARAGE_VERSION (cargo install; about 20 minutes on 2 cores, once per machine)"
    cargo install garage --version "$GARAGE_VERSION" --locked --quiet
fi

mkdir -p "$LOCAL_DIR"
chmod 755 "$LOCAL_DIR"

# ---------------------------------------------------------------- PostgreSQL
start_postgres() {
    local pg_bin data="$LOCAL_DIR/pg/data" run=()
    pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    [ -x "$pg_bin/pg_ctl" ] || die "PostgreSQL binaries not found under /usr/lib/postgresql"
    mkdir -p "$LOCAL_DIR/pg"
    if [ "$(id -u)" -eq 0 ]; then
        # PostgreSQL refuses to run as root: its files belong to the postgres user.
        chown postgres:postgres "$LOCAL_DIR/pg"
        run=(runuser -u postgres --)
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
        log "initialising PostgreSQL in $data"
        "${run[@]}" "$pg_bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
        cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$LOCAL_DIR/pg'
max_connections = 300
fsync = on
synchronous_commit = off
shared_buffers = 256MB
CONF
    fi
    if ! "${run[@]}" "$pg_bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        "${run[@]}" "$pg_bin/pg_ctl" -D "$data" -l "$LOCAL_DIR/pg/postgres.log" -w -t 60 start >/dev/null
    fi
    local psql=(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
    wait_for 30 "${psql[@]}" -c 'select 1' || die "PostgreSQL did not answer; see $LOCAL_DIR/pg/postgres.log"
    if [ "$("${psql[@]}" -c "select count(*) from pg_roles where rolname = 'media'")" = 0 ]; then
        "${psql[@]}" -c "create role media login password 'media' createdb"
    fi
    if [ "$("${psql[@]}" -c "select count(*) from pg_database where datname = 'media'")" = 0 ]; then
        "${psql[@]}" -c "create database media owner media"
    fi
}

# --------------------------------------------------------------------- Redis
start_redis() {
    local dir="$LOCAL_DIR/redis"
    mkdir -p "$dir"
    if redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then return 0; fi
    log "starting Redis on 127.0.0.1:$REDIS_PORT"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$dir" --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save "" --appendonly no >/dev/null
    wait_for 20 redis-cli -p "$REDIS_PORT" ping || die "Redis did not start; see $dir/redis.log"
}

# -------------------------------------------------------------------- Garage
start_garage() {
    local dir="$LOCAL_DIR/garage" conf="$LOCAL_DIR/garage/garage.toml"
    mkdir -p "$dir/meta" "$dir/data"
    if [ ! -f "$conf" ]; then
        cat >"$conf" <<CONF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$GARAGE_RPC_PORT"
rpc_public_addr = "127.0.0.1:$GARAGE_RPC_PORT"
rpc_secret = "$(random_hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$GARAGE_S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$GARAGE_ADMIN_PORT"
admin_token = "$(random_hex 32)"
CONF
    fi
    local g=(garage -c "$conf")
    if ! { [ -f "$dir/garage.pid" ] && kill -0 "$(cat "$dir/garage.pid")" 2>/dev/null; }; then
        log "starting Garage on 127.0.0.1:$GARAGE_S3_PORT"
        RUST_LOG=warn nohup "${g[@]}" server >>"$dir/garage.log" 2>&1 &
        echo $! >"$dir/garage.pid"
    fi
    wait_for 60 "${g[@]}" status || die "Garage did not start; see $dir/garage.log"
    # Read the whole answer before matching: `grep -q` would close the pipe
    # early, and garage aborts when it cannot finish writing.
    local layout
    layout="$("${g[@]}" layout show 2>/dev/null || true)"
    if grep -q "No nodes currently have a role" <<<"$layout"; then
        local node
        node="$("${g[@]}" node id -q | cut -d@ -f1)"
        "${g[@]}" layout assign -z local -c 10G "$node" >/dev/null
        "${g[@]}" layout apply --version 1 >/dev/null
    fi
    # Credentials are chosen once and kept, so the env file stays valid across restarts.
    if [ ! -f "$dir/key" ]; then
        printf 'GK%s %s\n' "$(random_hex 12)" "$(random_hex 32)" >"$dir/key"
    fi
    read -r KEY_ID KEY_SECRET <"$dir/key"
    wait_for 30 "${g[@]}" key list || die "Garage is not answering key requests"
    if ! "${g[@]}" key info "$KEY_ID" >/dev/null 2>&1; then
        "${g[@]}" key import --yes -n media "$KEY_ID" "$KEY_SECRET" >/dev/null
    fi
    if ! "${g[@]}" bucket info media >/dev/null 2>&1; then
        "${g[@]}" bucket create media >/dev/null
    fi
    "${g[@]}" bucket allow --read --write --owner media --key "$KEY_ID" >/dev/null
    set_lifecycle_rule
}

# A backstop for upload sessions the janitor never aborted (a node that died,
# a bug): the store itself drops multipart uploads left incomplete this long.
set_lifecycle_rule() {
    local days="${MEDIA_MULTIPART_BACKSTOP_DAYS:-2}" body md5 sha
    body="<?xml version=\"1.0\" encoding=\"UTF-8\"?><LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule><ID>abort-incomplete-uploads</ID><Status>Enabled</Status><Filter><Prefix></Prefix></Filter><AbortIncompleteMultipartUpload><DaysAfterInitiation>$days</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule></LifecycleConfiguration>"
    md5="$(printf '%s' "$body" | openssl md5 -binary | base64)"
    sha="$(printf '%s' "$body" | sha256sum | cut -d' ' -f1)"
    # `lifecycle=` (with the equals sign) so curl's SigV4 canonical query matches the server's.
    curl -fsS -X PUT "http://127.0.0.1:$GARAGE_S3_PORT/media?lifecycle=" \
        --aws-sigv4 "aws:amz:garage:s3" --user "$KEY_ID:$KEY_SECRET" \
        -H "Content-MD5: $md5" -H "x-amz-content-sha256: $sha" -H "content-type: application/xml" \
        --data-binary "$body" >/dev/null || die "could not set the bucket lifecycle rule"
}

start_postgres
start_redis
start_garage
"$INFRA_DIR/edge.sh"

JWT_SECRET_FILE="$LOCAL_DIR/jwt-secret"
[ -f "$JWT_SECRET_FILE" ] || random_hex 32 >"$JWT_SECRET_FILE"

cat >"$LOCAL_DIR/env" <<ENV
# Written by infra/up.sh: the real backends on loopback. Source it: . infra/.local/env
export MEDIA_DATABASE_URL=postgres://media:media@127.0.0.1:$PG_PORT/media
export MEDIA_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export MEDIA_BLOB_STORE=s3://media
export MEDIA_S3_FORCE_PATH_STYLE=true
export MEDIA_JWT_SECRET=$(cat "$JWT_SECRET_FILE")
export AWS_ENDPOINT_URL=http://127.0.0.1:$GARAGE_S3_PORT
export AWS_REGION=garage
export AWS_ACCESS_KEY_ID=$KEY_ID
export AWS_SECRET_ACCESS_KEY=$KEY_SECRET
# Download URLs point at the nginx CDN edge (infra/edge.sh) in front of Garage.
export MEDIA_CDN_BASE_URL=http://127.0.0.1:${MEDIA_EDGE_PORT:-58080}
ENV
log "backends up; environment in $LOCAL_DIR/env"
