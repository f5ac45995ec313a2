#!/usr/bin/env bash
# The demo, end to end on this machine: installs what is missing, builds, starts a private
# PostgreSQL (.data/demo) and the Atlas simulator injecting ~10 % 500s, migrates, enqueues
# jobs/example-large.jsonl, runs the worker until the batch is done, prints the status, and shows
# that `reveal` prints a secret the simulator really issued. Everything it starts, it stops.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
started=$(date +%s)
ensure_swift
ensure_packages

build_release
DEMO="$DATA_ROOT/demo"
mkdir -p "$DEMO"
fresh_database demo "${DEMO_PG_PORT:-25432}" atlas_secrets_demo
trap 'sim_stop; pg_stop demo' EXIT

log "starting atlas-sim with ~10 % of creates answered 500 (half of them after creating the secret)"
sim_start "$DEMO" --seed-from jobs/example-large.jsonl --fail-rate 0.1 --fail-mode mixed

log "atlas-secrets migrate"
"$cli" migrate
log "atlas-secrets enqueue jobs/example-large.jsonl --batch demo"
"$cli" enqueue jobs/example-large.jsonl --batch demo
log "atlas-secrets enqueue jobs/example-large.jsonl --batch demo   (again: idempotent, adds nothing)"
"$cli" enqueue jobs/example-large.jsonl --batch demo

log "atlas-secrets worker --drain --progress --concurrency 16   (log level: error)"
worker_started=$(date +%s.%N)
ATLAS_SECRETS_LOG_LEVEL=error "$cli" worker --drain --progress --concurrency 16
worker_seconds=$(python3 -c "import time; print(f'{time.time() - $worker_started:.2f}')")

log "atlas-secrets status --batch demo"
"$cli" status --batch demo

log "what the injected 500s did, checked against the simulator"
recorded=$(psql -qAtX "$DATABASE_URL" -c "SELECT count(*) FROM secret_jobs, jsonb_array_elements(revoked_secrets) r WHERE r->>'action' = 'revoked'")
psql -qAtX "$DATABASE_URL" -c "SELECT client_id || ' ' || coalesce(secret_id, '-') FROM secret_jobs" >"$DEMO/jobs.txt"
python3 - "$SIM" "$recorded" "$DEMO/jobs.txt" <<'PY'
import json, sys, urllib.request
state = json.load(urllib.request.urlopen(sys.argv[1] + "/_sim/state"))
jobs = [line.split() for line in open(sys.argv[3]) if line.strip()]
clients, delivered = {c for c, _ in jobs}, {s for _, s in jobs}
secrets = [s for a in state["accounts"] if a["clientId"] in clients for s in a["secrets"]]
live = {s["id"] for s in secrets if not s.get("revokedAt")}
lost = [s for s in secrets if s.get("createdAfterFailure")]
print(f"  creates answered 500 by the simulator:          {state['counters']['faultsInjected']}")
print(f"  of them after it had created the secret:        {len(lost)}")
print(f"  those secrets revoked by the worker:            {sum(1 for s in lost if s.get('revokedAt'))}  (recorded on their jobs: {sys.argv[2]})")
print(f"  live secrets on the jobs' service accounts:      {len(live)} for {len(jobs)} jobs; each job's own: {'yes' if live == delivered else 'NO'}")
sys.exit(0 if live == delivered else 1)
PY

job=$("$cli" list --state succeeded --batch demo --limit 100000 --json | python3 -c '
import json, sys
jobs = json.load(sys.stdin)
print(next((j["id"] for j in jobs if j["revokedSecrets"]), jobs[0]["id"]))')
log "atlas-secrets show $job   (a job whose lost secret was revoked, when there is one)"
"$cli" show "$job"
log "atlas-secrets reveal $job  (compared with what the simulator issued)"
revealed=$("$cli" reveal "$job")
secret_id=$("$cli" show "$job" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["secretId"])')
issued=$(python3 -c '
import json, sys, urllib.request
state = json.load(urllib.request.urlopen(sys.argv[2] + "/_sim/state"))
for account in state["accounts"]:
    for s in account["secrets"]:
        if s["id"] == sys.argv[1]:
            print(s["secret"])
' "$secret_id" "$SIM")
if [ -n "$issued" ] && [ "$revealed" = "$issued" ]; then
    echo "reveal of job $job matches secret $secret_id issued by the simulator (${#revealed} characters, shown masked: ${revealed:0:10}…${revealed: -4})"
else
    echo "reveal of job $job does NOT match the simulator's secret $secret_id" >&2
    exit 1
fi
total=$("$cli" status --batch demo --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["counts"]["succeeded"])')
rate=$(python3 -c "print(f'{$total / $worker_seconds:.1f}')")
log "demo done in $(( $(date +%s) - started )) s; the worker process took $worker_seconds s from start to exit for $total jobs ($rate jobs/s over the whole run, retry backoff included)"
