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

log "building (release)"
swift build -c release --product atlas-secrets >/dev/null
swift build -c release --product atlas-sim >/dev/null
BIN="$(swift build -c release --show-bin-path)"
cli="$BIN/atlas-secrets"

DEMO="$DATA_ROOT/demo"
mkdir -p "$DEMO"
log "starting PostgreSQL (.data/demo, port ${DEMO_PG_PORT:-25432})"
pg_start demo "${DEMO_PG_PORT:-25432}"
psql -q "$DATABASE_URL" -c 'DROP DATABASE IF EXISTS atlas_secrets_demo' -c 'CREATE DATABASE atlas_secrets_demo'
export DATABASE_URL="${DATABASE_URL%/*}/atlas_secrets_demo"

sim_pid=""
cleanup() {
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
    pg_stop demo
}
trap cleanup EXIT

log "starting atlas-sim with ~10 % of creates answered 500 (half of them after creating the secret)"
rm -f "$DEMO/sim.port" "$DEMO/credentials.json"
"$BIN/atlas-sim" --seed-from jobs/example-large.jsonl --credentials-out "$DEMO/credentials.json" \
    --fail-rate 0.1 --fail-mode mixed --port-file "$DEMO/sim.port" >"$DEMO/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 1 100); do [ -s "$DEMO/sim.port" ] && break; sleep 0.1; done
[ -s "$DEMO/sim.port" ] || { cat "$DEMO/sim.log" >&2; exit 69; }
SIM="http://127.0.0.1:$(cat "$DEMO/sim.port")"

export MONGODB_ATLAS_BASE_URL="$SIM"
export ATLAS_SECRETS_CREDENTIALS_FILE="$DEMO/credentials.json"
export ATLAS_SECRETS_KEY_FILE="$DEMO/secrets.key"
[ -f "$ATLAS_SECRETS_KEY_FILE" ] || "$cli" keygen "$ATLAS_SECRETS_KEY_FILE"

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
