import AtlasSecrets
import AtlasSim
import Foundation
import Synchronization
import Testing

/// Issue 4, scheduling across orgs and workers, through the real binary: fairness between a big
/// and a small batch, `--per-org-concurrency` held across two workers, one OAuth token per
/// credential per worker process.
@Suite(.serialized) struct OrgsSchedulingTests {
    /// A 2,000-job batch for org 0 (2,000 accounts), then a 10-job batch for org 1: with 20 ms of
    /// Atlas latency and 8 lanes the big batch needs ~10 s; the small one must finish long before.
    @Test func smallBatchFinishesWhileBigOneRuns() throws {
        let h = try Harness("orgs_fair", orgs: 2, accountsPerOrg: 2000)
        defer { h.close() }
        try h.latency(ms: 20)
        let org0 = AtlasSimulator.orgId(index: 0), org1 = AtlasSimulator.orgId(index: 1)
        try h.enqueue(h.accounts.filter { $0.org == org0 }.map { OrgsRequest(org: $0.org, client: $0.client) }, batch: "big")
        try h.enqueue(h.accounts.filter { $0.org == org1 }.prefix(10).map { OrgsRequest(org: $0.org, client: $0.client) }, batch: "small")

        let worker = try h.startWorker(["--concurrency", "8", "--lease", "5"])
        defer { worker.stop() }
        var small = try h.status(["--batch", "small"])
        var big = try h.status(["--batch", "big"])
        let done = try eventually(timeout: 30) {
            small = try h.status(["--batch", "small"])
            big = try h.status(["--batch", "big"])
            return small.counts.succeeded == 10
        }
        #expect(done, "small batch: \(small.counts)")
        // Read after the small batch was seen done: the big one is still far from finished.
        #expect(big.counts.queued + big.counts.running > 1000, "big batch when the small one finished: \(big.counts)")
        print("orgs.fair: big batch at \(big.counts.succeeded) of 2000 when the small one finished")
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: 30) == 0)
    }

    /// Two workers of 3 lanes each, `--per-org-concurrency 2`, 4 orgs of 8 accounts, 100 ms of
    /// latency: sampled every 20 ms, no org ever has more than 2 running jobs; the cap is reached;
    /// both workers work; all succeed.
    @Test func perOrgConcurrencyHoldsAcrossTwoWorkers() throws {
        let h = try Harness("orgs_cap", orgs: 4, accountsPerOrg: 8)
        defer { h.close() }
        try h.latency(ms: 100)
        let args = ["--drain", "--lease", "5", "--concurrency", "3", "--per-org-concurrency", "2"]
        // --drain with nothing queued would exit at once: enqueue first, start both together.
        try h.enqueue(h.accounts.map { OrgsRequest(org: $0.org, client: $0.client) }, batch: "c")
        let w1 = try h.startWorker(args, name: "w1")
        let w2 = try h.startWorker(args, name: "w2")
        defer { w1.stop(); w2.stop() }

        let conn = try h.connect()
        defer { conn.close() }
        var maxRunning: [String: Int] = [:]
        var samples = 0
        let deadline = Date().addingTimeInterval(60)
        while (w1.isRunning || w2.isRunning) && Date() < deadline {
            for row in try conn.query("SELECT org_id, count(*)::int AS n FROM secret_jobs WHERE state = 'running' GROUP BY org_id").rows {
                let org = try row["org_id"].string()
                maxRunning[org] = max(maxRunning[org] ?? 0, try row["n"].int())
            }
            samples += 1
            usleep(20_000)
        }
        #expect(w1.wait(timeout: 1) == 0 && w2.wait(timeout: 1) == 0)
        #expect(samples > 20)
        #expect(maxRunning.values.allSatisfy { $0 <= 2 }, "max running per org: \(maxRunning)")
        #expect(maxRunning.values.contains(2), "the cap was never reached: \(maxRunning)")
        let jobs = try h.listJobs(batch: "c")
        #expect(jobs.count == 32 && jobs.allSatisfy { $0.state == "succeeded" })
        // Both workers took part (an org is worked by one worker at a time, not the whole batch).
        let owners = Set(try jobs.map { try h.showJob($0.id) }.flatMap { ($0.history ?? []).map(\.owner) })
        #expect(owners.count == 2)
        print("orgs.cap: \(samples) samples, max running per org \(maxRunning)")
    }

    /// Four worker processes over 3 orgs: each mints one token per credential it uses (not one
    /// per lane or per job), and revokes it at exit.
    @Test func oneTokenPerCredentialPerWorkerProcess() throws {
        let h = try Harness("orgs_tokens", orgs: 3, accountsPerOrg: 16)
        defer { h.close() }
        try h.latency(ms: 30)
        let workers = try (0..<4).map { i in try h.startWorker(["--concurrency", "4", "--lease", "5"], name: "w\(i)") }
        defer { workers.forEach { $0.stop() } }
        // All four are up (listening) before the jobs arrive, so they claim together.
        #expect(eventually(timeout: 15) { workers.allSatisfy { $0.stderr.contains("worker.started") } })
        try h.enqueue(h.accounts.map { OrgsRequest(org: $0.org, client: $0.client) }, batch: "k")
        #expect(try eventually(timeout: 60) { try h.status(["--batch", "k"]).counts.succeeded == 48 })
        for w in workers { w.signal(SIGTERM) }
        for w in workers { #expect(w.wait(timeout: 30) == 0) }

        let state = try h.state()
        let jobs = try h.listJobs(batch: "k").map { try h.showJob($0.id) }
        for i in 0..<3 {
            let org = AtlasSimulator.orgId(index: i)
            let owners = Set(jobs.filter { $0.orgId == org }.flatMap { ($0.history ?? []).map(\.owner) })
            let minted = state.counters.tokensMinted[h.credentialClientId(org: i)] ?? 0
            // Exactly one token per worker process that called the org (an org is worked by one
            // process at a time, but may move to another between its jobs).
            #expect(minted == owners.count, "org \(i): \(minted) tokens, \(owners.count) workers")
            #expect(minted >= 1, "org \(i): \(minted) tokens")
        }
        // All revoked at exit.
        #expect(state.counters.tokensRevoked == state.counters.tokensMinted.values.reduce(0, +))
        print("orgs.tokens: minted \(state.counters.tokensMinted), revoked \(state.counters.tokensRevoked)")
    }
}
