#!/usr/bin/env python3
"""Helper of scripts/bench-orgs.sh (standard library only).

  bench_orgs.py requests ORGS ACCOUNTS        one job per seeded account, JSON Lines on stdout
  bench_orgs.py report STATE STATUS --orgs N --accounts M --capacity C --refill R --seconds S
                                              the figures, from /_sim/state and `status --json`
"""
import argparse
import json
import math
import sys


def org_id(i):
    return "000000005151" + format(i, "012x")


def client_id(i, j):
    return "mdb_sa_id_" + format(i, "012x") + format(j, "012x")


def admin_client_id(i):
    return "mdb_sa_id_" + format(i, "012x") + "ffffffffffff"


def requests(orgs, accounts):
    for i in range(orgs):
        for j in range(accounts):
            print(json.dumps({"orgId": org_id(i), "clientId": client_id(i, j), "secretExpiresAfterHours": 24}))


def report(a):
    state = json.load(open(a.state))
    status = json.load(open(a.status))
    counters = state["counters"]
    calls = 2 * a.accounts  # per org: GET the account, POST the secret, per job
    ideal = max(0.0, (calls - a.capacity) / a.refill) if a.refill > 0 else float("inf")
    # A throttle window is at least one second (Retry-After is whole seconds); one 429 per window.
    windows = math.ceil(max(0.0, (calls - a.capacity) / a.refill)) if a.refill > 0 else 0
    rejected = counters.get("rejected429", {})
    early = counters.get("earlyRequests", {})
    minted = counters.get("tokensMinted", {})
    cred = [minted.get(admin_client_id(i), 0) for i in range(a.orgs)]
    max_rej = max(rejected.values(), default=0)
    over_window = sum(1 for v in rejected.values() if v > windows)
    c = status["counts"]
    lines = [
        f"jobs: {c['succeeded']} succeeded, {c['failed']} failed, {c['queued']} queued, {c['running']} running"
        f" ({a.orgs} orgs x {a.accounts} accounts, concurrency {a.concurrency})",
        f"wall time: {a.seconds:.2f} s; ideal {ideal:.2f} s (per org {calls} calls, bucket {a.capacity:g}"
        f" refilled at {a.refill:g}/s); {100 * (a.seconds / ideal - 1):+.1f} % vs ideal" if ideal > 0
        else f"wall time: {a.seconds:.2f} s; ideal 0 s (the buckets never bind)",
        f"429s: {sum(rejected.values())} total over {len(rejected)} orgs, max {max_rej} per org"
        f" ({windows} throttle windows per org at most; orgs above one 429 per window: {over_window})",
        f"early requests: {sum(early.values())}",
        f"tokens minted per org credential: min {min(cred)}, max {max(cred)} (revoked {counters.get('tokensRevoked', 0)}"
        f" of {sum(minted.values())})",
        f"API requests: {counters.get('requests', 0)}, secrets created {counters.get('secretsCreated', 0)}",
    ]
    first = counters.get("firstRequestAt", {})
    last = counters.get("lastRequestAt", {})
    if first and a.started is not None:
        spans = [last[o] - first[o] for o in first]
        lines.append(
            f"timeline (s after the worker started): first API request +{min(first.values()) - a.started:.2f},"
            f" last org's first request +{max(first.values()) - a.started:.2f},"
            f" longest org schedule {max(spans):.2f} (ideal {ideal:.2f}),"
            f" last request +{max(last.values()) - a.started:.2f}, worker exit +{a.seconds:.2f}")
    print("\n".join(lines))
    ok = (ideal == 0 or a.seconds <= 1.10 * ideal) and sum(early.values()) == 0 and over_window == 0 \
        and min(cred) == 1 and max(cred) == 1 and c["succeeded"] == a.orgs * a.accounts
    print("target met" if ok else "target NOT met")
    return 0 if ok else 1


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "requests":
        requests(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["report"])
    p.add_argument("state")
    p.add_argument("status")
    p.add_argument("--orgs", type=int, required=True)
    p.add_argument("--accounts", type=int, required=True)
    p.add_argument("--capacity", type=float, required=True)
    p.add_argument("--refill", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--concurrency", type=int, default=0)
    p.add_argument("--started", type=float, default=None, help="the worker's start, epoch seconds")
    return report(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
