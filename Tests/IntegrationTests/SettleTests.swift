@testable import AtlasSecrets
import AtlasSim
import Foundation
import Testing

/// Regression (found in review): a failed account read while settling a lost create cleared the
/// job's "outcome unknown" flag, so the next attempt took the lost secret for one it had always
/// known and created a second: two live secrets for one job.
@Suite(.serialized) struct SettleTests {
    @Test func aFailedSettleReadKeepsTheOutcomeUnknownUntilItIsSettled() throws {
        let h = try Harness("settle", orgs: 1, accountsPerOrg: 1)
        defer { h.close() }
        let (org, client) = h.accounts[0]
        _ = org
        // The create makes its secret, then the connection drops: no answer at all.
        try h.faults(#"[{"method": "POST", "pathContains": "/secrets", "when": "after", "dropConnection": true, "times": 1}]"#)
        try h.ok(["enqueue", try h.requestFile([h.accounts[0]])])
        let worker = try h.startWorker(["--lease", "5", "--concurrency", "1"])
        defer { worker.stop() }
        // Once attempt 1 has ended (the job waits a lease before settling), the settle read fails.
        let conn = try h.connect()
        defer { conn.close() }
        #expect(try eventually(timeout: 20) {
            try conn.query("SELECT count(*) AS n FROM secret_job_attempts WHERE finished_at IS NOT NULL").rows[0]["n"].int() == 1
        })
        try h.faults(#"[{"method": "GET", "pathContains": "/serviceAccounts/", "status": 500, "times": 1}]"#)
        #expect(try eventually(timeout: 40) { try h.listJobs().first?.state == "succeeded" }, "\(worker.stderr.suffix(3000))")

        let job = try h.showJob(try #require(try h.listJobs().first).id)
        let sim = try h.state()
        let all = sim.account(client)?.secrets ?? []
        let live = sim.liveSecrets(client).map(\.id)
        // The lost secret was revoked and recorded; the job's own is the one live secret.
        #expect(all.count == 2, "\(all.map(\.id))")
        #expect(live == [job.secretId].compactMap { $0 }, "live \(live), job \(job.secretId ?? "-")")
        let lost = all.first { $0.createdAfterFailure == true }
        #expect(lost?.revokedAt != nil)
        #expect(job.revokedSecrets.map { $0["id"] } == [lost?.id])
        // The history: the lost create, the failed settle read, the success.
        #expect(job.history?.map(\.outcome) == ["retry", "retry", "succeeded"], "\(job.history?.map(\.outcome) ?? [])")
    }
}
