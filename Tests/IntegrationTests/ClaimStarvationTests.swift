@testable import AtlasSecrets
import Foundation
import Testing

/// Claim (migration 004) looks at about twice as many (batch, org)s as its limit: a (batch, org)
/// whose due jobs are all blocked (their account runs a job of another batch, or has an unsettled
/// attempt waiting out its settle delay) must not hide a runnable one sorted after it.
extension JobStoreTests {
    /// 8 orgs' accounts run a job of batch `b1` and have another queued in batch `b2` (blocked:
    /// one running job per account); org 8 has a free job in `b2`. A claim of one job must find it.
    @Test func pairsBlockedByAnotherBatchDoNotHideARunnableJob() throws {
        defer { db.drop() }
        let conn = try db.connect()
        for org in 0..<8 { try insertJob(conn, org: org, batch: "b1") }
        #expect(try JobStore.claim(conn, limit: 8, options: options("other")).count == 8)
        for org in 0..<8 { try insertJob(conn, org: org, batch: "b2") }
        let free = try insertJob(conn, org: 8, batch: "b2")

        let claimed = try JobStore.claim(conn, limit: 1, options: options("w1"))
        #expect(claimed.map(\.job.id) == [free], "a runnable job was left queued: the claim only looked at blocked (batch, org)s")
    }

    /// One batch: 8 orgs' accounts each have an unsettled attempt waiting out its settle delay
    /// (a transport error: needs_reconcile, run_at a lease away), which blocks the account's other
    /// due job; org 8, served more recently, has a free job. The claim must still find it.
    @Test func pairsBlockedByAnUnsettledAttemptDoNotHideARunnableJob() throws {
        defer { db.drop() }
        let conn = try db.connect()
        for org in 0..<8 { try insertJob(conn, org: org, batch: "b") }
        let first = try JobStore.claim(conn, limit: 8, options: options("w0"))
        #expect(first.count == 8)
        for c in first {
            #expect(try JobStore.recordAttemptStarted(conn, c.fence, knownSecretIds: []))
            #expect(try JobStore.finish(conn, c.fence, ending: .retry(delay: 3600, needsReconcile: true), errorCode: "TRANSPORT_ERROR",
                                        detail: "timeout", httpStatus: nil, durationMs: 1))
        }
        for org in 0..<8 { try insertJob(conn, org: org, batch: "b") }
        // Org 8 was served after them (its pair's last start is the newest).
        try insertJob(conn, org: 8, account: 1, batch: "b")
        let served = try #require(try JobStore.claim(conn, limit: 1, options: options("w0")).first)
        #expect(served.job.orgId == TestIds.org(8))
        #expect(try JobStore.complete(conn, served.fence, success("aaaaaaaaaaaaaaaaaaaaaaaa")))
        let free = try insertJob(conn, org: 8, batch: "b")

        let claimed = try JobStore.claim(conn, limit: 1, options: options("w1"))
        #expect(claimed.map(\.job.id) == [free], "a runnable job was left queued: the claim only looked at blocked (batch, org)s")
    }
}
