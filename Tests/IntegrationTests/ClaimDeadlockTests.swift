@testable import AtlasSecrets
import Foundation
import Synchronization
import Testing

/// The claim's two passes (migration 004) each update `secret_jobs` in a statement of their own,
/// and each statement's counter trigger locks its (batch, org, state) rows in key order; across
/// the two passes the order is the claim's round-robin order, not the key order. A statement that
/// moves jobs of several (batch, org)s at once (rescueExpired, a multi-org INSERT) locks in key
/// order: the two could wait for each other. The claim now locks the counters it will change up
/// front, skipping those another transaction holds, so it never waits on them.
extension JobStoreTests {
    /// Batch b: X = (b, org 2) and Y = (b, org 1) each have a job whose worker died (lease
    /// expired, X's claimed first) and a free queued job; 7 more (b, org)s have only a job blocked
    /// by its account's running job. A claim of 2 by w1: its first pass (8 pairs) takes X's job,
    /// its second Y's. rescueExpired returns X's and Y's dead jobs in one statement, locking Y's
    /// counters before X's. An uncommitted INSERT into Y (a producer) lines the two up so that the
    /// claim holds X and waits for Y while the rescue holds Y and waits for X. Both must succeed.
    @Test func claimSecondPassAndRescueDoNotDeadlock() throws {
        defer { db.drop() }
        let conn = try db.connect()
        defer { conn.close() }
        // The dead worker's jobs: X's claimed first, so Y's pair was served more recently.
        try insertJob(conn, org: 2, account: 0, batch: "b")
        #expect(try JobStore.claim(conn, limit: 1, options: options("dead")).count == 1)
        try insertJob(conn, org: 1, account: 0, batch: "b")
        #expect(try JobStore.claim(conn, limit: 1, options: options("dead")).count == 1)
        try conn.execute("UPDATE secret_jobs SET lease_expires_at = now() - interval '1 second' WHERE lease_owner = 'dead'")
        // Blocked pairs (b, org 10...16): their account runs a job of batch a (w1's own).
        for org in 10..<17 { try insertJob(conn, org: org, account: 0, batch: "a") }
        var onlyA = options("w1")
        onlyA.batch = "a"
        #expect(try JobStore.claim(conn, limit: 7, options: onlyA).count == 7)
        for org in 10..<17 { try insertJob(conn, org: org, account: 0, batch: "b") }
        // X's and Y's free jobs.
        try insertJob(conn, org: 2, account: 1, batch: "b")
        try insertJob(conn, org: 1, account: 1, batch: "b")

        let producer = try openProducerTransaction(db, org: 1, account: 2, batch: "b")
        defer { producer.close() }

        let url = db.url
        let rescue = Mutex<String?>(nil)
        let claim = Mutex<String?>(nil)
        onThread(after: 0) {
            do {
                let c = try PGConnection(url: url)
                defer { c.close() }
                let ids = try JobStore.rescueExpired(c)
                rescue.withLock { $0 = "rescued \(ids.count)" }
            } catch {
                rescue.withLock { $0 = "error \(error)" }
            }
        }
        Thread.sleep(forTimeInterval: 0.3)
        onThread(after: 0) {
            do {
                let c = try PGConnection(url: url)
                defer { c.close() }
                let got = try JobStore.claim(c, limit: 2, options: options("w1"))
                claim.withLock { $0 = "claimed \(got.map(\.job.orgId).sorted())" }
            } catch {
                claim.withLock { $0 = "error \(error)" }
            }
        }
        Thread.sleep(forTimeInterval: 0.3)
        try producer.execute("COMMIT")
        #expect(eventually(timeout: 10) { rescue.withLock { $0 } != nil && claim.withLock { $0 } != nil })
        let r = rescue.withLock { $0 } ?? "still waiting"
        let c = claim.withLock { $0 } ?? "still waiting"
        print("claim.deadlock: rescue \(r); claim \(c)")
        // The claim skips Y while the producer (and the rescue behind it) hold its counter: it
        // takes X's job, or both when Y came free in time; never a deadlock, never an error.
        let claimedX = "claimed \([TestIds.org(2)])"
        let claimedBoth = "claimed \([TestIds.org(1), TestIds.org(2)].sorted())"
        #expect(r == "rescued 2" && (c == claimedX || c == claimedBoth), "rescue: \(r); claim: \(c)")
    }
}
