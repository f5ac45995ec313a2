import AtlasSecrets
import AtlasSim
import Foundation
import Testing

/// Issue 4 with several worker processes on the same orgs' buckets: each process's gate keeps a
/// lower bound of an org's bucket assuming only it spends tokens; Atlas's headers and the shared
/// not-before must keep the cluster inside Atlas's limits. And a worker stopped or killed while
/// it holds parked (throttled) jobs.
@Suite(.serialized) struct OrgsMultiWorkerThrottleTests {
    /// 1 or 3 workers of 12 lanes in all, 2 orgs of 10 accounts, buckets of 2 refilled at a token a second
    /// (the rate each gate assumes), with RateLimit headers: every job succeeds on its first
    /// attempt, no request reaches an org before a Retry-After it was given, 429s stay bounded.
    /// One worker (the control: its gate sees every token spent) and three.
    @Test(arguments: [1, 3])
    func workersOnSmallBucketsSendNoEarlyRequest(processes: Int) throws {
        let h = try Harness("orgs_multi\(processes)", orgs: 2, accountsPerOrg: 10)
        defer { h.close() }
        try h.rateLimit(capacity: 2, refillPerSecond: 1)
        let workers = try (0..<processes).map { i in try h.startWorker(["--concurrency", "\(12 / processes)", "--lease", "5"], name: "w\(i)") }
        defer { workers.forEach { $0.stop() } }
        #expect(eventually(timeout: 15) { workers.allSatisfy { $0.stderr.contains("worker.started") } })
        try h.enqueue(h.accounts.map { OrgsRequest(org: $0.org, client: $0.client) }, batch: "m")
        let done = try eventually(timeout: 90) { try h.status(["--batch", "m"]).counts.succeeded == 20 }
        for w in workers { w.signal(SIGTERM) }
        for w in workers { _ = w.wait(timeout: 30) }
        #expect(done)
        let jobs = try h.listJobs(batch: "m")
        #expect(jobs.count == 20 && jobs.allSatisfy { $0.state == "succeeded" && $0.attempts == 1 },
                "\(jobs.map { "\($0.id) \($0.state) a\($0.attempts)" })")
        let state = try h.state()
        let early = state.counters.earlyRequests
        let rejected = state.counters.rejected429
        print("orgs.multi[\(processes)]: early \(early), rejected \(rejected)")
        #expect(early.values.reduce(0, +) == 0, "early requests: \(early)")
        // 20 calls per org, 2 from the full bucket, then a token a second: 18 windows of a second,
        // and each process's gate probes a throttled org one call at a time. One 429 per window
        // at most; a 429 for nearly every call is a storm.
        #expect(rejected.values.allSatisfy { $0 <= 9 }, "rejected: \(rejected)")
    }

    /// A throttle another worker records reaches a running worker at once (NOTIFY
    /// atlas_secrets_pacing, "<org> <seconds> <schema>"): it neither claims nor calls the org
    /// before that time. Here the notice comes alone, with no database row for claims to read:
    /// only the worker's gate, closed by the notice, holds the org. Another org's job runs at
    /// once: a notice for it from another schema (another installation) is not for this worker.
    @Test func aThrottleNoticeFromAnotherWorkerHoldsTheOrg() throws {
        let h = try Harness("orgs_notice", orgs: 2, accountsPerOrg: 1)
        defer { h.close() }
        let worker = try h.startWorker(["--concurrency", "4", "--lease", "5"], name: "w")
        defer { worker.stop() }
        #expect(eventually(timeout: 15) { worker.stderr.contains("worker.started") })
        let (held, free) = (h.accounts[0], h.accounts[1])
        #expect(held.org != free.org)
        let conn = try h.connect()
        defer { conn.close() }
        // A notice sent before the listener LISTENs is not delivered: wait for its last set-up
        // query (it reads its schema after both LISTENs).
        let owner = try #require(worker.stderr.range(of: #""owner":""#).map { String(worker.stderr[$0.upperBound...].prefix { $0 != "\"" }) })
        let listening = try eventually(timeout: 15) {
            try h.count("""
                SELECT count(*) FROM pg_stat_activity
                WHERE application_name = 'atlas-secrets listener \(owner)' AND query LIKE '%current_schema()%'
                """) == 1
        }
        try #require(listening, "the worker's listener did not start")
        let noticeAt = try conn.query("""
            SELECT extract(epoch FROM clock_timestamp())::float8 AS t,
                   pg_notify('atlas_secrets_pacing', \(held.org) || ' 3 ' || current_schema()),
                   -- Another installation's throttle (another schema of the database) is not ours.
                   pg_notify('atlas_secrets_pacing', \(free.org) || ' 3 ' || current_schema() || '_other')
            """).rows[0]["t"].double()
        usleep(300_000)
        try h.enqueue([OrgsRequest(org: held.org, client: held.client), OrgsRequest(org: free.org, client: free.client)], batch: "n")
        let done = try eventually(timeout: 20) { try h.status(["--batch", "n"]).counts.succeeded == 2 }
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: 30) == 0)
        #expect(done, "\(worker.stderr.suffix(1500))")
        let started = try conn.query("""
            SELECT org_id, extract(epoch FROM started_at)::float8 AS t FROM secret_jobs WHERE batch = 'n'
            """).rows.reduce(into: [String: Double]()) { $0[try $1["org_id"].string()] = try $1["t"].double() }
        let heldAfter = (started[held.org] ?? 0) - noticeAt
        let freeAfter = (started[free.org] ?? 0) - noticeAt
        print("orgs.notice: held org started \(String(format: "%.2f", heldAfter)) s after the notice, the other \(String(format: "%.2f", freeAfter)) s")
        #expect(heldAfter >= 2.9, "the held org's job started \(heldAfter) s after a 3 s notice")
        #expect(freeAfter < 2, "the other org's job waited \(freeAfter) s")
    }

    /// 1 org of 12 accounts, a bucket of 1 refilled every 2 s, one job per account in `batch`, and
    /// a worker of 8 lanes that has parked some of them (most wait for the bucket).
    private func workerWithParkedJobs(_ name: String, batch: String) throws -> (Harness, BackgroundProcess) {
        let h = try Harness(name, orgs: 1, accountsPerOrg: 12)
        do {
            try h.rateLimit(capacity: 1, refillPerSecond: 0.5)
            try h.enqueue(h.accounts.map { OrgsRequest(org: $0.org, client: $0.client) }, batch: batch)
            let worker = try h.startWorker(["--concurrency", "8", "--lease", "5"], name: "w1", extraEnvironment: ["ATLAS_SECRETS_LOG_LEVEL": "debug"])
            let parked = eventually(timeout: 20) { worker.stderr.contains("\"job.parked\"") }
            if !parked { worker.stop() }
            try #require(parked, "no job was parked: \(worker.stderr.suffix(1500))")
            return (h, worker)
        } catch {
            h.close()
            throw error
        }
    }

    /// One worker, 1 org, a bucket of 1 refilled every 2 s: most jobs wait parked in the worker.
    /// SIGTERM while they are parked: the worker exits 0, every job not finished is queued again
    /// with no attempt spent and no open history row; a second worker then finishes them all.
    @Test func sigtermWhileParkedGivesEveryParkedJobBack() throws {
        let (h, worker) = try workerWithParkedJobs("orgs_park_term", batch: "p")
        defer { h.close() }
        defer { worker.stop() }
        usleep(300_000)
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: 30) == 0, "\(worker.stderr.suffix(1500))")

        let conn = try h.connect()
        defer { conn.close() }
        let open = try conn.query("SELECT count(*)::int AS n FROM secret_job_attempts WHERE finished_at IS NULL").rows[0]["n"].int()
        #expect(open == 0, "history rows left open after SIGTERM")
        let jobs = try h.listJobs(batch: "p")
        #expect(jobs.allSatisfy { $0.state == "succeeded" || ($0.state == "queued" && $0.attempts == 0) },
                "\(jobs.map { "\($0.id) \($0.state) a\($0.attempts)" })")
        #expect(jobs.contains { $0.state == "queued" })

        try h.rateLimit(capacity: 100, refillPerSecond: 100)
        let run = try h.drain(["--concurrency", "8"], timeout: 60, name: "w2")
        #expect(run.status == 0)
        let after = try h.listJobs(batch: "p")
        #expect(after.allSatisfy { $0.state == "succeeded" && $0.attempts == 1 }, "\(after.map { "\($0.id) \($0.state) a\($0.attempts)" })")
        let state = try h.state()
        #expect(state.counters.secretsCreated == 12)
        for a in h.accounts { #expect(state.liveSecrets(a.client).count == 1, "account \(a.client)") }
    }

    /// SIGKILL while jobs are parked: their leases run out, a second worker rescues, reconciles
    /// and finishes them: exactly one live secret per job.
    @Test func sigkillWhileParkedIsRescuedWithOneLiveSecretPerJob() throws {
        let (h, worker) = try workerWithParkedJobs("orgs_park_kill", batch: "k")
        defer { h.close() }
        defer { worker.stop() }
        usleep(300_000)
        worker.signal(SIGKILL)
        _ = worker.wait(timeout: 10)
        try h.rateLimit(capacity: 100, refillPerSecond: 100)
        // Not --drain: the killed worker's parked jobs are still 'running' until their leases run out.
        let w2 = try h.startWorker(["--concurrency", "8", "--lease", "5"], name: "w2")
        defer { w2.stop() }
        #expect(try eventually(timeout: 40) { try h.status(["--batch", "k"]).counts.succeeded == 12 })
        w2.signal(SIGTERM)
        #expect(w2.wait(timeout: 30) == 0)
        let jobs = try h.listJobs(batch: "k")
        #expect(jobs.allSatisfy { $0.state == "succeeded" }, "\(jobs.map { "\($0.id) \($0.state) a\($0.attempts)" })")
        let state = try h.state()
        for a in h.accounts { #expect(state.liveSecrets(a.client).count == 1, "account \(a.client)") }
        #expect(Set(jobs.compactMap(\.secretId)).count == 12)
    }
}
