import AtlasSim
import Foundation
import Testing

extension EndToEnd {
    /// The demo as a user runs it: a file of requests over several orgs, one `worker --drain`
    /// against an Atlas that fails ~10 % of creates, then the answers the user checks.
    @Suite struct Demo {
        @Test func sixtyRequestsOverThreeOrgsAllSucceedWithOneLiveSecretEach() throws {
            // Seed 7 injects 7 failures over the 67 creates: 4 before creating, 3 after (fixed:
            // the simulator decides faults with a seeded RNG, one draw per create in call order).
            let h = try Harness("e2e_demo", orgs: 3, accountsPerOrg: 20) {
                $0.failRate = 0.1
                $0.failMode = .mixed
                $0.seed = 7
            }
            defer { h.close() }
            let file = try h.requestFile(h.accounts, hours: 48, name: "demo.jsonl")
            #expect(try h.ok(["enqueue", file]) == "enqueued 60 new jobs in batch demo\n")

            let worker = try h.drain(["--concurrency", "8"])
            #expect(worker.stderr.contains(#""event":"worker.stopped""#))

            let jobs = try h.listJobs()
            #expect(jobs.count == 60)
            #expect(jobs.filter { $0.state == "succeeded" }.count == 60, "\(jobs.filter { $0.state != "succeeded" }.map { "\($0.id) \($0.state) \($0.lastErrorCode ?? "")" })")
            #expect(Set(jobs.map(\.orgId)).count == 3)

            let sim = try h.state()
            let afterFailure = sim.allSecrets.filter { $0.createdAfterFailure == true }
            // The run met failures of both kinds, or it proves nothing about them.
            #expect(sim.counters.faultsInjected == 7)
            #expect(!afterFailure.isEmpty, "no failure struck after creating")
            #expect(sim.counters.faultsInjected > afterFailure.count, "no failure struck before creating")

            var secretsById: [String: SimState.Secret] = [:]
            for s in sim.allSecrets { secretsById[s.id] = s }
            for job in jobs {
                let live = sim.liveSecrets(job.clientId)
                #expect(live.map(\.id) == [job.secretId ?? "none"], "job \(job.id): live secrets \(live.map(\.id))")
                #expect(job.maskedSecret != nil && job.maskedSecret == live.first?.maskedSecretValue, "job \(job.id)")
            }
            // Every secret created by a failed attempt is revoked, and its job recorded it.
            #expect(afterFailure.allSatisfy { $0.revokedAt != nil })
            let revokedByJobs = jobs.flatMap { $0.revokedSecrets.compactMap { $0["id"] } }
            #expect(revokedByJobs.sorted() == afterFailure.map(\.id).sorted())
            #expect(jobs.reduce(0) { $0 + $1.attempts } == 60 + sim.counters.faultsInjected)

            // `reveal` prints exactly what Atlas issued, for every job.
            for job in jobs {
                let issued = try #require(secretsById[job.secretId ?? ""]?.secret)
                #expect(try h.ok(["reveal", String(job.id)]) == issued + "\n", "job \(job.id)")
            }

            let status = try h.status()
            #expect(status.counts == .init(queued: 0, running: 0, succeeded: 60, failed: 0, cancelled: 0))
            #expect(status.orgs.count == 3)
            #expect(status.orgs.allSatisfy { $0.counts == .init(queued: 0, running: 0, succeeded: 20, failed: 0, cancelled: 0) })
            #expect(status.topErrors.isEmpty)
            let text = try h.ok(["status"])
            #expect(text.hasPrefix("all jobs: 60 of 60 done (100 %)"))
        }
    }
}
