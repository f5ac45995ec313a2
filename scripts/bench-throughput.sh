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
build_release
dir="$DATA_ROOT/bench-tp"
mkdir -p "$dir"
pg_start bench-tp "${BENCH_PG_PORT:-25434}"
trap 'sim_stop; pg_stop bench-tp' EXIT
orgs=100
per_org=$(( (jobs + orgs - 1) / orgs ))
python3 - "$jobs" "$orgs" "$per_org" >"$dir/jobs.jsonl" <<'PY'
import sys
jobs, orgs, per = map(int, sys.argv[1:])
for i in range(jobs):
    o, a = i % orgs, i // orgs
    print(f'{{"orgId": "000000005151{o:012x}", "clientId": "mdb_sa_id_{o:012x}{a:012x}", "secretExpiresAfterHours": 24}}')
PY
printf '%-12s %8s %10s %10s\n' concurrency jobs seconds jobs/s
for c in ${concurrencies[@]}; do
    PGOPTIONS="-c client_min_messages=warning" psql -qX "$DATABASE_URL" -c 'DROP DATABASE IF EXISTS bench' -c 'CREATE DATABASE bench'
    sim_start "$dir" --seed-orgs $orgs --accounts-per-org "$per_org"
    export DATABASE_URL="${DATABASE_URL%/*}/bench"
    "$BIN/atlas-secrets" migrate >/dev/null
    "$BIN/atlas-secrets" enqueue "$dir/jobs.jsonl" --batch bench >/dev/null
    start=$(date +%s.%N)
    ATLAS_SECRETS_LOG_LEVEL=warning "$BIN/atlas-secrets" worker --drain --concurrency "$c" >/dev/null 2>"$dir/worker-$c.log"
    end=$(date +%s.%N)
    done_jobs=$("$BIN/atlas-secrets" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["counts"]["succeeded"])')
    python3 -c "s=$end-$start; print(f'{$c:<12} {$done_jobs:>8} {s:>10.2f} {$done_jobs/s:>10.0f}')"
    sim_stop
    export DATABASE_URL="${DATABASE_URL%/*}/postgres"
done
