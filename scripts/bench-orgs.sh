#!/usr/bin/env bash
# Benchmark for issue 4: a batch across many organizations at Atlas's own limits.
#
#   scripts/bench-orgs.sh [--orgs N] [--accounts M] [--capacity C] [--refill R] [--concurrency K]
#                         [--latency-ms L] [--port P]
#
# Defaults: 200 orgs x 5 accounts, one job per account (1,000 jobs); the simulator throttles each
# org with a token bucket of capacity 4 refilled at 1/s (429 with Retry-After); each job costs 2
# API calls (GET the account, POST the secret); `atlas-secrets worker --drain --concurrency 32`.
# Release build; a private PostgreSQL (.data/bench, port 25435, durability off) and atlas-sim,
# both stopped at exit.
#
# Reports (scripts/bench_orgs.py): wall time of the worker against the ideal schedule the buckets
# allow (per org: calls = 2 x jobs, ideal = max over orgs of max(0, (calls - capacity) / refill)),
# requests rejected with 429 (total, max per org), early requests (sent while a Retry-After was in
# force: must be 0), tokens minted per org credential (must be 1), and the job outcomes.
# Target: wall time within 10 % of ideal, at most one 429 per org per throttle window, 0 early.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

orgs=200 accounts=5 capacity=4 refill=1 concurrency=32 latency=0 port=${BENCH_PG_PORT:-25435}
while [ $# -gt 0 ]; do
    case "$1" in
        --orgs) orgs=$2; shift 2 ;;
        --accounts) accounts=$2; shift 2 ;;
        --capacity) capacity=$2; shift 2 ;;
        --refill) refill=$2; shift 2 ;;
        --concurrency) concurrency=$2; shift 2 ;;
        --latency-ms) latency=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 64 ;;
    esac
done

ensure_swift
ensure_packages
build_release

BENCH="$DATA_ROOT/bench-orgs"
rm -rf "$BENCH"
mkdir -p "$BENCH"
# track_functions: the report counts the claims and the time they took.
PG_EXTRA_OPTS="-c track_functions=pl" fresh_database bench "$port" atlas_secrets_bench fast

cleanup() {
    sim_stop
    pg_stop bench
}
trap cleanup EXIT

log "starting atlas-sim: $orgs orgs x $accounts accounts, buckets of $capacity refilled at $refill/s"
sim_start "$BENCH" --seed-orgs "$orgs" --accounts-per-org "$accounts" --latency-ms "$latency"
curl -fsS -X POST "$SIM/_sim/rate-limits" -H 'Content-Type: application/json' \
    -d "{\"perOrg\": {\"capacity\": $capacity, \"refillPerSecond\": $refill}, \"style\": \"429\"}" >/dev/null

"$cli" migrate >/dev/null
python3 scripts/bench_orgs.py requests "$orgs" "$accounts" >"$BENCH/jobs.jsonl"
"$cli" enqueue "$BENCH/jobs.jsonl" --batch bench >/dev/null
# The buckets start full at the first request: make sure none was touched before the run.
log "atlas-secrets worker --drain --concurrency $concurrency  ($(wc -l <"$BENCH/jobs.jsonl") jobs)"
started=$(date +%s.%N)
ATLAS_SECRETS_LOG_LEVEL=warning "$cli" worker --drain --concurrency "$concurrency" --lease 30 2>"$BENCH/worker.log"
finished=$(date +%s.%N)
"$cli" status --batch bench --json >"$BENCH/status.json"
curl -fsS "$SIM/_sim/state" >"$BENCH/state.json"
psql_bench() { psql "$DATABASE_URL" -XAtqc "$1"; }
db_work=$(psql_bench "SELECT format('database: %s claims (%s ms in all, %s ms mean), %s job row updates, %s attempts recorded',
    coalesce(f.calls, 0), round(coalesce(f.total_time, 0)), round(coalesce(f.total_time / nullif(f.calls, 0), 0)::numeric, 2),
    t.n_tup_upd, (SELECT count(*) FROM secret_job_attempts))
    FROM pg_stat_user_tables t LEFT JOIN pg_stat_user_functions f ON f.funcname = 'claim_secret_jobs'
    WHERE t.relname = 'secret_jobs'")
echo "$db_work"
python3 scripts/bench_orgs.py report "$BENCH/state.json" "$BENCH/status.json" \
    --orgs "$orgs" --accounts "$accounts" --capacity "$capacity" --refill "$refill" \
    --seconds "$(python3 -c "print($finished - $started)")" --started "$started" --concurrency "$concurrency"
