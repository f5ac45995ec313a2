#!/usr/bin/env python3
"""Invariant check for scripts/chaos.sh (standard library only; reads the database with psql).

Usage: chaos.py DATABASE_URL SIM_BASE_URL EXPECTED_JOBS CREDENTIALS_FILE [REVEAL_CMD...]

Checks, after the workers stopped:
  lost       jobs enqueued but missing, or not in a terminal state (queued or running)   = 0
  stuck      jobs still `running` (a lease nobody renews or rescues)                    = 0
  duplicate  per job account: live secrets other than the job's own secret_id           = 0
  unowned    live secrets that no job owns, in any account except the org credential
             accounts named in CREDENTIALS_FILE (they hold the workers' OAuth secrets)   = 0
  missing    succeeded jobs whose secret_id is not live at the simulator                 = 0
Prints the figures as `name: value` lines and exits 1 on any violation.
"""
import csv
import io
import json
import subprocess
import sys
import urllib.request
from collections import Counter


def psql(url, sql):
    out = subprocess.run(["psql", url, "-X", "-q", "--csv", "-c", sql], check=True, capture_output=True, text=True).stdout
    return list(csv.DictReader(io.StringIO(out)))


def main():
    db, sim, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    credentials = json.load(open(sys.argv[4]))["orgs"]
    credential_accounts = {c.get("clientId") for c in credentials.values()}
    reveal = sys.argv[5:]
    jobs = psql(db, "SELECT id, state, attempts, client_id, secret_id, jsonb_array_length(revoked_secrets) AS revoked,"
                    " last_error_code FROM secret_jobs")
    history = psql(db, "SELECT outcome, count(*) AS n FROM secret_job_attempts GROUP BY outcome ORDER BY outcome")
    state = json.load(urllib.request.urlopen(sim.rstrip("/") + "/_sim/state"))

    job_accounts = {j["client_id"] for j in jobs}
    accounts = {a["clientId"]: a for a in state["accounts"]}
    owned = {j["secret_id"] for j in jobs if j["secret_id"]}
    states = Counter(j["state"] for j in jobs)

    lost = max(0, expected - len(jobs)) + states["queued"] + states["running"]
    stuck = states["running"]
    duplicate = missing = 0
    examples = []
    for j in jobs:
        secrets = accounts.get(j["client_id"], {}).get("secrets", [])
        live = [s["id"] for s in secrets if s.get("revokedAt") is None]
        if j["state"] == "succeeded":
            if j["secret_id"] not in live:
                missing += 1
                examples.append(f"job {j['id']}: its secret {j['secret_id']} is not live ({live})")
            extra = [s for s in live if s != j["secret_id"]]
            if extra:
                duplicate += len(extra)
                examples.append(f"job {j['id']}: live {live}, job has {j['secret_id']}")
    unowned = 0
    revoked_orphans = 0
    for client, account in accounts.items():
        if client in credential_accounts:
            continue
        for s in account.get("secrets", []):
            if s["id"] in owned:
                continue
            if s.get("revokedAt") is None:
                unowned += 1
            else:
                revoked_orphans += 1
    revealed_ok = revealed_bad = 0
    if reveal:
        plain = {s["id"]: s.get("secret") for a in state["accounts"] for s in a["secrets"]}
        for j in [j for j in jobs if j["state"] == "succeeded"][:25]:
            got = subprocess.run(reveal + [j["id"]], capture_output=True, text=True).stdout.strip()
            if got and got == plain.get(j["secret_id"]):
                revealed_ok += 1
            else:
                revealed_bad += 1
                examples.append(f"job {j['id']}: reveal does not match the simulator's secret {j['secret_id']}")

    c = state["counters"]
    figures = [
        ("jobs", len(jobs)), ("expected", expected),
        ("succeeded", states["succeeded"]), ("failed", states["failed"]), ("cancelled", states["cancelled"]),
        ("lost", lost), ("stuck", stuck), ("duplicate_live_secrets", duplicate), ("unowned_live_secrets", unowned),
        ("missing_secrets", missing), ("reveal_checked", revealed_ok), ("reveal_mismatch", revealed_bad),
        ("orphans_revoked", revoked_orphans),
        ("jobs_with_revocations", sum(1 for j in jobs if j["revoked"] not in ("", "0"))),
        ("attempts_histogram", dict(sorted(Counter(int(j["attempts"]) for j in jobs).items()))),
        ("attempt_outcomes", {h["outcome"]: int(h["n"]) for h in history}),
        ("failed_codes", dict(Counter(j["last_error_code"] for j in jobs if j["state"] == "failed"))),
        ("sim_create_calls", c["createSecret"]), ("sim_secrets_created", c["secretsCreated"]),
        ("sim_secrets_revoked", c["secretsRevoked"]), ("sim_faults_injected", c["faultsInjected"]),
        ("sim_tokens_minted", sum(c["tokensMinted"].values())), ("sim_tokens_revoked", c["tokensRevoked"]),
    ]
    for name, value in figures:
        print(f"{name}: {value}")
    for e in examples[:20]:
        print("  " + e, file=sys.stderr)
    violations = lost + stuck + duplicate + unowned + missing + revealed_bad + (0 if len(jobs) == expected else 1)
    print(f"violations: {violations}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
