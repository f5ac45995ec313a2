@testable import AtlasSecrets
import AtlasSim
import Foundation
import Synchronization
import Testing

/// Issue 4, tokens across processes: the token ledger (migration 005) keeps every worker of a
/// credential under Atlas's 100 live tokens and ~50 token requests a minute, through the real
/// `atlas-secrets` binary against the simulator, with small limits set by environment variables.
@Suite(.serialized) struct TokenLedgerTests {
    /// A SIGKILLed worker never revokes its token: it lives out its hour. A restart loop of killed
    /// workers stops minting at the cap, and the org pauses with the reason `status` shows.
    @Test func killedWorkersStopAtTheLiveCap() throws {
        let h = try Harness("ledger_kill", orgs: 1, accountsPerOrg: 5)
        defer { h.close() }
        let credential = h.credentialClientId(org: 0)
        let env = ["ATLAS_SECRETS_TOKEN_LIVE_CAP": "3"]
        for i in 0..<3 {
            try h.enqueue([OrgsRequest(org: h.accounts[i].org, client: h.accounts[i].client)], batch: "k")
            let worker = try h.startWorker(["--lease", "5"], name: "killed-\(i)", extraEnvironment: env)
            let done = try eventually(timeout: 20) { try h.count("SELECT count(*) FROM secret_jobs WHERE state = 'succeeded'") == i + 1 }
            try #require(done, "worker \(i) did not finish its job: \(worker.stderr.suffix(2000))")
            worker.signal(SIGKILL)
            worker.wait(timeout: 10)
            #expect(try h.state().counters.tokensMinted[credential] == i + 1)
        }

        // The fourth worker's fetch would be the fourth live token: refused, the org paused.
        try h.enqueue([OrgsRequest(org: h.accounts[3].org, client: h.accounts[3].client)], batch: "k")
        let worker = try h.startWorker(["--lease", "5"], name: "refused", extraEnvironment: env)
        let paused = try eventually(timeout: 20) {
            try h.count("SELECT count(*) FROM secret_org_pacing WHERE paused_reason IS NOT NULL") == 1
        }
        try #require(paused, "the org was not paused: \(worker.stderr.suffix(2000))")
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: 20) == 0)
        #expect(worker.stderr.contains("\"token.live_cap_reached\""))

        let state = try h.state()
        #expect(state.counters.tokensMinted[credential] == 3, "minted: \(state.counters.tokensMinted)")
        #expect(state.counters.tokensRevoked == 0)
        let jobs = try h.listJobs(batch: "k")
        #expect(jobs.filter { $0.state == "succeeded" }.count == 3)
        let refused = try #require(jobs.last)
        // Paused, not failed: the job waits with its attempts untouched.
        #expect(refused.state == "queued" && refused.attempts == 0, "\(refused.state), \(refused.attempts) attempts")
        #expect(refused.lastErrorCode == "TOKEN_LIVE_CAP")

        let org = try #require(try h.status().org(h.accounts[0].org))
        let reason = org.pausedReason ?? ""
        #expect(reason.contains("3 live OAuth tokens for credential \(credential), the cap is 3 (Atlas allows 100)"), "reason: \(reason)")
        // The oldest token counts as live until 61 minutes after the first worker reserved it (an
        // hour's token: the reservation's time is kept, a minute longer than the token).
        let oldest = reason.range(of: "the oldest expires at ").flatMap { isoDate(String(reason[$0.upperBound...])) }
        let expiry = try #require(oldest, "reason: \(reason)")
        #expect(expiry.timeIntervalSinceNow > 3560 && expiry.timeIntervalSinceNow <= 3660)
        // The ledger holds the three live tokens, by credential hash (never the client id).
        #expect(try h.count("""
            SELECT count(*) FROM oauth_token_ledger
            WHERE credential_hash = '\(DatabaseTokenLedger.credentialHash(credential))' AND revoked_at IS NULL AND expires_at > now()
            """) == 3)
        #expect(try h.count("SELECT count(*) FROM oauth_token_ledger WHERE credential_hash LIKE '%\(credential)%'") == 0)
    }

    /// Workers take turns on an organization (one worker process per org at a time), but each
    /// keeps the token it fetched until it exits: many long-lived workers that served the same
    /// org hold one token each. At the cap, the next worker is refused and the org pauses.
    /// (A served worker is SIGSTOPped so that the next job goes to a new worker, not back to it.)
    @Test func liveWorkersTakingTurnsEachHoldATokenAndTheCapStopsTheNext() throws {
        let h = try Harness("ledger_turns", orgs: 1, accountsPerOrg: 4)
        defer { h.close() }
        let credential = h.credentialClientId(org: 0)
        let env = ["ATLAS_SECRETS_TOKEN_LIVE_CAP": "2"]
        var workers: [BackgroundProcess] = []
        defer {
            for w in workers { w.signal(SIGCONT) }
            workers.forEach { $0.stop() }
        }
        for i in 0..<2 {
            try h.enqueue([OrgsRequest(org: h.accounts[i].org, client: h.accounts[i].client)], batch: "t")
            let worker = try h.startWorker(["--lease", "5"], name: "served-\(i)", extraEnvironment: env)
            workers.append(worker)
            let done = try eventually(timeout: 20) { try h.count("SELECT count(*) FROM secret_jobs WHERE state = 'succeeded'") == i + 1 }
            try #require(done, "worker \(i) did not finish its job: \(worker.stderr.suffix(2000))")
            worker.signal(SIGSTOP)
        }
        // Two live workers hold a token each; a third worker's fetch would be the third.
        try h.enqueue([OrgsRequest(org: h.accounts[2].org, client: h.accounts[2].client)], batch: "t")
        let third = try h.startWorker(["--lease", "5"], name: "refused", extraEnvironment: env)
        workers.append(third)
        let refused = try eventually(timeout: 20) {
            try h.count("SELECT count(*) FROM secret_jobs WHERE state = 'queued' AND last_error_code = 'TOKEN_LIVE_CAP'") == 1
        }
        try #require(refused, "the third worker was not refused: \(third.stderr.suffix(2000))")
        #expect(try h.status().org(h.accounts[0].org)?.pausedReason?.contains("2 live OAuth tokens") == true)
        #expect(try h.state().counters.tokensMinted[credential] == 2)

        for w in workers { w.signal(SIGCONT) }
        for w in workers { w.signal(SIGTERM) }
        for w in workers { #expect(w.wait(timeout: 20) == 0) }
        let state = try h.state()
        #expect(state.counters.tokensMinted[credential] == 2, "minted: \(state.counters.tokensMinted)")
        // The two served workers revoke at exit; the ledger says so.
        #expect(state.counters.tokensRevoked == 2)
        #expect(try h.count("SELECT count(*) FROM oauth_token_ledger WHERE revoked_at IS NOT NULL") == 2)
        let job = try #require(try h.listJobs(batch: "t").first { $0.clientId == h.accounts[2].client })
        #expect(job.state == "queued" && job.attempts == 0, "\(job.state), \(job.attempts) attempts")
    }

    /// The per-minute limit: once the credential's fetches in the last minute reach it, the next
    /// worker does not fetch; its org waits (throttled in the database, so every worker waits)
    /// until the oldest fetch is a minute old, and the job spends no attempt.
    @Test func fetchesPerMinuteLimitMakesTheOrgWait() throws {
        let h = try Harness("ledger_rate", orgs: 1, accountsPerOrg: 4)
        defer { h.close() }
        let credential = h.credentialClientId(org: 0)
        let env = ["ATLAS_SECRETS_TOKEN_FETCHES_PER_MINUTE": "2"]
        var workers: [BackgroundProcess] = []
        defer { workers.forEach { $0.stop() } }
        let started = Date()
        for i in 0..<2 {
            try h.enqueue([OrgsRequest(org: h.accounts[i].org, client: h.accounts[i].client)], batch: "m\(i)")
            workers.append(try h.startWorker(["--drain", "--lease", "5", "--batch", "m\(i)"], name: "minted-\(i)", extraEnvironment: env))
            let done = try eventually(timeout: 20) { try h.count("SELECT count(*) FROM secret_jobs WHERE batch = 'm\(i)' AND state = 'succeeded'") == 1 }
            try #require(done, "worker \(i): \(workers[i].stderr.suffix(2000))")
        }
        // Two fetches in the last minute: the third worker must wait.
        try h.enqueue([OrgsRequest(org: h.accounts[2].org, client: h.accounts[2].client)], batch: "m2")
        // `--drain` (which `--batch` needs) keeps it waiting: the org reopens within its 60 s horizon.
        let waiting = try h.startWorker(["--drain", "--lease", "5", "--batch", "m2"], name: "waiting", extraEnvironment: env)
        workers.append(waiting)
        let deferred = try eventually(timeout: 20) {
            try h.count("SELECT count(*) FROM secret_jobs WHERE batch = 'm2' AND state = 'queued' AND last_error_code = 'TOKEN_RATE_LIMITED'") == 1
        }
        try #require(deferred, "worker 2: \(waiting.stderr.suffix(2000))")
        // A worker started now (its own token needed) is held off by the database's throttle.
        try h.enqueue([OrgsRequest(org: h.accounts[3].org, client: h.accounts[3].client)], batch: "m3")
        workers.append(try h.startWorker(["--drain", "--lease", "5", "--batch", "m3"], name: "late", extraEnvironment: env))
        Thread.sleep(forTimeInterval: 1.5)

        let org = try #require(try h.status().org(h.accounts[0].org))
        let until = try #require(isoDate(org.throttledUntil), "throttledUntil: \(org.throttledUntil ?? "none")")
        // Until the first fetch is a minute old: about a minute after the test started.
        let expected = started.addingTimeInterval(60)
        #expect(abs(until.timeIntervalSince(expected)) < 10, "throttled until \(until), expected about \(expected)")
        #expect(org.pausedReason == nil)
        for batch in ["m2", "m3"] {
            let job = try #require(try h.listJobs(batch: batch).first)
            #expect(job.state == "queued" && job.attempts == 0, "\(batch): \(job.state), \(job.attempts) attempts")
        }
        let waitingJob = try #require(try h.listJobs(batch: "m2").first)
        #expect(waitingJob.lastErrorDetail?.contains("2 token requests for credential \(credential) in the last minute, the limit is 2") == true,
                "detail: \(waitingJob.lastErrorDetail ?? "none")")
        // Waiting, not retrying: two fetches, two ledger rows, nothing else asked.
        #expect(try h.state().counters.tokensMinted[credential] == 2)
        #expect(try h.count("SELECT count(*) FROM oauth_token_ledger") == 2)
        #expect(waiting.stderr.components(separatedBy: "\"token.fetch_deferred\"").count - 1 == 1)

        for w in workers { w.signal(SIGTERM) }
        for w in workers { #expect(w.wait(timeout: 20) == 0) }
    }

    /// The reservation's lock, seen in the database: while one reservation's transaction is
    /// open (its row inserted, not yet visible), a second one for the same credential waits for
    /// it instead of counting without it, and then sees the cap reached. Without the lock the
    /// second would return at once with a row of its own: two tokens under a cap of one.
    @Test func aReservationWaitsForTheOneInFlightAndThenSeesItsRow() throws {
        let db = try migratedDatabase("ledger_lock")
        defer { db.drop() }
        let first = try db.connect()
        defer { first.close() }
        let hash = DatabaseTokenLedger.credentialHash("mdb_sa_id_" + String(repeating: "0", count: 23) + "1")
        try first.executeScript("BEGIN")
        let reserved = try first.query("SELECT id FROM reserve_oauth_token(\(hash), 'first', 1, 100)").rows[0]
        #expect(try reserved["id"].optionalInt64() != nil)

        let second = Mutex<(id: Int64?, live: Int)?>(nil)
        let url = db.url
        let name = "ledger-lock-second-\(db.schema)"
        onThread(after: 0) {
            guard let conn = try? PGConnection(url: url, applicationName: name) else { return }
            defer { conn.close() }
            let row = try? conn.query("SELECT id, live FROM reserve_oauth_token(\(hash), 'second', 1, 100)").rows[0]
            second.withLock { $0 = row.map { ((try? $0["id"].optionalInt64()) ?? nil, (try? $0["live"].int()) ?? -1) } }
        }
        // The second reservation is blocked on the advisory lock, not answered. (Seen from a third
        // connection: inside a transaction, pg_stat_activity is read once and kept.)
        let observer = try db.connect()
        defer { observer.close() }
        let waiting = try eventually(timeout: 10) {
            try observer.query("""
                SELECT count(*) FROM pg_stat_activity
                WHERE application_name = \(name) AND wait_event_type = 'Lock' AND wait_event = 'advisory'
                """).rows[0]["count"].int() == 1
        }
        #expect(waiting, "the second reservation did not wait for the first")
        #expect(second.withLock { $0 } == nil)
        try first.executeScript("COMMIT")
        let answered = eventually(timeout: 10) { second.withLock { $0 } != nil }
        try #require(answered, "the second reservation never answered")
        let (id, live) = try #require(second.withLock { $0 })
        #expect(id == nil, "a second token was reserved under a cap of one")
        #expect(live == 1)
        #expect(try first.query("SELECT count(*) FROM oauth_token_ledger").rows[0]["count"].int() == 1)
    }

    /// Graceful exits revoke their tokens and the ledger records it: a restart loop of clean
    /// exits never reaches the cap, however many tokens it mints over time.
    @Test func gracefulExitsRevokeSoRestartsNeverReachTheCap() throws {
        let h = try Harness("ledger_graceful", orgs: 1, accountsPerOrg: 5)
        defer { h.close() }
        let credential = h.credentialClientId(org: 0)
        for i in 0..<4 {
            try h.enqueue([OrgsRequest(org: h.accounts[i].org, client: h.accounts[i].client)], batch: "g")
            let run = try h.cli(["worker", "--drain", "--lease", "5", "--log-format", "json"],
                                extraEnvironment: ["ATLAS_SECRETS_TOKEN_LIVE_CAP": "2"])
            try #require(run.status == 0, "run \(i): \(run.both)")
        }
        let jobs = try h.listJobs(batch: "g")
        #expect(jobs.count == 4 && jobs.allSatisfy { $0.state == "succeeded" && $0.attempts == 1 })
        let state = try h.state()
        // Twice the cap minted over time, each revoked at its worker's exit.
        #expect(state.counters.tokensMinted[credential] == 4)
        #expect(state.counters.tokensRevoked == 4)
        let hash = DatabaseTokenLedger.credentialHash(credential)
        #expect(try h.count("SELECT count(*) FROM oauth_token_ledger WHERE credential_hash = '\(hash)'") == 4)
        #expect(try h.count("SELECT count(*) FROM oauth_token_ledger WHERE revoked_at IS NULL") == 0)
        // Four owners, one row each.
        #expect(try h.count("SELECT count(DISTINCT owner) FROM oauth_token_ledger") == 4)
        #expect(try h.status().org(h.accounts[0].org)?.pausedReason == nil)
    }

    /// A ledger the worker cannot use (here: its table is gone) must not stop the work: the
    /// worker says so and fetches anyway.
    @Test func unusableLedgerDoesNotBlockWork() throws {
        let h = try Harness("ledger_gone", orgs: 1, accountsPerOrg: 2)
        defer { h.close() }
        let conn = try h.connect()
        try conn.executeScript("DROP FUNCTION reserve_oauth_token; DROP TABLE oauth_token_ledger;")
        conn.close()
        try h.enqueue(h.accounts.map { OrgsRequest(org: $0.org, client: $0.client) }, batch: "u")
        let run = try h.cli(["worker", "--drain", "--lease", "5", "--log-format", "json"])
        #expect(run.status == 0, "\(run.both)")
        #expect(try h.listJobs(batch: "u").allSatisfy { $0.state == "succeeded" })
        #expect(run.stderr.contains("\"token.ledger_unavailable\""))
        #expect(try h.state().counters.tokensMinted[h.credentialClientId(org: 0)] == 1)
    }

    /// A token of a shorter life than the reserved hour is recorded with its own expiry: it stops
    /// counting against the cap when it dies.
    @Test func aShortLivedTokenIsRecordedWithItsOwnExpiry() throws {
        let h = try Harness("ledger_ttl", orgs: 1, accountsPerOrg: 1) { $0.tokenTTL = 120 }
        defer { h.close() }
        try h.enqueue([OrgsRequest(org: h.accounts[0].org, client: h.accounts[0].client)], batch: "t")
        let run = try h.cli(["worker", "--drain", "--lease", "5", "--log-format", "json"])
        #expect(run.status == 0, "\(run.both)")
        let life = try h.scalar("SELECT extract(epoch FROM expires_at - fetched_at)::int FROM oauth_token_ledger")
        #expect((Int(life) ?? 0) >= 120 && (Int(life) ?? 0) < 125, "recorded life: \(life) s")
    }

    /// Bad limits are a usage error, not a silent default.
    @Test func limitsMustBePositiveNumbers() throws {
        let h = try Harness("ledger_env", orgs: 1, accountsPerOrg: 1)
        defer { h.close() }
        let run = try h.cli(["worker", "--drain"], extraEnvironment: ["ATLAS_SECRETS_TOKEN_FETCHES_PER_MINUTE": "0"])
        #expect(run.status == 64, "\(run.both)")
        #expect(run.stderr.contains("ATLAS_SECRETS_TOKEN_FETCHES_PER_MINUTE must be a whole number greater than 0"))
    }
}

extension Harness {
    /// `SELECT count(*) …` as an Int.
    func count(_ sql: String) throws -> Int { Int(try scalar(sql)) ?? -1 }
}
