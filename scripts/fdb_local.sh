#!/usr/bin/env bash
# A throwaway single-process FoundationDB on 127.0.0.1, for tests and benchmarks.
#
#   scripts/fdb_local.sh start    # start it (creating the database the first time); prints the cluster file
#   scripts/fdb_local.sh status   # is it running and available?
#   scripts/fdb_local.sh stop     # stop it (the data stays until the directory is removed)
#
#   export FDB_CLUSTER_FILE=$(scripts/fdb_local.sh start)
#
# Environment: FDB_LOCAL_DIR (default: ${TMPDIR:-/tmp}/fusefs-fdb-$USER) holds data/, log/, fdb.cluster and
# fdbserver.pid; FDB_LOCAL_PORT (default 4690) is the port.  Messages go to stderr, the cluster file path
# to stdout.  Exit status: 0 ok, 1 failure, 2 FoundationDB is not installed.
set -euo pipefail

FDB_LOCAL_DIR=${FDB_LOCAL_DIR:-${TMPDIR:-/tmp}/fusefs-fdb-${USER:-$(id -un)}}
FDB_LOCAL_PORT=${FDB_LOCAL_PORT:-4690}
CLUSTER_FILE=$FDB_LOCAL_DIR/fdb.cluster
PID_FILE=$FDB_LOCAL_DIR/fdbserver.pid

say() { printf '%s\n' "$*" >&2; }

# find_tool NAME: the path of a FoundationDB binary (PATH first, then where the .deb packages put it).
find_tool() {
    local name=$1 candidate
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        return 0
    fi
    for candidate in "/usr/sbin/$name" "/usr/bin/$name" "/usr/local/bin/$name" "/usr/local/sbin/$name"; do
        if [ -x "$candidate" ]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

not_installed() {
    cat >&2 <<'EOT'
FoundationDB is not installed: fdbserver and fdbcli were not found (PATH, /usr/sbin, /usr/bin).

FoundationDB is not packaged by Debian or PyPI. Install the two .deb packages from FoundationDB's
GitHub releases (https://github.com/apple/foundationdb/releases), one version for both, at least the
version of the foundationdb Python package (pip show foundationdb; 8.0.0 needs an 8.0.x libfdb_c):

  sudo dpkg -i foundationdb-clients_<version>-1_amd64.deb   # fdbcli, libfdb_c.so (needed by the bindings)
  sudo dpkg -i foundationdb-server_<version>-1_amd64.deb    # fdbserver (also starts a system service)

then run this script again. The clients package alone is enough to use a cluster that runs elsewhere.
EOT
    exit 2
}

running_pid() {
    local pid
    [ -f "$PID_FILE" ] || return 1
    pid=$(cat "$PID_FILE")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    printf '%s\n' "$pid"
}

# available: true when fdbcli reports the database available within a few seconds.
available() {
    "$FDBCLI" -C "$CLUSTER_FILE" --timeout 5 --exec 'status minimal' 2>/dev/null |
        grep -q 'The database is available'
}

start() {
    local pid i output
    mkdir -p "$FDB_LOCAL_DIR/data" "$FDB_LOCAL_DIR/log"
    if pid=$(running_pid); then
        say "fdbserver already running (pid $pid) on 127.0.0.1:$FDB_LOCAL_PORT"
    else
        if [ ! -f "$CLUSTER_FILE" ]; then
            # description:ID@coordinators; the ID makes this cluster distinct from any other one.
            printf 'fusefs_local:%s@127.0.0.1:%s\n' "$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')" \
                "$FDB_LOCAL_PORT" >"$CLUSTER_FILE"
        fi
        nohup "$FDBSERVER" -p "127.0.0.1:$FDB_LOCAL_PORT" -C "$CLUSTER_FILE" \
            -d "$FDB_LOCAL_DIR/data" -L "$FDB_LOCAL_DIR/log" \
            >"$FDB_LOCAL_DIR/log/fdbserver.out" 2>&1 </dev/null &
        pid=$!
        printf '%s\n' "$pid" >"$PID_FILE"
        sleep 1
        if ! kill -0 "$pid" 2>/dev/null; then
            say "fdbserver exited at once; its output ($FDB_LOCAL_DIR/log/fdbserver.out):"
            cat "$FDB_LOCAL_DIR/log/fdbserver.out" >&2
            rm -f "$PID_FILE"
            exit 1
        fi
        say "fdbserver started (pid $pid) on 127.0.0.1:$FDB_LOCAL_PORT, data in $FDB_LOCAL_DIR"
    fi

    if ! available; then
        # A new data directory needs its database created; on an existing one this says it exists.
        output=$("$FDBCLI" -C "$CLUSTER_FILE" --timeout 20 --exec 'configure new single ssd' 2>&1 || true)
        case $output in
            *"Database created"* | *"already exists"*) ;;
            *) say "fdbcli configure: $output" ;;
        esac
    fi
    for i in $(seq 1 30); do
        if available; then
            say "the database is available (after ${i} check(s))"
            printf '%s\n' "$CLUSTER_FILE"
            return 0
        fi
        sleep 1
    done
    say "the database did not become available within 30 s; see $FDB_LOCAL_DIR/log"
    exit 1
}

stop() {
    local pid i
    if ! pid=$(running_pid); then
        say "fdbserver is not running (no live pid in $PID_FILE)"
        rm -f "$PID_FILE"
        return 0
    fi
    kill "$pid"
    for i in $(seq 1 50); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            say "fdbserver (pid $pid) stopped after $((i / 10)).$((i % 10)) s"
            return 0
        fi
        sleep 0.1
    done
    say "fdbserver (pid $pid) did not stop within 5 s: sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$PID_FILE"
}

status() {
    local pid
    if ! pid=$(running_pid); then
        say "fdbserver is not running"
        exit 1
    fi
    if available; then
        say "fdbserver running (pid $pid) on 127.0.0.1:$FDB_LOCAL_PORT; the database is available"
        printf '%s\n' "$CLUSTER_FILE"
    else
        say "fdbserver running (pid $pid) but the database is not available"
        exit 1
    fi
}

usage() {
    say "usage: $0 start|stop|status"
    exit 1
}

[ $# -eq 1 ] || usage
case $1 in
    start | stop | status) ;;
    *) usage ;;
esac
FDBSERVER=$(find_tool fdbserver) || not_installed
FDBCLI=$(find_tool fdbcli) || not_installed
"$1"
