#!/usr/bin/env python3
"""Regenerates the example request files in jobs/ (deterministic: same seed, same files).

    python3 jobs/generate.py            # writes next to this script

- example-small.jsonl / example-small.csv: 5 requests across 3 organizations.
- example-large.jsonl: about 530 requests across 36 organizations, 6-18 service accounts each,
  at most 2 requests per service account (Atlas keeps at most 2 live secrets per account),
  varied lifetimes, a few priorities and explicit idempotency keys.
Every id matches the Atlas formats: orgId ^[a-f0-9]{24}$, clientId ^mdb_sa_id_[a-fA-F0-9]{24}$.
"""
import csv
import io
import json
import os
import random

HOURS = [24, 168, 720, 2160, 8760, 8, 48, 336, 4320]
HOURS_WEIGHTS = [14, 20, 30, 12, 8, 3, 5, 5, 3]
FIELDS = ["orgId", "clientId", "secretExpiresAfterHours", "idempotencyKey", "priority"]


def hex24(rng):
    return format(rng.getrandbits(96), "024x")


def pick(rng, values, weights):
    point = rng.random() * sum(weights)
    for value, weight in zip(values, weights):
        point -= weight
        if point < 0:
            return value
    return values[-1]


def line(org, client, hours, key=None, priority=None):
    request = {"orgId": org, "clientId": client, "secretExpiresAfterHours": hours}
    if key is not None:
        request["idempotencyKey"] = key
    if priority is not None:
        request["priority"] = priority
    return request


def small():
    rng = random.Random(20261203)
    orgs = [hex24(rng) for _ in range(3)]
    clients = ["mdb_sa_id_" + hex24(rng) for _ in range(4)]
    return [
        line(orgs[0], clients[0], 720),
        line(orgs[0], clients[1], 168, priority=5),
        line(orgs[1], clients[2], 24),
        line(orgs[1], clients[2], 2160, key="rotate-2026-12-" + clients[2][-6:]),
        line(orgs[2], clients[3], 8760),
    ]


def large():
    rng = random.Random(4242)
    requests = []
    for org_index in range(36):
        org = hex24(rng)
        for _ in range(6 + rng.randrange(13)):
            client = "mdb_sa_id_" + hex24(rng)
            first = pick(rng, HOURS, HOURS_WEIGHTS)
            priority = rng.choice([1, 5, 10]) if rng.random() < 0.06 else None
            key = "ticket-%d-%s" % (1000 + len(requests), client[-6:]) if rng.random() < 0.05 else None
            requests.append(line(org, client, first, key, priority))
            if rng.random() < 0.3:
                # A second secret for the same account must differ (else its derived key is the same).
                second = pick(rng, [h for h in HOURS if h != first], [w for h, w in zip(HOURS, HOURS_WEIGHTS) if h != first])
                requests.append(line(org, client, second, "second-" + client[-10:] if rng.random() < 0.3 else None))
    rng.shuffle(requests)
    return requests


def check(requests, minimum, minimum_orgs):
    per_account = {}
    for r in requests:
        assert len(r["orgId"]) == 24 and all(c in "0123456789abcdef" for c in r["orgId"])
        assert r["clientId"].startswith("mdb_sa_id_") and len(r["clientId"]) == 34
        assert 8 <= r["secretExpiresAfterHours"] <= 8760
        account = (r["orgId"], r["clientId"])
        per_account[account] = per_account.get(account, 0) + 1
    assert max(per_account.values()) <= 2, "more than 2 requests for one service account"
    assert len(requests) >= minimum, len(requests)
    assert len({r["orgId"] for r in requests}) >= minimum_orgs


def write_jsonl(path, requests):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in requests:
            f.write(json.dumps(r, separators=(", ", ": ")) + "\n")


def write_csv(path, requests):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for r in requests:
        writer.writerow([r.get(name, "") for name in FIELDS])
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(out.getvalue())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    s, l = small(), large()
    check(s, 5, 3)
    check(l, 520, 30)
    write_jsonl(os.path.join(here, "example-small.jsonl"), s)
    write_csv(os.path.join(here, "example-small.csv"), s)
    write_jsonl(os.path.join(here, "example-large.jsonl"), l)
    print("wrote %d + %d requests (large: %d organizations)" % (len(s), len(l), len({r["orgId"] for r in l})))


if __name__ == "__main__":
    main()
