#!/usr/bin/env bash
# Throughput benchmark: how many jobs per second one worker process completes against an instant
# simulator (no faults, no latency, no rate limits), so the figure is the worker's own ceiling:
# claim, snapshot GET, create POST, AES-GCM, fenced result write, attempt history.
#   scripts/bench-throughput.sh [JOBS=10000] [CONCURRENCY=16 32 64 …]
# Uses a private, durable PostgreSQL (.data/bench-tp, port 25434) and a release build.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
jobs=${1:-10000}
shift || true
concurrencies=("${@:-16 32 64}")
ensure_swift
ensure_packages
swift build -c release >/dev/null
BIN="$(swift build -c release --show-bin-path)"
dir="$DATA_ROOT/bench-tp"
mkdir -p "$dir"
pg_start bench-tp "${BENCH_PG_PORT:-25434}"
sim_pid=""
trap '[ -n "$sim_pid" ] && kill $sim_pid 2>/dev/null; pg_stop bench-tp' EXIT
orgs=100
per_org=$(( (jobs + orgs - 1) / orgs ))
python3 - "$jobs" "$orgs" "$per_org" >"$dir/jobs.jsonl" <<'PY'
import sys
jobs, orgs, per = map(int, sys.argv[1:])
for i in range(jobs):
    o, a = i % orgs, i // orgs
    print(f'{{"orgId": "000000005151{o:012x}", "clientId": "mdb_sa_id_{o:012x}{a:012x}", "secretExpiresAfterHours": 24}}')
PY
[ -f "$dir/key" ] || "$BIN/atlas-secrets" keygen "$dir/key" >/dev/null
printf '%-12s %8s %10s %10s\n' concurrency jobs seconds jobs/s
for c in ${concurrencies[@]}; do
    psql -q "$DATABASE_URL" -c 'DROP DATABASE IF EXISTS bench' -c 'CREATE DATABASE bench'
    rm -f "$dir/port"
    "$BIN/atlas-sim" --seed-orgs $orgs --accounts-per-org "$per_org" --credentials-out "$dir/creds.json" \
        --port-file "$dir/port" >"$dir/sim.log" 2>&1 &
    sim_pid=$!
    for _ in $(seq 1 100); do [ -s "$dir/port" ] && break; sleep 0.1; done
    export DATABASE_URL="${DATABASE_URL%/*}/bench" MONGODB_ATLAS_BASE_URL="http://127.0.0.1:$(cat "$dir/port")"
    export ATLAS_SECRETS_CREDENTIALS_FILE="$dir/creds.json" ATLAS_SECRETS_KEY_FILE="$dir/key"
    "$BIN/atlas-secrets" migrate >/dev/null
    "$BIN/atlas-secrets" enqueue "$dir/jobs.jsonl" --batch bench >/dev/null
    start=$(date +%s.%N)
    ATLAS_SECRETS_LOG_LEVEL=warning "$BIN/atlas-secrets" worker --drain --concurrency "$c" 2>"$dir/worker-$c.log"
    end=$(date +%s.%N)
    done_jobs=$("$BIN/atlas-secrets" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["counts"]["succeeded"])')
    python3 -c "s=$end-$start; print(f'{$c:<12} {$done_jobs:>8} {s:>10.2f} {$done_jobs/s:>10.0f}')"
    kill $sim_pid; wait $sim_pid 2>/dev/null || true; sim_pid=""
    export DATABASE_URL="${DATABASE_URL%/*}/postgres"
done
