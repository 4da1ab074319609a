# Shared helpers for the infra scripts. Sourced, not run.
# shellcheck shell=bash

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$INFRA_DIR/.." && pwd)"
# Project-local state (git ignores it): databases, logs, pid files, the env file.
LOCAL_DIR="${MEDIA_INFRA_DIR:-$INFRA_DIR/.local}"
GARAGE_VERSION="2.5.0"

# Loopback ports, away from the usual ones so a system service cannot clash.
PG_PORT="${MEDIA_PG_PORT:-55432}"
REDIS_PORT="${MEDIA_REDIS_PORT:-56379}"
GARAGE_S3_PORT="${MEDIA_GARAGE_S3_PORT:-53900}"
GARAGE_RPC_PORT="${MEDIA_GARAGE_RPC_PORT:-53901}"
GARAGE_ADMIN_PORT="${MEDIA_GARAGE_ADMIN_PORT:-53903}"

export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the Debian packages given that are not installed yet.
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# What the workspace needs to build: clang for bindgen, pkg-config, and the
# FFmpeg development libraries the transcoder links, and cmake + nasm to build
# the libjpeg-turbo 3 it bundles (bookworm ships 2.1).
# bubblewrap is the decoder's sandbox at run time (jobs.sandbox); prlimit
# (util-linux, always there) sets its limits.
BUILD_PACKAGES=(clang libclang-dev pkg-config libavcodec-dev libavformat-dev libavutil-dev
    libswscale-dev libswresample-dev libavfilter-dev libavdevice-dev cmake nasm bubblewrap)

# What the tests and benchmarks run besides the service: the ffmpeg command
# line (fixtures, ffprobe, the transcode baseline) and libvips' vipsthumbnail
# (the thumbnail baseline).
TEST_PACKAGES=(ffmpeg libvips-tools b3sum)

# Waits until a command succeeds, up to $1 seconds.
wait_for() {
    local seconds=$1; shift
    local i
    for ((i = 0; i < seconds * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# A random hex string of $1 bytes.
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
