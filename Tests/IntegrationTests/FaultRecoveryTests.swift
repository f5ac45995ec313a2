@testable import AtlasSecrets
import Foundation
import Testing

/// Issue 3 end to end: real worker processes, a real PostgreSQL and the simulator on a socket.
/// Each test reproduces one fault and checks what a user would: every job's state, and at the
/// simulator exactly one live secret per job (the one the job stored) with every other secret
/// the jobs' attempts created revoked.
@Suite(.serialized) struct FaultRecoveryTests {
    static let pauseHook = "ATLAS_SECRETS_TEST_PAUSE_BEFORE_RESULT_MS"

    /// One job as the database has it.
    struct Row {
        var id: Int64
        var state: String
        var attempts: Int
        var secretId: String?
        var clientId: String
    }

    func rows(_ h: Harness) throws -> [Row] {
        let conn = try h.connect()
        defer { conn.close() }
        return try conn.query("SELECT id, state, attempts, secret_id, client_id FROM secret_jobs ORDER BY id").rows.map {
            Row(id: try $0["id"].int64(), state: try $0["state"].string(), attempts: try $0["attempts"].int(),
                secretId: $0["secret_id"].isNull ? nil : try $0["secret_id"].string(), clientId: try $0["client_id"].string())
        }
    }

    func count(_ h: Harness, _ sql: PGQuery) throws -> Int {
        let conn = try h.connect()
        defer { conn.close() }
        return try conn.query(sql).rows[0][index: 0].int()
    }

