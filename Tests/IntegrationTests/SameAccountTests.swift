@testable import AtlasSecrets
import AtlasSim
import Foundation
import Testing

/// Two jobs for one service account, with creates failing ambiguously half the time: a job's
/// reconciliation must never revoke the secret the other job delivered (a bug found in review:
/// the snapshot was taken once per job, so a retry after the other job ran revoked its secret).
@Suite(.serialized) struct SameAccountTests {
    @Test func reconciliationNeverRevokesAnotherJobsSecret() throws {
        let h = try Harness("sameacct", orgs: 2, accountsPerOrg: 8) { config in
            config.failRate = 0.5
            config.failMode = .mixed
        }
        defer { h.close() }
        // Each account twice (different hours, so different derived keys).
        let first = try h.requestFile(h.accounts, hours: 24, name: "a.jsonl")
        let second = try h.requestFile(h.accounts, hours: 48, name: "b.jsonl")
        #expect(try h.cli(["enqueue", first, second, "--batch", "twice", "--max-attempts", "10"]).status == 0)
        let run = try h.cli(["worker", "--drain", "--concurrency", "8"])
        #expect(run.status == 0, "\(run.stderr.suffix(2000))")

        let conn = try h.connect()
        defer { conn.close() }
        let rows = try conn.query("SELECT state, secret_id, client_id FROM secret_jobs").rows
        #expect(rows.count == 32)
        let state = try h.state()
        let delivered = try rows.compactMap { try $0["secret_id"].optionalString() }
        let revoked = Set(state.allSecrets.filter { $0.revokedAt != nil }.map(\.id))
        // No delivered secret was revoked, and every revoked secret was made by a failed call.
        #expect(delivered.filter { revoked.contains($0) }.isEmpty)
        #expect(state.allSecrets.filter { $0.revokedAt != nil && $0.createdAfterFailure != true }.isEmpty)
        // Every succeeded job's secret is live at Atlas; no account holds a live secret no job owns.
        for (org, client) in h.accounts {
            _ = org
            let live = Set(state.liveSecrets(client).map(\.id))
            let owned = Set(try rows.filter { try $0["client_id"].string() == client && $0["state"].string() == "succeeded" }
                .map { try $0["secret_id"].string() })
            #expect(live == owned, "account \(client): live \(live) vs delivered \(owned)")
        }
    }
}
