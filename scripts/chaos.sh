#!/usr/bin/env bash
# Chaos run for issue 3 ("no lost job, no duplicate secret"): builds (release), starts a private
# PostgreSQL (.data/chaos) and atlas-sim with faults on (a share of creates answered 500, half of
# them after creating the secret, plus latency), enqueues CHAOS_JOBS jobs (one per service
# account), runs 3 workers, SIGKILLs a random worker every few seconds and restarts it, restarts
# PostgreSQL once, and when every job is terminal checks from the database and /_sim/state:
# 0 lost, 0 stuck, 0 duplicate live secrets, 0 live secrets no job owns. Prints the figures; exits
# 1 on any violation. Everything it starts, it stops.
#
# Settings (environment): CHAOS_JOBS (3000), CHAOS_WORKERS (3), CHAOS_CONCURRENCY (8 per worker),
# CHAOS_LEASE (5 s), CHAOS_FAIL_RATE (0.1), CHAOS_LATENCY_MS (20), CHAOS_KILL_EVERY (4 s, jittered),
# CHAOS_TIMEOUT (600 s), CHAOS_PG_PORT (25441), CHAOS_SEED (random), CHAOS_WORKER_ARGS (extra
# worker flags; e.g. "--orphan-secrets keep" must make the check fail: a self-test of the checker).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
JOBS=${CHAOS_JOBS:-3000}
WORKERS=${CHAOS_WORKERS:-3}
CONCURRENCY=${CHAOS_CONCURRENCY:-8}
LEASE=${CHAOS_LEASE:-5}
FAIL_RATE=${CHAOS_FAIL_RATE:-0.1}
LATENCY=${CHAOS_LATENCY_MS:-20}
KILL_EVERY=${CHAOS_KILL_EVERY:-4}
TIMEOUT=${CHAOS_TIMEOUT:-600}
SEED=${CHAOS_SEED:-$RANDOM$RANDOM}
RANDOM=$SEED
started=$(date +%s)
ensure_swift
ensure_packages

build_release

RUN="$DATA_ROOT/chaos-run"
rm -rf "$RUN"
mkdir -p "$RUN"
fresh_database chaos "${CHAOS_PG_PORT:-25441}" atlas_secrets_chaos

declare -a worker_pids=()
cleanup() {
    for p in "${worker_pids[@]}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
    sim_stop
    pg_stop chaos
}
trap cleanup EXIT

orgs=10
per_org=$(( (JOBS + orgs - 1) / orgs ))
[ "$per_org" -le 200 ] || { orgs=$(( (JOBS + 199) / 200 )); per_org=$(( (JOBS + orgs - 1) / orgs )); }
log "starting atlas-sim: $orgs orgs x $per_org accounts, fail-rate $FAIL_RATE (mixed before/after), latency $LATENCY ms, seed $SEED"
sim_start "$RUN" --seed-orgs "$orgs" --accounts-per-org "$per_org" \
    --fail-rate "$FAIL_RATE" --fail-mode mixed --latency-ms "$LATENCY" --seed "$SEED"

# One job per service account (the org credential accounts, ...ffffffffffff, excluded).
curl -fsS "$SIM/_sim/state" | python3 -c '
import json, sys
n = int(sys.argv[1])
accounts = [a for a in json.load(sys.stdin)["accounts"] if not a["clientId"].endswith("ffffffffffff")][:n]
for a in accounts:
    print(json.dumps({"orgId": a["orgId"], "clientId": a["clientId"], "secretExpiresAfterHours": 24}))
' "$JOBS" >"$RUN/jobs.jsonl"
"$cli" migrate >/dev/null
"$cli" enqueue "$RUN/jobs.jsonl" --batch chaos >/dev/null
expected=$(wc -l <"$RUN/jobs.jsonl")
log "enqueued $expected jobs; starting $WORKERS workers (concurrency $CONCURRENCY, lease $LEASE s)"

