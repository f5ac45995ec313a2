@testable import AtlasSecrets
import Foundation
import Synchronization
import Testing

/// Issue 3 at the queue's SQL level: late writes of superseded attempts, a completion racing a
/// rescue, and the claim's limit on a million rows that were never analyzed.
@Suite(.serialized) struct FaultJobStoreTests {
    let db: TestDatabase
    init() throws { db = try migratedDatabase("faultstore") }


    /// The columns a late write could regress, as one comparable value.
    func snapshot(_ conn: PGConnection, _ id: Int64) throws -> [String] {
        let row = try conn.query("""
            SELECT state, attempts, coalesce(lease_owner, '-') AS owner, coalesce(secret_id, '-') AS secret,
                   coalesce(array_to_string(known_secret_ids, ','), '-') AS known, revoked_secrets::text AS revoked,
                   coalesce(last_error_code, '-') AS code, needs_reconcile::text AS reconcile,
                   (SELECT string_agg(attempt || ':' || outcome, ',' ORDER BY id) FROM secret_job_attempts WHERE job_id = \(id)) AS history
            FROM secret_jobs WHERE id = \(id)
            """).rows[0]
        return try ["state", "attempts", "owner", "secret", "known", "revoked", "code", "reconcile", "history"].map {
            try row[$0].isNull ? "NULL" : row[$0].string()
        }
    }

    @Test func anAttemptThatOutlivedItsLeaseWritesLateAndIsRefusedEverywhere() throws {
        defer { db.drop() }
        let conn = try db.connect()
        defer { conn.close() }
        let id = try #require(try insertJobs(conn, count: 1).first)
        let old = try #require(try JobStore.claim(conn, limit: 1, options: options("w1", lease: 0.2)).first).fence
        #expect(try JobStore.recordKnownSecrets(conn, old, ids: []))
        #expect(try JobStore.recordAttemptStarted(conn, old))
        usleep(300_000)
        #expect(try JobStore.rescueExpired(conn) == [id])
        let new = try #require(try JobStore.claim(conn, limit: 1, options: options("w2")).first).fence
        #expect(new.attempt == 2)
        #expect(try JobStore.recordAttemptStarted(conn, new))

        // While the new attempt runs, every write of the old one is refused and changes nothing.
        let running = try snapshot(conn, id)
        func lateWritesAllRefused() throws {
            #expect(try JobStore.complete(conn, old, success("aaaaaaaaaaaaaaaaaaaaaaaa")) == false)
            #expect(try JobStore.finish(conn, old, ending: .fail, errorCode: "X", detail: "late", httpStatus: 500, durationMs: 1) == false)
            #expect(try JobStore.finish(conn, old, ending: .retry(delay: 0, needsReconcile: false), errorCode: "X", detail: "late", httpStatus: 500, durationMs: 1) == false)
            #expect(try JobStore.finish(conn, old, ending: .giveBack(delay: 0, needsReconcile: false, outcome: "released"), errorCode: "X", detail: "late", httpStatus: nil, durationMs: 1) == false)
            #expect(try JobStore.recordKnownSecrets(conn, old, ids: ["cccccccccccccccccccccccc"]) == false)
            #expect(try JobStore.recordRevocations(conn, old, json: #"[{"id": "dddddddddddddddddddddddd"}]"#) == false)
            #expect(try JobStore.recordAttemptStarted(conn, old) == false)
            #expect(try JobStore.heartbeat(conn, owner: old.owner, fences: [old], leaseSeconds: 30).isEmpty)
            try JobStore.recordSuperseded(conn, old, detail: "late")
        }
        try lateWritesAllRefused()
        #expect(try snapshot(conn, id) == running)
        #expect(running[0] == "running" && running[1] == "2" && running[2] == "w2")

        // The new attempt still owns the job and finishes it; the old one's writes stay refused.
        #expect(try JobStore.heartbeat(conn, owner: "w2", fences: [new], leaseSeconds: 30) == [new])
        #expect(try JobStore.complete(conn, new, success("bbbbbbbbbbbbbbbbbbbbbbbb")))
        let done = try snapshot(conn, id)
        try lateWritesAllRefused()
        #expect(try snapshot(conn, id) == done)
        let (job, attempts) = try #require(try JobQueries.show(conn, id: id))
        #expect(job.state == .succeeded && job.secretId == "bbbbbbbbbbbbbbbbbbbbbbbb" && job.attempts == 2)
        #expect(job.revokedSecrets == "[]")
        #expect(attempts.map(\.outcome) == ["lease_expired", "succeeded"])
    }

