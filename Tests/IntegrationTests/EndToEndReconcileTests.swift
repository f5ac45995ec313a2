import AtlasSim
import Foundation
import Testing

extension EndToEnd {
    /// Reconciliation after a lost response revokes only the lost attempt's secret, never the
    /// secret another job of the same service account created in the meantime.
    @Suite struct Reconcile {
        @Test func aLostResponseDoesNotRevokeTheSecretOfAnotherJobOfTheSameAccount() throws {
            let h = try Harness("e2e_reconcile", orgs: 1, accountsPerOrg: 1)
            defer { h.close() }
            let (org, client) = h.accounts[0]
            // B (priority 1) runs first and meets a 500 before creating; while B waits for its
            // retry, A runs and succeeds; B's retry creates a secret and loses the response.
            let b = #"{"orgId": "\#(org)", "clientId": "\#(client)", "secretExpiresAfterHours": 48, "priority": 1}"#
            let a = #"{"orgId": "\#(org)", "clientId": "\#(client)", "secretExpiresAfterHours": 24}"#
            try h.ok(["enqueue", try h.writeFile("two.jsonl", b + "\n" + a + "\n")])
            let create = #""method": "POST", "pathContains": "/secrets""#
            try h.faults("""
                [{\(create), "status": 500, "times": 1},
                 {\(create), "latencyMs": 1, "times": 1},
                 {\(create), "status": 500, "when": "after", "times": 1}]
                """)
            try h.drain(["--concurrency", "2"])

            let jobs = try h.listJobs()
            let jobB = try #require(jobs.first { $0.id == jobs.map(\.id).min() })
            let jobA = try #require(jobs.first { $0.id == jobs.map(\.id).max() })
            #expect(jobs.allSatisfy { $0.state == "succeeded" })
            let sim = try h.state()
            let account = try #require(sim.account(client))
            let orphan = try #require(account.secrets.first { $0.createdAfterFailure == true }, "the scenario did not happen")
            // Both jobs' secrets are live; only B's lost one is revoked, and recorded on B.
            #expect(Set(sim.liveSecrets(client).map(\.id)) == Set([jobA.secretId ?? "A", jobB.secretId ?? "B"]))
            #expect(orphan.revokedAt != nil)
            #expect(jobB.revokedSecrets.map { $0["id"] } == [orphan.id])
            #expect(jobA.revokedSecrets.isEmpty)
            #expect(try h.ok(["reveal", String(jobA.id)]) == (account.secrets.first { $0.id == jobA.secretId }?.secret ?? "?") + "\n")
        }
    }
}