starts=0
start_worker() {
    local i=$1
    starts=$((starts + 1))
    # shellcheck disable=SC2086
    "$cli" worker --concurrency "$CONCURRENCY" --lease "$LEASE" --log-format json ${CHAOS_WORKER_ARGS:-} \
        >>"$RUN/worker-$i.out" 2>>"$RUN/worker-$i.log" &
    worker_pids[$i]=$!
}
for i in $(seq 0 $((WORKERS - 1))); do start_worker "$i"; done

open_jobs() { psql -qXtA "$DATABASE_URL" -c "SELECT count(*) FROM secret_jobs WHERE state IN ('queued', 'running')" 2>/dev/null || echo "?"; }

kills=0 unexpected_exits=0 pg_restarted=0 pg_restart_at=""
next_kill=$(( $(date +%s) + KILL_EVERY ))
deadline=$(( $(date +%s) + TIMEOUT ))
run_started=$(date +%s)
while true; do
    sleep 0.5
    now=$(date +%s)
    left=$(open_jobs)
    [ "$left" = 0 ] && break
    if [ "$now" -ge "$deadline" ]; then log "timeout with $left jobs open"; break; fi
    # Workers that exited on their own (e.g. PostgreSQL down at their start) are restarted too.
    for i in "${!worker_pids[@]}"; do
        p=${worker_pids[$i]}
        if ! kill -0 "$p" 2>/dev/null; then
            wait "$p" 2>/dev/null && rc=0 || rc=$?
            unexpected_exits=$((unexpected_exits + 1))
            log "worker $i (pid $p) exited by itself with status $rc; restarting it"
            start_worker "$i"
        fi
    done
    # Restart PostgreSQL once, when about a third of the jobs are done.
    if [ "$pg_restarted" = 0 ] && [ "$left" != "?" ] && [ "$left" -le $((expected * 2 / 3)) ]; then
        log "restarting PostgreSQL ($left jobs open)"
        pg_restart_at=$now
        as_pg_user "$PG_BINDIR/pg_ctl" -D "$PG_DATA_DIR" -m fast -w -t 60 restart >>"$RUN/pg-restart.log" 2>&1
        pg_restarted=1
    fi
    if [ "$now" -ge "$next_kill" ]; then
        i=$((RANDOM % WORKERS))
        p=${worker_pids[$i]}
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
        kills=$((kills + 1))
        log "SIGKILL worker $i (pid $p), $left jobs open"
        sleep "0.$((RANDOM % 10))"
        start_worker "$i"
        next_kill=$(( now + KILL_EVERY / 2 + RANDOM % (KILL_EVERY + 1) ))
    fi
done
run_seconds=$(( $(date +%s) - run_started ))

log "stopping the workers (SIGTERM)"
for p in "${worker_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${worker_pids[@]}"; do wait "$p" 2>/dev/null || true; done
worker_pids=()

log "checking the invariants"
set +e
python3 "$(dirname "$0")/chaos.py" "$DATABASE_URL" "$SIM" "$expected" "$RUN/credentials.json" "$cli" reveal | tee "$RUN/figures.txt"
status=${PIPESTATUS[0]}
set -e
superseded=$(cat "$RUN"/worker-*.log | grep -c '"attempt.superseded"' || true)
rescued=$(cat "$RUN"/worker-*.log | grep '"jobs.rescued"' | sed 's/.*"count":"\([0-9]*\)".*/\1/' | paste -sd+ - | bc 2>/dev/null || echo 0)
db_errors=$(cat "$RUN"/worker-*.log | grep -c '"db\.' || true)
cat <<EOF | tee -a "$RUN/figures.txt"
seed: $SEED
worker_starts: $starts
sigkills: $kills
unexpected_worker_exits: $unexpected_exits
postgres_restarts: $pg_restarted
jobs_rescued_from_expired_leases: ${rescued:-0}
superseded_attempts_logged: $superseded
database_error_log_lines: $db_errors
run_seconds: $run_seconds
total_seconds: $(( $(date +%s) - started ))
logs: $RUN
EOF
if [ "$status" = 0 ]; then log "chaos: all invariants hold"; else log "chaos: INVARIANTS VIOLATED"; fi
exit "$status"