    /// Every job succeeded; per job's account exactly one live secret, the job's; every other
    /// secret of those accounts revoked. Returns how many such orphans were revoked.
    @discardableResult
    func expectOneLiveSecretPerJob(_ h: Harness, sourceLocation: SourceLocation = #_sourceLocation) throws -> Int {
        let jobs = try rows(h)
        let state = try h.state()
        var orphans = 0
        for job in jobs {
            #expect(job.state == "succeeded", "job \(job.id) is \(job.state)", sourceLocation: sourceLocation)
            let live = state.liveSecrets(job.clientId).map(\.id)
            #expect(live == [job.secretId ?? "none"], "job \(job.id): live secrets \(live), job has \(job.secretId ?? "none")",
                    sourceLocation: sourceLocation)
            orphans += (state.account(job.clientId)?.secrets.count ?? 0) - live.count
        }
        let jobAccounts = Set(jobs.map(\.clientId))
        let owned = Set(jobs.compactMap(\.secretId))
        let unowned = state.accounts.filter { jobAccounts.contains($0.clientId) }
            .flatMap(\.secrets).filter { secret in secret.revokedAt == nil && !owned.contains(secret.id) }
        #expect(unowned.isEmpty, "live secrets no job owns: \(unowned.map(\.id))", sourceLocation: sourceLocation)
        return orphans
    }

    /// The JSON log lines of a worker with the given event.
    func events(_ worker: BackgroundProcess, _ event: String) -> [[String: String]] {
        worker.stderr.split(separator: "\n").compactMap { line in
            guard line.contains("\"\(event)\""),
                  let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  object["event"] as? String == event else { return nil }
            return object.compactMapValues { $0 as? String }
        }
    }

    func enqueueAll(_ h: Harness) throws {
        let out = try h.cli(["enqueue", try h.requestFile(h.accounts)])
        #expect(out.status == 0, "\(out.stderr)")
    }

    @Test func aCompletionRacingARescueLosesAndItsSecretIsRevoked() throws {
        let h = try Harness("faultrace", orgs: 1, accountsPerOrg: 1)
        defer { h.close() }
        try enqueueAll(h)
        // Worker A gets the 201 and pauses before writing the result; we freeze it there (a VM
        // stall: no heartbeat either) until its lease expires and worker B rescues the job.
        let a = try h.startWorker(["--lease", "5", "--concurrency", "1"], name: "a", extraEnvironment: [Self.pauseHook: "3000"])
        defer { a.stop() }
        #expect(eventually(timeout: 20) { !events(a, "test_hook.pause_before_result").isEmpty })
        a.signal(SIGSTOP)
        let lateSecret = try #require(events(a, "test_hook.pause_before_result").first?["secret"])
        let b = try h.startWorker(["--lease", "5"], name: "b")
        defer { b.stop() }
        #expect(try eventually(timeout: 25) { try rows(h).first?.state == "succeeded" })
        a.signal(SIGCONT)
        // A wakes up, writes its result late: refused, and it handles its secret as an orphan.
        #expect(eventually(timeout: 15) { !events(a, "attempt.superseded").isEmpty })
        a.signal(SIGTERM)
        b.signal(SIGTERM)
        #expect(a.wait(timeout: 30) == 0)
        #expect(b.wait(timeout: 30) == 0)

        let job = try #require(try rows(h).first)
        #expect(job.state == "succeeded" && job.attempts == 2)
        #expect(job.secretId != nil && job.secretId != lateSecret)
        let show = try h.cli(["show", "\(job.id)", "--json"])
        let view = try #require(try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any])
        let history = (view["history"] as? [[String: Any]] ?? []).map { $0["outcome"] as? String ?? "?" }
        #expect(history == ["lease_expired", "succeeded"])
        let revoked = (view["revokedSecrets"] as? [[String: String]] ?? []).map { $0["id"] ?? "" }
        #expect(revoked == [lateSecret], "B's reconciliation records the late attempt's secret")
        // At the simulator: one live secret, the job's; the superseded attempt's secret revoked.
        let state = try h.state()
        #expect(state.liveSecrets(job.clientId).map(\.id) == [job.secretId!])
        #expect(state.allSecrets.first { $0.id == lateSecret }?.revokedAt != nil)
        try expectOneLiveSecretPerJob(h)
        // The stored result is the secret the simulator issued.
        let revealed = try h.cli(["reveal", "\(job.id)"])
        #expect(revealed.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == state.allSecrets.first { $0.id == job.secretId }?.secret)
    }

    @Test func sigkillMidBatchThenAnotherWorkerFinishesEveryJobOnce() throws {
        let lease = 5.0
        let h = try Harness("faultkill", orgs: 3, accountsPerOrg: 10) { $0.latencyMs = 200 }
        defer { h.close() }
        try enqueueAll(h)
        let a = try h.startWorker(["--lease", "5", "--concurrency", "8"], name: "a")
        defer { a.stop() }
        // Kill it while creates are on the wire (attempts recorded as started, not finished).
        #expect(try eventually(timeout: 30) {
            try count(h, "SELECT count(*) FROM secret_jobs WHERE state = 'succeeded'") >= 6
                && count(h, "SELECT count(*) FROM secret_job_attempts WHERE outcome = 'started'") >= 4
        })
        usleep(100_000)
        a.signal(SIGKILL)
        let killedAt = Date()
        #expect(a.wait(timeout: 5) != nil)
        let inFlight = try rows(h).filter { $0.state == "running" }
        #expect(inFlight.count >= 4)
        let b = try h.startWorker(["--lease", "5", "--concurrency", "8"], name: "b")
        defer { b.stop() }
        // Running again = claimed by a new attempt.
        var recovered: Double?
        while Date().timeIntervalSince(killedAt) < lease + 15 {
            let now = try rows(h)
            if inFlight.allSatisfy({ old in now.first { $0.id == old.id }.map { $0.attempts > old.attempts || $0.state == "succeeded" } ?? false }) {
                recovered = Date().timeIntervalSince(killedAt)
                break
            }
            usleep(50_000)
        }
        let seconds = try #require(recovered, "the killed worker's jobs never ran again")
        #expect(seconds <= lease + 5, "jobs ran again \(seconds) s after the kill")
        #expect(try eventually(timeout: 60) { try rows(h).allSatisfy { $0.state == "succeeded" } })
        b.signal(SIGTERM)
        #expect(b.wait(timeout: 30) == 0)
        let orphans = try expectOneLiveSecretPerJob(h)
        #expect(orphans >= 1, "the kill should have left secrets created for nobody")
        #expect(try count(h, "SELECT count(*) FROM secret_jobs WHERE state <> 'succeeded'") == 0)
        print(String(format: "SIGKILL: %d jobs in flight, running again after %.2f s (lease %.0f s), %d orphans revoked",
                     inFlight.count, seconds, lease, orphans))
    }

    @Test func a500AfterTheCreateEndsWithOneLiveSecretAndTheOrphanRevokedAndRecorded() throws {
        let h = try Harness("fault500", orgs: 1, accountsPerOrg: 3)
        defer { h.close() }
        try h.control("POST", "/_sim/faults", #"{"rules": [{"method": "POST", "pathContains": "/secrets", "status": 500, "when": "after", "times": 3}]}"#)
        try enqueueAll(h)
        let run = try h.cli(["worker", "--drain", "--concurrency", "3"])
        #expect(run.status == 0, "\(run.stderr)")
        let state = try h.state()
        #expect(state.counters.faultsInjected == 3)
        for job in try rows(h) {
            #expect(job.state == "succeeded" && job.attempts == 2)
            let failed = state.account(job.clientId)?.secrets.filter { $0.createdAfterFailure == true } ?? []
            #expect(failed.count == 1 && failed.allSatisfy { $0.revokedAt != nil })
            let show = try h.cli(["show", "\(job.id)", "--json"])
            let view = try #require(try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any])
            let revoked = view["revokedSecrets"] as? [[String: String]] ?? []
            #expect(revoked.map { $0["id"] } == failed.map(\.id))
            #expect(revoked.map { $0["action"] } == ["revoked"])
            let history = view["history"] as? [[String: Any]] ?? []
            #expect(history.map { $0["outcome"] as? String } == ["retry", "succeeded"])
            #expect(history.first?["httpStatus"] as? Int == 500)
        }
        try expectOneLiveSecretPerJob(h)
    }

    @Test func sigtermWithAGraceShorterThanTheCallGivesJobsBackUnspent() throws {
        let h = try Harness("faultterm", orgs: 1, accountsPerOrg: 4)
        defer { h.close() }
        // Creates take 3 s; the grace is 0.5 s.
        try h.control("POST", "/_sim/faults", #"{"rules": [{"method": "POST", "pathContains": "/secrets", "latencyMs": 3000}]}"#)
        try enqueueAll(h)
        let a = try h.startWorker(["--lease", "5", "--concurrency", "4", "--shutdown-grace", "0.5"], name: "a")
        defer { a.stop() }
        #expect(try eventually(timeout: 20) {
            try count(h, "SELECT count(*) FROM secret_job_attempts WHERE outcome = 'started'") == 4
        })
        usleep(200_000)  // the four creates are on the wire
        a.signal(SIGTERM)
        let signalled = Date()
        let status = a.wait(timeout: 10)
        let exitSeconds = Date().timeIntervalSince(signalled)
        #expect(status == 0, "\(a.stderr.suffix(2000))")
        #expect(exitSeconds < 2.5, "exited \(exitSeconds) s after SIGTERM with a 0.5 s grace")
        let back = try rows(h)
        #expect(back.allSatisfy { $0.state == "queued" && $0.attempts == 0 }, "\(back.map { "\($0.state)/\($0.attempts)" })")
        #expect(try count(h, "SELECT count(*) FROM secret_job_attempts WHERE outcome = 'released'") == 4)

        // Another worker, started at once, finishes them: one live secret each.
        try h.control("DELETE", "/_sim/faults")
        let run = try h.cli(["worker", "--drain", "--lease", "5"])
        #expect(run.status == 0, "\(run.stderr)")
        // The simulator still finishes the creates the first worker abandoned: wait for all of
        // them (4 abandoned + 4 of the second worker) before judging.
        #expect(try eventually(timeout: 10) { try h.state().counters.createSecret >= 8 })
        usleep(200_000)
        let orphans = try expectOneLiveSecretPerJob(h)
        #expect(orphans == 4, "each abandoned create landed and was revoked")
        print(String(format: "SIGTERM: exit %.2f s after the signal (grace 0.5 s), %d orphans revoked", exitSeconds, orphans))
    }

    @Test func killingTheWorkersDatabaseConnectionsLeavesNoJobRunning() throws {
        let h = try Harness("faultdb", orgs: 2, accountsPerOrg: 10) { $0.latencyMs = 50 }
        defer { h.close() }
        try enqueueAll(h)
        // A name of our own for this worker's connections (the URL's application_name wins), so
        // only they are terminated, not those of other tests sharing the server.
        let name = "atlas-secrets-fault-\(Hashing.hexString(Hashing.randomBytes(4)))"
        let url = h.db.url + (h.db.url.contains("?") ? "&" : "?") + "application_name=\(name)"
        let a = try h.startWorker(["--lease", "5", "--concurrency", "10"], name: "a",
                                  extraEnvironment: ["DATABASE_URL": url, Self.pauseHook: "1000"])
        defer { a.stop() }
        let admin = try h.connect()
        defer { admin.close() }
        var terminated = 0
        // Kill them while lanes hold 201s before their result writes, three times.
        for round in 1...3 {
            #expect(eventually(timeout: 20) { events(a, "test_hook.pause_before_result").count >= round * 3 })
            terminated += try admin.query("""
                SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE application_name = \(name)
                """).rows[0]["n"].int()
            if try rows(h).allSatisfy({ $0.state == "succeeded" }) { break }
        }
        #expect(terminated >= 3)
        let finished = try eventually(timeout: 60) { try rows(h).allSatisfy { $0.state == "succeeded" } }
        let states = try rows(h).map(\.state)
        #expect(finished, "\(states)")
        #expect(try count(h, "SELECT count(*) FROM secret_jobs WHERE state = 'running'") == 0)
        #expect(a.isRunning)
        a.signal(SIGTERM)
        #expect(a.wait(timeout: 30) == 0)
        let orphans = try expectOneLiveSecretPerJob(h)
        print("database kills: \(terminated) connections terminated, \(events(a, "job.succeeded").count) jobs succeeded in that worker, \(orphans) orphans revoked")
    }
}
