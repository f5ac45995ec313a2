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

log "atlas-secrets worker --drain --progress (concurrency 16)"
worker_started=$(date +%s.%N)
ATLAS_SECRETS_LOG_LEVEL=warning "$cli" worker --drain --progress --concurrency 16
worker_seconds=$(python3 -c "import time; print(f'{time.time() - $worker_started:.2f}')")

log "atlas-secrets status --batch demo"
"$cli" status --batch demo

job=$("$cli" list --state succeeded --batch demo --limit 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
log "atlas-secrets show $job"
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
log "demo done in $(( $(date +%s) - started )) s; the worker finished $total jobs in $worker_seconds s ($rate jobs/s, including retry backoff)"
