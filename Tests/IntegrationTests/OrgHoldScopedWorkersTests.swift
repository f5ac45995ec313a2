import AtlasSecrets
import AtlasSim
import Foundation
import Testing

/// One worker process per org at a time (migration 004), with workers limited to a batch
/// (`worker --batch`): such a worker holds an org for other batches too, until their jobs have
/// waited 30 s (so that they do not starve). Within that, two processes never spend one Atlas
/// bucket, each pacing it from its own calls only (calls sent into a Retry-After the other
/// process was given).
@Suite(.serialized) struct OrgHoldScopedWorkersTests {
    /// 2 orgs of 10 accounts, buckets of 2 refilled at a token a second (the rate each gate
    /// assumes), RateLimit headers on. Workers run with `--drain` (`--batch` needs it). Half of each org's accounts in batch `x`, half in `y`.
    /// `scopes`: each worker's `--batch` ("" for none). Same shape as
    /// OrgsMultiWorkerThrottleTests.workersOnSmallBucketsSendNoEarlyRequest, which passes with
    /// three unscoped workers: here no request may reach an org before a Retry-After either.
    /// `["", ""]` (two unscoped workers, one process per org) is the control.
    @Test(arguments: [["", ""], ["x", "y"], ["x", ""]])
    func scopedWorkersOnOneOrgSendNoEarlyRequest(scopes: [String]) throws {
        let h = try Harness("orgs_scoped", orgs: 2, accountsPerOrg: 10)
        defer { h.close() }
        try h.rateLimit(capacity: 2, refillPerSecond: 1)
        // Account index < 5: batch x; the others: batch y (no account in both batches).
        let xs = h.accounts.filter { Int($0.client.suffix(12), radix: 16)! < 5 }
        let ys = h.accounts.filter { Int($0.client.suffix(12), radix: 16)! >= 5 }
        #expect(xs.count == 10 && ys.count == 10)
        try h.enqueue(xs.map { OrgsRequest(org: $0.org, client: $0.client) }, batch: "x")
        try h.enqueue(ys.map { OrgsRequest(org: $0.org, client: $0.client) }, batch: "y")
        // `--batch` goes with `--drain`: the jobs are queued first, the workers drain them.
        let workers = try scopes.enumerated().map { i, scope in
            try h.startWorker(["--drain", "--concurrency", "6", "--lease", "5"] + (scope.isEmpty ? [] : ["--batch", scope]), name: "w\(i)")
        }
        defer { workers.forEach { $0.stop() } }
        let done = try eventually(timeout: 90) { try h.status().counts.succeeded == 20 }
        for w in workers { w.signal(SIGTERM) }
        for w in workers { _ = w.wait(timeout: 30) }
        #expect(done)
        let state = try h.state()
        let early = state.counters.earlyRequests
        let rejected = state.counters.rejected429
        print("orgs.scoped\(scopes): early \(early), rejected \(rejected)")
        #expect(early.values.reduce(0, +) == 0, "early requests (sent before a Retry-After Atlas gave the org): \(early), 429s \(rejected)")
    }
}
