import AtlasSecrets
import AtlasSim
import Foundation
import Testing

extension EndToEnd {
    /// How Atlas's answers end a job, as `show --json` tells it: 500s retried, 400 fails at once,
    /// 429 waits without spending an attempt, and the attempt budget is a hard stop.
    @Suite struct Retries {
        static let createRule = #""method": "POST", "pathContains": "/secrets""#

        /// One job for the first seeded account, enqueued; returns its id.
        func oneJob(_ h: Harness, extra: [String] = []) throws -> Int64 {
            try h.ok(["enqueue", try h.requestFile([h.accounts[0]])] + extra)
            return try #require(try h.listJobs().first?.id)
        }

        @Test func fiveHundredsAreRetriedUntilTheCreateSucceeds() throws {
            let h = try Harness("e2e_500", orgs: 1, accountsPerOrg: 1)
            defer { h.close() }
            // First create: 500 before anything happens; second: created, then 500 (lost); third: 201.
            try h.faults(#"[{\#(Self.createRule), "status": 500, "times": 1}, {\#(Self.createRule), "status": 500, "when": "after", "times": 1}]"#)
            let id = try oneJob(h)
            try h.drain()

            let job = try h.showJob(id)
            #expect(job.state == "succeeded")
            #expect(job.attempts == 3)
            let history = job.history ?? []
            #expect(history.map(\.httpStatus) == [500, 500, 201])
            #expect(history.map(\.outcome) == ["retry", "retry", "succeeded"])
            #expect(history.map(\.errorCode) == ["UNEXPECTED_ERROR", "UNEXPECTED_ERROR", nil])
            #expect(job.lastErrorCode == nil && job.lastErrorDetail == nil)
            // The secret the lost attempt created is revoked; the job's own is the one live secret.
            let sim = try h.state()
            let account = try #require(sim.account(h.accounts[0].client))
            #expect(account.secrets.count == 2)
            #expect(sim.liveSecrets(h.accounts[0].client).map(\.id) == [job.secretId ?? "none"])
            let orphan = try #require(account.secrets.first { $0.createdAfterFailure == true })
            #expect(orphan.revokedAt != nil)
            #expect(job.revokedSecrets.map { $0["id"] } == [orphan.id])
        }

        @Test func aFailedAccountReadSpendsAnAttemptThatTheHistoryShows() throws {
            let h = try Harness("e2e_get500", orgs: 1, accountsPerOrg: 1)
            defer { h.close() }
            // The read of the account before the first create answers 503 once.
            try h.faults(#"[{"method": "GET", "pathContains": "/serviceAccounts/", "status": 503, "times": 1}]"#)
            let id = try oneJob(h)
            try h.drain()

            let job = try h.showJob(id)
            #expect(job.state == "succeeded")
            #expect(job.attempts == 2)
            #expect(job.history?.map(\.outcome) == ["retry", "succeeded"])
            #expect(job.history?.map(\.httpStatus) == [503, 201])
            #expect(try h.state().counters.secretsCreated == 1)
        }

        @Test func aFourHundredFailsAtOnceKeepingAtlasErrorCodeAndDetail() throws {
            let h = try Harness("e2e_400", orgs: 1, accountsPerOrg: 1)
            defer { h.close() }
            try h.faults(#"[{\#(Self.createRule), "status": 400, "errorCode": "INVALID_ATTRIBUTE"}]"#)
            let id = try oneJob(h)
            try h.drain()

            let job = try h.showJob(id)
            #expect(job.state == "failed")
            #expect(job.attempts == 1)
            #expect(job.lastErrorCode == "INVALID_ATTRIBUTE")
            #expect(job.lastErrorDetail == "Injected by atlas-sim.")
            #expect(job.lastHttpStatus == 400)
            #expect(job.history?.map(\.outcome) == ["failed"])
            #expect(job.history?.map(\.httpStatus) == [400])
            let sim = try h.state()
            #expect(sim.counters.faultsInjected == 1)  // no second try
            #expect(sim.counters.secretsCreated == 0)
            #expect(try h.status().topErrors.map { "\($0.code)=\($0.count)" } == ["INVALID_ATTRIBUTE=1"])
            #expect(try h.ok(["show", String(id)]).contains("INVALID_ATTRIBUTE (HTTP 400): Injected by atlas-sim."))
        }

        @Test func a429WaitsForRetryAfterWithoutSpendingAnAttempt() throws {
            try throttledOnce(retryAfter: 2, name: "e2e_429") { conn, id in
                // A short wait: the job stays with the worker, on its first attempt, the 429 on record.
                let waiting = try conn.query("""
                    SELECT state, attempts, last_http_status, last_error_code FROM secret_jobs WHERE id = \(id)
                    """).rows[0]
                #expect(try waiting["state"].string() == "running")
                #expect(try waiting["attempts"].int() == 1)
                #expect(try waiting["last_http_status"].int() == 429)
                #expect(try waiting["last_error_code"].string().contains("RATE_LIMITED"))
            }
        }

        @Test func aLongRetryAfterGivesTheJobBackWithoutSpendingAnAttempt() throws {
            try throttledOnce(retryAfter: 7, name: "e2e_429_long") { conn, id in
                // Longer than a worker holds a job: back to the queue, its attempt given back.
                let waiting = try conn.query("""
                    SELECT state, attempts, extract(epoch FROM run_at - now())::float8 AS wait FROM secret_jobs WHERE id = \(id)
                    """).rows[0]
                #expect(try waiting["state"].string() == "queued")
                #expect(try waiting["attempts"].int() == 0)
                #expect(try waiting["wait"].double() > 5.5)
            }
        }

        /// One job whose create Atlas answers once with 429 and `Retry-After: retryAfter`; `waiting`
        /// checks the job while it waits.
        func throttledOnce(retryAfter: Int, name: String, waiting: (PGConnection, Int64) throws -> Void) throws {
            let h = try Harness(name, orgs: 1, accountsPerOrg: 1)
            defer { h.close() }
            try h.faults(#"[{\#(Self.createRule), "status": 429, "retryAfter": \#(retryAfter), "times": 1}]"#)
            let id = try oneJob(h)
            let worker = try h.startWorker(["--drain", "--lease", "5"])
            defer { worker.stop() }

            let conn = try h.connect()
            defer { conn.close() }
            try waitFor("the throttled attempt", timeout: 15) {
                try conn.query("SELECT count(*) AS n FROM secret_job_attempts WHERE outcome = 'throttled'").rows[0]["n"].int() == 1
            }
            try waiting(conn, id)

            #expect(worker.wait(timeout: 30) == 0, "\(worker.stderr)")
            let job = try h.showJob(id)
            #expect(job.state == "succeeded")
            #expect(job.attempts == 1)
            let history = job.history ?? []
            #expect(history.map(\.outcome) == ["throttled", "succeeded"])
            #expect(history.map(\.httpStatus) == [429, 201])
            if history.count == 2, let throttledAt = isoDate(history[0].finishedAt), let retriedAt = isoDate(history[1].startedAt) {
                #expect(retriedAt.timeIntervalSince(throttledAt) >= Double(retryAfter), "retried \(retriedAt.timeIntervalSince(throttledAt)) s after the 429")
            }
            // The simulator saw no request for the org before Retry-After had passed.
            let sim = try h.state()
            #expect((sim.counters.earlyRequests[h.accounts[0].org] ?? 0) == 0)
            #expect(sim.liveSecrets(h.accounts[0].client).map(\.id) == [job.secretId ?? "none"])
        }

        @Test func theLastAllowedAttemptFailsTheJobWithTheLastError() throws {
            let h = try Harness("e2e_max", orgs: 1, accountsPerOrg: 1)
            defer { h.close() }
            try h.faults(#"[{\#(Self.createRule), "status": 500}]"#)
            let id = try oneJob(h, extra: ["--max-attempts", "2"])
            try h.drain()

            let job = try h.showJob(id)
            #expect(job.state == "failed")
            #expect(job.attempts == 2 && job.maxAttempts == 2)
            #expect(job.lastErrorCode == "UNEXPECTED_ERROR")
            #expect(job.lastHttpStatus == 500)
            #expect(job.lastErrorDetail?.contains("gave up after 2 attempts") == true, "\(job.lastErrorDetail ?? "nil")")
            #expect(job.lastErrorDetail?.contains("Injected by atlas-sim.") == true)
            #expect(job.history?.map(\.outcome) == ["retry", "failed"])
            #expect(job.history?.map(\.httpStatus) == [500, 500])
            #expect(try h.state().counters.faultsInjected == 2)  // no third create
        }
    }
}
