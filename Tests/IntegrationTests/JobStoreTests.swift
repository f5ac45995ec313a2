@testable import AtlasSecrets
import Foundation
import Synchronization
import Testing

/// The queue's SQL against a real PostgreSQL: claim limits, one job per account, fencing, rescue.
@Suite(.serialized) struct JobStoreTests {
    let db: TestDatabase
    init() throws { db = try migratedDatabase("jobstore") }


    @Test func claimTakesAtMostTheLimitAndOneJobPerAccount() throws {
        defer { db.drop() }
        let conn = try db.connect()
        // 10 jobs on 2 accounts, 10 on distinct accounts.
        try insertJobs(conn, count: 10, orgs: 1, accountsPerOrg: 2)
        try insertJobs(conn, count: 10, orgs: 5, batch: "c")
        let first = try JobStore.claim(conn, limit: 5, options: options("w1"))
        #expect(first.count == 5)
        let accounts = Set(first.map { $0.job.orgId + $0.job.clientId })
        #expect(accounts.count == 5)
        #expect(first.allSatisfy { $0.job.state == .running && $0.job.attempts == 1 && $0.fence.owner == "w1" })
        let rest = try JobStore.claim(conn, limit: 100, options: options("w1"))
        let all = first + rest
        // Each account has at most one running job: 2 shared accounts + 10 more, one of which
        // (org 0, account 0) is also one of the shared two = 11 accounts.
        #expect(all.count == 11)
        #expect(Set(all.map { $0.job.orgId + $0.job.clientId }).count == 11)
        #expect(Set(all.map(\.job.id)).count == 11)
    }

    /// One worker process per org at a time: another worker does not start an org whose jobs a
    /// live worker runs (it takes other orgs), and does once that worker's leases have run out.
    @Test func anotherWorkerDoesNotStartAnOrgAWorkerIsRunning() throws {
        defer { db.drop() }
        let conn = try db.connect()
        // 4 jobs of org 0 (4 accounts), then 1 of org 1.
        try insertJobs(conn, count: 4, orgs: 1, accountsPerOrg: 4)
        let first = try JobStore.claim(conn, limit: 1, options: options("w1", lease: 30))
        #expect(first.count == 1)
        #expect(try JobStore.claim(conn, limit: 10, options: options("w2")).isEmpty)
        try insertJob(conn, org: 1, account: 0, batch: "b")
        #expect(try JobStore.claim(conn, limit: 10, options: options("w2")).map(\.job.orgId) == [TestIds.org(1)])
        // The first worker itself may run more of its org.
        #expect(try JobStore.claim(conn, limit: 10, options: options("w1")).count == 3)
        // w1 dies: once its leases have run out, w2 may take the org.
        try conn.execute("UPDATE secret_jobs SET lease_expires_at = now() - interval '1 second' WHERE lease_owner = 'w1'")
        try insertJob(conn, org: 0, account: 9, batch: "later")
        let rescued = try JobStore.claim(conn, limit: 10, options: options("w2"))
        #expect(rescued.map(\.job.orgId) == [TestIds.org(0)], "w2 did not take the dead worker's org")
    }

