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

# Where the clusters live: .data/ in the repository, unless the server's user cannot reach it
# (a clone under /root, mode 700): then a folder of the repository's own under /var/tmp.
pg_root() {
    mkdir -p "$DATA_ROOT"
    chmod 755 "$DATA_ROOT"
    if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$DATA_ROOT" 2>/dev/null; then
        local alt="/var/tmp/atlas-secrets-pg/$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12)"
        mkdir -p "$alt"
        chmod 755 /var/tmp/atlas-secrets-pg "$alt"
        echo "$alt"
    else
        echo "$DATA_ROOT"
    fi
}

# pg_start NAME PORT [fast]: a private cluster in NAME under pg_root (.data/NAME), listening on
# 127.0.0.1:PORT and a unix socket in NAME/socket; prints nothing; sets DATABASE_URL. "fast" turns
# off durability (tests only). Idempotent: a running cluster is reused.
pg_start() {
    local name=$1 port=$2 mode=${3:-}
    local dir bindir
    dir="$(pg_root)/$name"
    bindir=$(pg_bindir) || { echo "PostgreSQL server binaries not found" >&2; return 69; }
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        mkdir -p "$dir/data" "$dir/socket"
        [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir"
        chmod 700 "$dir/data"
        as_pg_user "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; return 1; }
    fi
    local opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir/socket -c max_connections=200"
    [ "$mode" = fast ] && opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    # More server settings for one run (a benchmark's statistics), e.g. "-c track_functions=pl".
    opts="$opts ${PG_EXTRA_OPTS:-}"
    # A cluster left running by an earlier run is reused only when it answers on this port.
    if as_pg_user "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 \
        && ! "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" >/dev/null 2>&1; then
        as_pg_user "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if ! as_pg_user "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" >/dev/null 2>&1; then
            echo "port $port is taken by another PostgreSQL; choose another with DEV_PG_PORT (dev-db.sh), DEMO_PG_PORT (demo.sh) or TEST_PG_PORT (test.sh)" >&2
            return 69
        fi
        as_pg_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "$opts" -w -t 60 start >/dev/null \
            || { tail -20 "$dir/server.log" >&2; return 1; }
    fi
    export DATABASE_URL="postgresql://postgres@127.0.0.1:$port/postgres"
    export PG_BINDIR="$bindir" PG_DATA_DIR="$dir/data"
}

pg_stop() {
    local name=$1 dir bindir
    dir="$(pg_root)/$name"
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

# build_release: release builds of both executables; sets BIN (their folder) and cli.
build_release() {
    log "building (release)"
    swift build -c release --product atlas-secrets >/dev/null
    swift build -c release --product atlas-sim >/dev/null
    BIN="$(swift build -c release --show-bin-path)"
    cli="$BIN/atlas-secrets"
}

# fresh_database CLUSTER PORT DBNAME [fast]: a private cluster (pg_start) with DBNAME dropped and
# created anew; exports DATABASE_URL pointing at it.
fresh_database() {
    local cluster=$1 port=$2 db=$3 mode=${4:-}
    log "starting PostgreSQL (.data/$cluster, port $port)"
    pg_start "$cluster" "$port" $mode
    PGOPTIONS="-c client_min_messages=warning" psql -qX "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    export DATABASE_URL="${DATABASE_URL%/*}/$db"
}

# sim_start RUNDIR [atlas-sim flags…]: starts atlas-sim in the background (log RUNDIR/sim.log),
# waits until it listens, sets SIM_PID and SIM (its base URL), and exports what the CLI needs:
# MONGODB_ATLAS_BASE_URL, ATLAS_SECRETS_CREDENTIALS_FILE (written by the simulator) and
# ATLAS_SECRETS_KEY_FILE (a new key in RUNDIR). Stop it with sim_stop.
sim_start() {
    local run=$1
    shift
    rm -f "$run/sim.port"
    "$BIN/atlas-sim" --credentials-out "$run/credentials.json" --port-file "$run/sim.port" "$@" >"$run/sim.log" 2>&1 &
    SIM_PID=$!
    for _ in $(seq 1 300); do [ -s "$run/sim.port" ] && break; sleep 0.1; done
    [ -s "$run/sim.port" ] || { cat "$run/sim.log" >&2; return 69; }
    SIM="http://127.0.0.1:$(cat "$run/sim.port")"
    export MONGODB_ATLAS_BASE_URL="$SIM"
    export ATLAS_SECRETS_CREDENTIALS_FILE="$run/credentials.json"
    export ATLAS_SECRETS_KEY_FILE="$run/secrets.key"
    [ -f "$ATLAS_SECRETS_KEY_FILE" ] || "$cli" keygen "$ATLAS_SECRETS_KEY_FILE" >/dev/null
}

sim_stop() {
    if [ -n "${SIM_PID:-}" ]; then
        kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
        SIM_PID=""
    fi
    return 0
}
