#!/usr/bin/env bash
# Soak: one worker (release build) over N jobs (default 100000) against atlas-sim, sampling the
# worker's RSS, thread count and open file descriptors from /proc/PID every SOAK_INTERVAL seconds
# (default 3). Prints every sample, then start / warm (10 % of the jobs done) / end / max, and
# the growth from warm to end. Flat means RSS within a few MB and threads and fds unchanged.
#   scripts/soak.sh [N]          e.g. scripts/soak.sh 20000
# Settings (environment): SOAK_CONCURRENCY (16), SOAK_INTERVAL (3), SOAK_PG_PORT (25442).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
N=${1:-100000}
CONCURRENCY=${SOAK_CONCURRENCY:-16}
INTERVAL=${SOAK_INTERVAL:-3}
ensure_swift
ensure_packages

build_release

RUN="$DATA_ROOT/soak-run"
rm -rf "$RUN"
mkdir -p "$RUN"
fresh_database soak "${SOAK_PG_PORT:-25442}" atlas_secrets_soak fast

worker_pid=""
cleanup() {
    [ -n "$worker_pid" ] && kill -KILL "$worker_pid" 2>/dev/null || true
    sim_stop
    pg_stop soak
}
trap cleanup EXIT

# One job per service account: ceil(N / 200) orgs of up to 200 accounts, deterministic ids.
per_org=200
orgs=$(( (N + per_org - 1) / per_org ))
log "starting atlas-sim ($orgs orgs x $per_org accounts)"
sim_start "$RUN" --seed-orgs "$orgs" --accounts-per-org "$per_org"
python3 -c '
import json, sys
n, per_org = int(sys.argv[1]), int(sys.argv[2])
for g in range(n):
    o, a = divmod(g, per_org)
    print(json.dumps({"orgId": "000000005151%012x" % o, "clientId": "mdb_sa_id_%012x%012x" % (o, a), "secretExpiresAfterHours": 24}))
' "$N" "$per_org" >"$RUN/jobs.jsonl"
"$cli" migrate >/dev/null
"$cli" enqueue "$RUN/jobs.jsonl" --batch soak >/dev/null
log "enqueued $N jobs; one worker, concurrency $CONCURRENCY, sampling every $INTERVAL s"

started=$(date +%s.%N)
"$cli" worker --drain --concurrency "$CONCURRENCY" --log-format json >/dev/null 2>"$RUN/worker.log" &
worker_pid=$!
echo "seconds,done,rss_kb,threads,fds" >"$RUN/samples.csv"
printf '%8s %8s %10s %8s %5s\n' seconds done rss_MB threads fds
while kill -0 "$worker_pid" 2>/dev/null; do
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$worker_pid/status" 2>/dev/null) || break
    threads=$(awk '/^Threads/ {print $2}' "/proc/$worker_pid/status" 2>/dev/null) || break
    fds=$(ls "/proc/$worker_pid/fd" 2>/dev/null | wc -l)
    [ -n "$rss" ] || break
    done_n=$(psql -qXtA "$DATABASE_URL" -c "SELECT coalesce(sum(n), 0) FROM secret_job_counts WHERE state IN ('succeeded', 'failed')")
    t=$(printf '%.0f' "$(echo "$(date +%s.%N) - $started" | bc)")
    echo "$t,$done_n,$rss,$threads,$fds" >>"$RUN/samples.csv"
    printf '%8s %8s %10.1f %8s %5s\n' "$t" "$done_n" "$(echo "$rss / 1024" | bc -l)" "$threads" "$fds"
    sleep "$INTERVAL"
done
wait "$worker_pid" && rc=0 || rc=$?
worker_pid=""
seconds=$(echo "$(date +%s.%N) - $started" | bc)
succeeded=$(psql -qXtA "$DATABASE_URL" -c "SELECT count(*) FROM secret_jobs WHERE state = 'succeeded'")
failed=$(psql -qXtA "$DATABASE_URL" -c "SELECT count(*) FROM secret_jobs WHERE state = 'failed'")

python3 - "$RUN/samples.csv" "$N" <<'EOF'
import csv, sys
rows = [{k: int(v) for k, v in r.items()} for r in csv.DictReader(open(sys.argv[1]))]
n = int(sys.argv[2])
if not rows:
    sys.exit("no samples")
start, end = rows[0], rows[-1]
warm = next((r for r in rows if r["done"] >= n // 10), start)
mb = lambda kb: kb / 1024
print(f"samples: {len(rows)}")
for name, r in (("start", start), ("warm (10% done)", warm), ("end", end)):
    print(f"{name:>16}: rss {mb(r['rss_kb']):7.1f} MB  threads {r['threads']:3d}  fds {r['fds']:3d}  ({r['done']} jobs done, {r['seconds']} s)")
print(f"{'max':>16}: rss {mb(max(r['rss_kb'] for r in rows)):7.1f} MB  threads {max(r['threads'] for r in rows):3d}  fds {max(r['fds'] for r in rows):3d}")
jobs = max(1, end["done"] - warm["done"])
growth = end["rss_kb"] - warm["rss_kb"]
print(f"growth warm -> end: rss {growth / 1024:+.1f} MB over {jobs} jobs ({growth * 1024 / jobs:+.1f} bytes/job), "
      f"threads {end['threads'] - warm['threads']:+d}, fds {end['fds'] - warm['fds']:+d}")
EOF
echo "worker exit status: $rc; succeeded: $succeeded; failed: $failed; $(printf '%.1f' "$seconds") s ($(echo "scale=1; $succeeded / $seconds" | bc) jobs/s)"
echo "samples: $RUN/samples.csv; worker log: $RUN/worker.log"
[ "$rc" = 0 ] && [ "$succeeded" = "$N" ]