    /// A worker limited to one batch (`worker --batch`) holds an org for other batches too, but
    /// only until their due job has waited 30 s: then a worker of another batch takes the org's
    /// jobs of its own batch (else a long batch run by a scoped worker would starve every other
    /// batch of the org).
    @Test func aWorkerLimitedToABatchHoldsTheOrgForThatBatchOnly() throws {
        defer { db.drop() }
        let conn = try db.connect()
        for (account, batch) in [(0, "big"), (1, "big"), (2, "small")] {
            try insertJob(conn, org: 0, account: account, batch: batch)
        }
        var big = options("w-big")
        big.batch = "big"
        #expect(try JobStore.claim(conn, limit: 1, options: big).count == 1)
        // The small batch's job has not waited 30 s: the org stays with w-big's process.
        #expect(try JobStore.claim(conn, limit: 10, options: options("w-any")).isEmpty)
        try conn.execute("UPDATE secret_jobs SET run_at = now() - interval '31 seconds' WHERE batch = 'small'")
        // Another worker takes the org's "small" job, not its other "big" one.
        let taken = try JobStore.claim(conn, limit: 10, options: options("w-any"))
        #expect(taken.map(\.job.clientId) == [TestIds.client(0, 2)])
        for c in taken { #expect(try JobStore.complete(conn, c.fence, success("aaaaaaaaaaaaaaaaaaaaaaaa"))) }
        try insertJob(conn, org: 0, account: 3, batch: "small")
        try conn.execute("UPDATE secret_jobs SET run_at = now() - interval '31 seconds' WHERE batch = 'small' AND state = 'queued'")
        var small = options("w-small")
        small.batch = "small"
        #expect(try JobStore.claim(conn, limit: 10, options: small).map(\.job.clientId) == [TestIds.client(0, 3)])
    }

    @Test func fencedWritesRefuseAnotherOwnerAndAreIdempotent() throws {
        defer { db.drop() }
        let conn = try db.connect()
        try insertJobs(conn, count: 1)
        let claimed = try #require(try JobStore.claim(conn, limit: 1, options: options("w1")).first)
        var wrong = claimed.fence
        wrong.owner = "w2"
        #expect(try JobStore.recordAttemptStarted(conn, claimed.fence))
        #expect(try JobStore.complete(conn, wrong, success("aaaaaaaaaaaaaaaaaaaaaaaa")) == false)
        #expect(try JobStore.complete(conn, claimed.fence, success("aaaaaaaaaaaaaaaaaaaaaaaa")))
        // A repeat of the same write (the connection died before the reply) is still a success...
        #expect(try JobStore.complete(conn, claimed.fence, success("aaaaaaaaaaaaaaaaaaaaaaaa")))
        // ...but another secret for the same job is refused.
        #expect(try JobStore.complete(conn, claimed.fence, success("bbbbbbbbbbbbbbbbbbbbbbbb")) == false)
        let (job, attempts) = try #require(try JobQueries.show(conn, id: claimed.job.id))
        #expect(job.state == .succeeded && job.secretId == "aaaaaaaaaaaaaaaaaaaaaaaa")
        #expect(attempts.map(\.outcome) == ["succeeded"])
    }

    @Test func expiredLeaseIsRescuedAndTheLateWriteIsRefused() throws {
        defer { db.drop() }
        let conn = try db.connect()
        try insertJobs(conn, count: 1)
        let claimed = try #require(try JobStore.claim(conn, limit: 1, options: options("w1", lease: 0.2)).first)
        #expect(try JobStore.recordAttemptStarted(conn, claimed.fence))
        #expect(try JobStore.rescueExpired(conn).isEmpty)  // lease still valid
        usleep(300_000)
        #expect(try JobStore.rescueExpired(conn) == [claimed.job.id])
        // The old attempt writes late: refused, no state regression.
        #expect(try JobStore.complete(conn, claimed.fence, success("aaaaaaaaaaaaaaaaaaaaaaaa")) == false)
        #expect(try JobStore.finish(conn, claimed.fence, ending: .fail, errorCode: "X", detail: "late", httpStatus: 500, durationMs: 1) == false)
        let (job, attempts) = try #require(try JobQueries.show(conn, id: claimed.job.id))
        #expect(job.state == .queued && job.needsReconcile && job.lastErrorCode == "LEASE_EXPIRED")
        #expect(attempts.map(\.outcome) == ["lease_expired"])
        // The next claim is attempt 2 of a new owner.
        let again = try #require(try JobStore.claim(conn, limit: 1, options: options("w2")).first)
        #expect(again.fence.attempt == 2 && again.job.needsReconcile)
    }

    @Test func heartbeatRenewsOnlyLeasesStillHeld() throws {
        defer { db.drop() }
        let conn = try db.connect()
        try insertJobs(conn, count: 2)
        let claimed = try JobStore.claim(conn, limit: 2, options: options("w1", lease: 0.3))
        #expect(claimed.count == 2)
        let stale = JobFence(jobId: claimed[1].fence.jobId, attempt: 99, owner: "w1")
        let held = try JobStore.heartbeat(conn, owner: "w1", fences: [claimed[0].fence, stale], leaseSeconds: 30)
        #expect(held == [claimed[0].fence])
        usleep(400_000)
        #expect(try JobStore.rescueExpired(conn) == [claimed[1].job.id])
    }

    @Test func giveBackDoesNotSpendTheAttempt() throws {
        defer { db.drop() }
        let conn = try db.connect()
        try insertJobs(conn, count: 1)
        let claimed = try #require(try JobStore.claim(conn, limit: 1, options: options("w1")).first)
        #expect(try JobStore.finish(conn, claimed.fence, ending: .giveBack(delay: 0, needsReconcile: false, outcome: "throttled"),
                                    errorCode: "RATE_LIMITED", detail: "429", httpStatus: 429, durationMs: 1))
        let (job, _) = try #require(try JobQueries.show(conn, id: claimed.job.id))
        #expect(job.state == .queued && job.attempts == 0)
    }

    @Test func concurrentClaimersNeverShareAJobNorExceedTheLimit() throws {
        defer { db.drop() }
        let setup = try db.connect()
        try insertJobs(setup, count: 3000, orgs: 7)
        let seen = Mutex<[Int64]>([])
        let overLimit = Atomic<Int>(0)
        let url = db.url
        onThreads(4) { i in
            guard let conn = try? PGConnection(url: url) else { return }
            defer { conn.close() }
            let opts = JobStore.ClaimOptions(owner: "w\(i)", leaseSeconds: 30, orphanPolicy: "revoke")
            while true {
                let jobs: [ClaimedJob]
                do { jobs = try JobStore.claim(conn, limit: 7, options: opts) } catch { continue }
                if jobs.count > 7 { overLimit.add(1, ordering: .relaxed) }
                if jobs.isEmpty { break }
                seen.withLock { $0 += jobs.map(\.job.id) }
            }
        }
        let ids = seen.withLock { $0 }
        #expect(overLimit.load(ordering: .relaxed) == 0)
        #expect(ids.count == 3000)
        #expect(Set(ids).count == 3000)
    }

    @Test func plainSQLInsertsGetClearErrorsAndCountersStayExact() throws {
        defer { db.drop() }
        let conn = try db.connect()
        do {
            try conn.execute("INSERT INTO secret_jobs (org_id, client_id, expires_after_hours) VALUES ('nope', 'mdb_sa_id_000000000000000000000001', 24)")
            Issue.record("a bad org id was accepted")
        } catch {
            #expect(error.sqlState == .checkViolation)
            #expect(error.message.contains("org_id 'nope' is not an Atlas organization id"))
        }
        try insertJobs(conn, count: 50, orgs: 2)
        _ = try JobStore.claim(conn, limit: 10, options: options("w1"))
        try conn.execute("UPDATE secret_jobs SET state = 'cancelled' WHERE id IN (SELECT id FROM secret_jobs WHERE state = 'queued' LIMIT 5)")
        let status = try JobQueries.status(conn, batch: "b", org: nil)
        let truth = try conn.query("SELECT state, count(*) AS n FROM secret_jobs GROUP BY state").rows
        var expected: [String: Int] = [:]
        for row in truth { expected[try row["state"].string()] = try row["n"].int() }
        #expect(status.counts.queued == expected["queued"] ?? 0)
        #expect(status.counts.running == 10)
        #expect(status.counts.cancelled == 5)
        #expect(status.counts.total == 50)
        #expect(status.orgs.count == 2)
    }

    @Test func aPauseThatRanOutLetsOneProbeThroughAndItsSuccessLiftsThePause() throws {
        defer { db.drop() }
        let conn = try db.connect()
        try insertJobs(conn, count: 6, orgs: 1)
        let org = TestIds.org(0)
        try conn.execute("""
            INSERT INTO secret_org_pacing (org_id, paused_reason, paused_at)
            VALUES (\(org), 'credential refused', now() - interval '1 minute')
            """)
        #expect(try JobStore.claim(conn, limit: 10, options: options("w1")).isEmpty)  // paused
        try conn.execute("UPDATE secret_org_pacing SET paused_at = now() - interval '6 minutes'")
        let probe = try JobStore.claim(conn, limit: 10, options: options("w1"))
        #expect(probe.count == 1)  // one job, not a herd
        #expect(try JobStore.claim(conn, limit: 10, options: options("w2")).isEmpty)  // re-armed meanwhile
        #expect(try JobStore.recordAttemptStarted(conn, probe[0].fence, knownSecretIds: []))
        #expect(try JobStore.complete(conn, probe[0].fence, success("aaaaaaaaaaaaaaaaaaaaaaaa")))
        let pacing = try conn.query("SELECT paused_reason FROM secret_org_pacing").rows[0]
        #expect(pacing["paused_reason"].isNull)
        #expect(try JobStore.claim(conn, limit: 10, options: options("w2")).count == 5)
    }

    /// Writes are retried when a commit's reply is lost: repeating one must not duplicate history.
    @Test func attemptStartAndRevocationRecordsAreIdempotent() throws {
        defer { db.drop() }
        let conn = try db.connect()
        try insertJobs(conn, count: 1)
        let claimed = try #require(try JobStore.claim(conn, limit: 1, options: options("w1")).first)
        #expect(try JobStore.recordAttemptStarted(conn, claimed.fence, knownSecretIds: ["aaaaaaaaaaaaaaaaaaaaaaaa"]))
        #expect(try JobStore.recordAttemptStarted(conn, claimed.fence, knownSecretIds: ["aaaaaaaaaaaaaaaaaaaaaaaa"]))
        let entry = #"[{"id": "bbbbbbbbbbbbbbbbbbbbbbbb", "action": "revoked", "reason": "r", "at": "t"}]"#
        #expect(try JobStore.recordRevocations(conn, claimed.fence, json: entry))
        #expect(try JobStore.recordRevocations(conn, claimed.fence, json: entry))
        let (job, attempts) = try #require(try JobQueries.show(conn, id: claimed.job.id))
        #expect(attempts.count == 1)
        #expect(job.knownSecretIds == ["aaaaaaaaaaaaaaaaaaaaaaaa"])
        let revoked = try JSONSerialization.jsonObject(with: Data(job.revokedSecrets.utf8)) as? [[String: String]]
        #expect(revoked?.map { $0["id"] } == ["bbbbbbbbbbbbbbbbbbbbbbbb"])
    }
}