    @Test func aCompletionRacingARescueHasExactlyOneWinnerPerJob() throws {
        defer { db.drop() }
        let conn = try db.connect()
        defer { conn.close() }
        let count = 150
        try insertJobs(conn, count: count, orgs: 5)
        let lease = 0.6
        let claimed = try JobStore.claim(conn, limit: count, options: options("w1", lease: lease))
        #expect(claimed.count == count)
        for c in claimed { #expect(try JobStore.recordAttemptStarted(conn, c.fence)) }
        // Completions start just before the leases expire and go on after; rescues run in a loop
        // from another connection at the same time.
        let claimedAt = Date()
        let completed = Mutex<[Int64: Bool]>([:])
        let rescued = Mutex<Set<Int64>>([])
        let url = db.url
        let jobs = claimed
        onThreads(2) { i in
            guard let c = try? PGConnection(url: url) else { return }
            defer { c.close() }
            let start = claimedAt.addingTimeInterval(lease - 0.25)
            Thread.sleep(until: start)
            if i == 0 {
                for job in jobs {
                    let secret = String(format: "%024x", job.job.id)
                    let ok = (try? JobStore.complete(c, job.fence, JobStore.Success(
                        secretId: secret, createdAt: Date(), expiresAt: Date().addingTimeInterval(3600), maskedSecret: "m",
                        ciphertext: [1], keyId: "k", shortenedJSON: "[]", httpStatus: 201, durationMs: 1))) ?? false
                    completed.withLock { $0[job.job.id] = ok }
                }
            } else {
                let until = Date().addingTimeInterval(1.5)
                while Date() < until {
                    if let ids = try? JobStore.rescueExpired(c) { rescued.withLock { $0.formUnion(ids) } }
                    usleep(2_000)
                }
            }
        }
        let wins = completed.withLock { $0 }
        let rescues = rescued.withLock { $0 }
        #expect(wins.count == count)
        var succeeded = 0
        for row in try conn.query("SELECT id, state, secret_id FROM secret_jobs").rows {
            let id = try row["id"].int64()
            let state = try row["state"].string()
            if wins[id] == true {
                // The completion won: the result stands, the rescue never touched the job.
                succeeded += 1
                #expect(state == "succeeded" && !rescues.contains(id), "job \(id): completed but \(state)")
                #expect(try row["secret_id"].string() == String(format: "%024x", id))
            } else {
                // The rescue won: the job is back in the queue and the late result was refused.
                #expect(state == "queued" && rescues.contains(id), "job \(id): refused but \(state)")
                #expect(row["secret_id"].isNull)
            }
        }
        #expect(succeeded + rescues.count == count)
        // The counters the status command reads agree with the rows after the race.
        let status = try JobQueries.status(conn, batch: "b", org: nil)
        #expect(status.counts.succeeded == succeeded && status.counts.queued == rescues.count && status.counts.running == 0)
        print("completion vs rescue: \(succeeded) completions won, \(rescues.count) rescues won")
    }

    @Test func aMillionRowsWithoutAnalyzeNeverClaimMoreThanTheLimitNorTwice() throws {
        defer { db.drop() }
        let conn = try db.connect()
        defer { conn.close() }
        let loadStart = Date()
        try bulkLoad(conn, rows: 1_000_000, accounts: 50_000)
        let loadSeconds = Date().timeIntervalSince(loadStart)
        let stats = try conn.query("""
            SELECT (SELECT count(*) FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'secret_jobs') AS stats,
                   (SELECT coalesce(last_analyze, last_autoanalyze) IS NULL FROM pg_stat_user_tables
                     WHERE schemaname = current_schema() AND relname = 'secret_jobs') AS never
            """).rows[0]
        #expect(try stats["stats"].int() == 0 && stats["never"].bool())

        let limit = 5
        let target = 3000
        let seen = Mutex<[Int64]>([])
        let claims = Atomic<Int>(0)
        let overLimit = Atomic<Int>(0)
        let maxMicros = Atomic<Int>(0)
        let totalMicros = Atomic<Int>(0)
        let url = db.url
        onThreads(4) { i in
            guard let c = try? PGConnection(url: url) else { return }
            defer { c.close() }
            let opts = JobStore.ClaimOptions(owner: "w\(i)", leaseSeconds: 300, orphanPolicy: "revoke")
            while seen.withLock({ $0.count }) < target {
                let t = Date()
                let jobs: [ClaimedJob]
                do { jobs = try JobStore.claim(c, limit: limit, options: opts) } catch {
                    // Two claimers took jobs of the same account at once: the unique index refused one.
                    guard (error as? PGError)?.sqlState == .uniqueViolation else { return }
                    continue
                }
                let us = Int(Date().timeIntervalSince(t) * 1_000_000)
                claims.add(1, ordering: .relaxed)
                totalMicros.add(us, ordering: .relaxed)
                while true {
                    let m = maxMicros.load(ordering: .relaxed)
                    if us <= m || maxMicros.compareExchange(expected: m, desired: us, ordering: .relaxed).exchanged { break }
                }
                if jobs.count > limit { overLimit.add(1, ordering: .relaxed) }
                if jobs.isEmpty { return }
                seen.withLock { $0 += jobs.map(\.job.id) }
            }
        }
        let ids = seen.withLock { $0 }
        let n = claims.load(ordering: .relaxed)
        #expect(overLimit.load(ordering: .relaxed) == 0)
        #expect(ids.count >= target)
        #expect(Set(ids).count == ids.count, "a job was claimed twice")
        // The database agrees: exactly the claimed jobs run, each once, at most one per account.
        let truth = try conn.query("""
            SELECT count(*) AS running, count(DISTINCT (org_id, client_id)) AS accounts, max(attempts) AS attempts
            FROM secret_jobs WHERE state = 'running'
            """).rows[0]
        #expect(try truth["running"].int() == ids.count)
        #expect(try truth["accounts"].int() == ids.count)
        #expect(try truth["attempts"].int() == 1)
        print(String(format: "1M rows loaded in %.1f s; %d claims of <= %d by 4 claimers: %d jobs, mean %.1f ms, max %.1f ms",
                     loadSeconds, n, limit, ids.count, Double(totalMicros.load(ordering: .relaxed)) / Double(max(n, 1)) / 1000,
                     Double(maxMicros.load(ordering: .relaxed)) / 1000))
    }

    /// Loads `rows` queued jobs fast and leaves the table never analyzed (autovacuum off for it).
    /// Row by row this takes a minute on a busy 2-core machine, so for the load only: triggers
    /// are skipped (validation, counters, NOTIFY: none of them is the claim's business), the CHECK
    /// constraints are dropped and added back NOT VALID (still enforced on every later write), and
    /// the secondary indexes are dropped and rebuilt with their exact definitions.
    func bulkLoad(_ conn: PGConnection, rows: Int, accounts: Int) throws {
        try conn.executeScript("ALTER TABLE secret_jobs SET (autovacuum_enabled = false)")
        let indexes = try conn.query("""
            SELECT indexname, indexdef FROM pg_indexes
            WHERE schemaname = current_schema() AND tablename = 'secret_jobs' AND indexname <> 'secret_jobs_pkey'
              AND indexname <> 'secret_jobs_idempotency_key_unique'
            """).rows.map { (try $0["indexname"].string(), try $0["indexdef"].string()) }
        let checks = try conn.query("""
            SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
            WHERE conrelid = 'secret_jobs'::regclass AND contype = 'c'
            """).rows.map { (try $0["conname"].string(), try $0["def"].string()) }
        #expect(indexes.count >= 5 && checks.count >= 5)
        for (name, _) in indexes { try conn.executeScript("DROP INDEX \(PGConnection.quoteIdentifier(name))") }
        for (name, _) in checks { try conn.executeScript("ALTER TABLE secret_jobs DROP CONSTRAINT \(PGConnection.quoteIdentifier(name))") }
        try conn.executeScript("ALTER TABLE secret_jobs DROP CONSTRAINT secret_jobs_idempotency_key_unique")
        try conn.executeScript("""
            SET session_replication_role = replica;
            INSERT INTO secret_jobs (org_id, client_id, expires_after_hours, idempotency_key, batch)
            SELECT lpad(to_hex(655360 + (g % 50)), 24, '0'),
                   'mdb_sa_id_' || lpad(to_hex(720896 + (g % 50)), 12, '0') || lpad(to_hex(g % \(accounts)), 12, '0'),
                   24, 'bulk:' || g, 'b'
            FROM generate_series(0, \(rows - 1)) AS g;
            -- What the skipped counters trigger would have written (the claim reads it).
            INSERT INTO secret_job_counts (batch, org_id, state, n)
            SELECT batch, org_id, state, count(*) FROM secret_jobs GROUP BY 1, 2, 3;
            SET session_replication_role = DEFAULT;
            ALTER TABLE secret_jobs ADD CONSTRAINT secret_jobs_idempotency_key_unique UNIQUE (idempotency_key)
            """)
        for (_, def) in indexes { try conn.executeScript(def) }
        for (name, def) in checks {
            try conn.executeScript("ALTER TABLE secret_jobs ADD CONSTRAINT \(PGConnection.quoteIdentifier(name)) \(def) NOT VALID")
        }
    }
}
