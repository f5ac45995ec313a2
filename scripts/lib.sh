# Shared by the demo and test scripts: install what is missing, run a private PostgreSQL.
# Source it; it defines functions only.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_ROOT="$REPO_ROOT/.data"

log() { if [ -t 2 ]; then printf '\033[1m==> %s\033[0m\n' "$*" >&2; else printf '==> %s\n' "$*" >&2; fi; }

# Install the Debian packages the build and the tests need, only when something is missing.
ensure_packages() {
    local missing=()
    pkg-config --exists libpq 2>/dev/null || missing+=(libpq-dev)
    pkg-config --exists libcrypto 2>/dev/null || missing+=(libssl-dev)
    pkg-config --exists libcurl 2>/dev/null || missing+=(libcurl4-openssl-dev)
    [ -n "$(pg_bindir 2>/dev/null)" ] || missing+=(postgresql postgresql-client)
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# The server binaries (initdb, pg_ctl) of the newest installed PostgreSQL.
pg_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -x "$d/initdb" ] && echo "$d"
}

# Run a command as the server's user when we are root (initdb refuses root).
as_pg_user() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# pg_start NAME PORT [fast]: a private cluster under .data/NAME, listening on 127.0.0.1:PORT and a
# unix socket in .data/NAME/socket; prints nothing; sets DATABASE_URL. "fast" turns off durability
# (tests only). Idempotent: a running cluster is reused.
pg_start() {
    local name=$1 port=$2 mode=${3:-}
    local dir="$DATA_ROOT/$name" bindir
    bindir=$(pg_bindir) || { echo "PostgreSQL server binaries not found" >&2; return 69; }
    mkdir -p "$DATA_ROOT"
    chmod 755 "$DATA_ROOT"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        mkdir -p "$dir/data" "$dir/socket"
        [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir"
        chmod 700 "$dir/data"
        as_pg_user "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; return 1; }
    fi
    local opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir/socket -c max_connections=200"
    [ "$mode" = fast ] && opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    # A cluster left running by an earlier run is reused only when it answers on this port.
    if as_pg_user "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 \
        && ! "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" >/dev/null 2>&1; then
        as_pg_user "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if ! as_pg_user "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        as_pg_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "$opts" -w -t 60 start >/dev/null \
            || { tail -20 "$dir/server.log" >&2; return 1; }
    fi
    export DATABASE_URL="postgresql://postgres@127.0.0.1:$port/postgres"
    export PG_BINDIR="$bindir" PG_DATA_DIR="$dir/data"
}

pg_stop() {
    local name=$1 dir="$DATA_ROOT/$1" bindir
    bindir=$(pg_bindir) || return 0
    [ -f "$dir/data/PG_VERSION" ] || return 0
    as_pg_user "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# The Swift toolchain: on PATH, or where this machine kind installs it.
ensure_swift() {
    if ! command -v swift >/dev/null 2>&1; then
        [ -x /opt/swift/usr/bin/swift ] && export PATH="$PATH:/opt/swift/usr/bin"
    fi
    command -v swift >/dev/null 2>&1 || { echo "swift not found (expected on PATH or in /opt/swift/usr/bin)" >&2; return 69; }
}
