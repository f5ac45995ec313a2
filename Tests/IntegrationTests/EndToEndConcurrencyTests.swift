import AtlasSim
import Foundation
import Testing

extension EndToEnd {
    /// Several workers, many lanes: no job processed twice, no duplicate secret, one OAuth token
    /// per credential per worker.
    @Suite struct Concurrency {
        @Test func twoWorkersOverTwoHundredJobsNeverProcessAJobTwice() throws {
            // Seed 5 injects 21 failures over 221 creates: 8 before creating, 13 after.
            let h = try Harness("e2e_two_workers", orgs: 4, accountsPerOrg: 25) {
                $0.failRate = 0.1
                $0.failMode = .mixed
                $0.seed = 5
            }
            defer { h.close() }
            // Two jobs per service account (24 h and 48 h): the second must wait for the first.
            let day = try h.requestFile(h.accounts, hours: 24, name: "day.jsonl")
            let twoDays = try h.requestFile(h.accounts, hours: 48, name: "two-days.jsonl")
            #expect(try h.ok(["enqueue", day, twoDays]).hasPrefix("enqueued 200 new jobs"))

            let started = Date()
            let workers = try (0..<2).map { try h.startWorker(["--drain", "--concurrency", "8", "--lease", "5"], name: "worker\($0)") }
            defer { workers.forEach { $0.stop() } }
            for w in workers { #expect(w.wait(timeout: 90) == 0, "\(w.stderr.suffix(3000))") }
            print(String(format: "two workers, 200 jobs: %.1f s", Date().timeIntervalSince(started)))

            let jobs = try h.listJobs()
            #expect(jobs.count == 200)
            #expect(jobs.allSatisfy { $0.state == "succeeded" }, "\(jobs.filter { $0.state != "succeeded" }.map { "\($0.id) \($0.state)" })")

            let conn = try h.connect()
            defer { conn.close() }
            let perJob = try conn.query("""
                SELECT job_id, count(*) FILTER (WHERE outcome = 'succeeded') AS wins, count(DISTINCT owner) AS owners
                FROM secret_job_attempts GROUP BY job_id
                """).rows
            #expect(perJob.count == 200)
            #expect(try perJob.allSatisfy { try $0["wins"].int() == 1 }, "a job succeeded twice")
            let owners = try conn.query("SELECT count(DISTINCT owner) AS n FROM secret_job_attempts").rows[0]["n"].int()
            #expect(owners == 2, "both workers should have processed jobs")
            let superseded = try conn.query("SELECT count(*) AS n FROM secret_job_attempts WHERE outcome IN ('superseded', 'lease_expired')").rows[0]["n"].int()
            #expect(superseded == 0)
            let failedAttempts = try conn.query("SELECT count(*) AS n FROM secret_job_attempts WHERE http_status = 500").rows[0]["n"].int()

            // At the simulator: each account's live secrets are exactly its two jobs' secrets, and
            // every other secret it holds was revoked by one of its jobs (a lost attempt's).
            let sim = try h.state()
            #expect(Set(jobs.compactMap(\.secretId)).count == 200)
            var byClient: [String: [JobJSON]] = [:]
            for j in jobs { byClient[j.clientId, default: []].append(j) }
            for (client, own) in byClient {
                let account = try #require(sim.account(client))
                let live = Set(sim.liveSecrets(client).map(\.id))
                #expect(live == Set(own.compactMap(\.secretId)), "\(client)")
                let revokedByJobs = Set(own.flatMap { $0.revokedSecrets.compactMap { $0["id"] } })
                let dead = Set(account.secrets.filter { $0.revokedAt != nil }.map(\.id))
                #expect(dead == revokedByJobs, "\(client): revoked \(dead), recorded \(revokedByJobs)")
                #expect(account.secrets.filter { $0.revokedAt != nil }.allSatisfy { $0.createdAfterFailure == true })
            }
            let revokedTotal = jobs.reduce(0) { $0 + $1.revokedSecrets.count }
            #expect(revokedTotal > 0 && failedAttempts > revokedTotal, "the run met failures of both kinds")
            // Creates that reached Atlas: one per job plus one per failure that struck after creating.
            #expect(sim.counters.createSecret == 200 + revokedTotal)
            #expect(sim.counters.faultsInjected == failedAttempts)
            // One token per credential per worker that called its org (an org is worked by one
            // worker at a time, and may move between them), all revoked at exit.
            #expect(sim.counters.tokensMinted.count == 4)
            for org in 0..<4 {
                let orgId = AtlasSimulator.orgId(index: org)
                let callers = try conn.query("""
                    SELECT count(DISTINCT a.owner)::int AS n FROM secret_job_attempts a JOIN secret_jobs j ON j.id = a.job_id
                    WHERE j.org_id = \(orgId)
                    """).rows[0]["n"].int()
                let minted = sim.counters.tokensMinted[h.credentialClientId(org: org)] ?? 0
                #expect(minted == callers && minted >= 1, "org \(org): \(minted) tokens, \(callers) workers called it")
            }
            #expect(sim.counters.tokensRevoked == sim.counters.tokensMinted.values.reduce(0, +))
        }

        @Test func oneTokenPerCredentialAtConcurrency32RevokedAtExit() throws {
            let h = try Harness("e2e_tokens", orgs: 3, accountsPerOrg: 32) { $0.latencyMs = 20 }
            defer { h.close() }
            try h.ok(["enqueue", try h.requestFile(h.accounts, name: "tokens.jsonl")])
            let worker = try h.drain(["--concurrency", "32"])
            #expect(try h.status().counts.succeeded == 96)

            let sim = try h.state()
            let admins = (0..<3).map { AtlasSimulator.adminClientId(org: $0) }
            #expect(sim.counters.tokensMinted == Dictionary(uniqueKeysWithValues: admins.map { ($0, 1) }))
            #expect(sim.counters.tokensRevoked == 3)
            #expect(worker.stderr.contains(#""tokens_minted":"3""#), "\(worker.stderr.suffix(500))")
        }
    }
}
