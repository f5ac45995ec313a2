@testable import AtlasSecrets
import Foundation
import Synchronization
import Testing

/// Claims take turns under one advisory lock (migration 004), held for the whole claim statement.
/// A producer that enqueues with a plain INSERT (or `enqueue_secret_job`) inside a transaction of
/// its own holds the (batch, org)'s counter row until it commits. A claim that waited for that row
/// under the advisory lock made every other worker's claim wait too; the claim now skips such a
/// (batch, org) until the producer commits.
extension JobStoreTests {
    /// Claims with a 3 s statement timeout; the outcome and the seconds it took.
    private func timedClaim(_ conn: PGConnection, _ options: JobStore.ClaimOptions) throws -> (String, Double) {
        try conn.execute("SET statement_timeout = '3s'")
        let start = ContinuousClock.now
        var outcome: String
        do {
            outcome = "claimed \(try JobStore.claim(conn, limit: 10, options: options).map(\.job.orgId).sorted())"
        } catch {
            outcome = "error \(error)"
        }
        return (outcome, OrgGate.seconds(ContinuousClock.now - start))
    }

    /// Org 0 (batch b) and org 5 (batch c) each have a queued job. A producer inserts another job
    /// of (b, org 0) in a transaction it has not committed yet. Worker w1's claim takes org 5's job
    /// at once, leaving (b, org 0) alone; so does w2's claim (nothing left for it); once the
    /// producer commits, org 0's jobs are claimed.
    @Test func anOpenProducerTransactionDoesNotStallAnotherWorkersClaim() throws {
        defer { db.drop() }
        let conn = try db.connect()
        defer { conn.close() }
        try insertJob(conn, org: 0, account: 0, batch: "b")
        try insertJob(conn, org: 5, account: 0, batch: "c")

        let producer = try openProducerTransaction(db, org: 0, account: 1, batch: "b")
        defer { producer.close() }

        let w1 = try db.connect()
        defer { w1.close() }
        let (first, firstWaited) = try timedClaim(w1, options("w1"))
        let w2 = try db.connect()
        defer { w2.close() }
        let (second, secondWaited) = try timedClaim(w2, options("w2"))
        try producer.execute("COMMIT")
        let (third, _) = try timedClaim(w1, options("w1"))
        print("claim.lockwait: w1 \(first) after \(String(format: "%.2f", firstWaited)) s; w2 \(second) after \(String(format: "%.2f", secondWaited)) s; after the commit \(third)")
        #expect(first == "claimed [\"\(TestIds.org(5))\"]" && firstWaited < 1, "w1: \(first) after \(firstWaited) s")
        #expect(second == "claimed []" && secondWaited < 1, "w2: \(second) after \(secondWaited) s")
        #expect(third == "claimed \([TestIds.org(0), TestIds.org(0)])", "after the producer's commit: \(third)")
    }

    /// The advisory lock's key is the same in every schema of the database (hashtext of a
    /// constant), while Migrator's own lock is per schema: two installations in two schemas of one
    /// database share the claim turn. A claim stalled in one installation (as above) stalls the
    /// claims of the other.
    @Test func aStalledClaimInOneSchemaDoesNotStallAnotherSchemasClaims() throws {
        defer { db.drop() }
        let other = try migratedDatabase("jobstore_other")
        defer { other.drop() }
        let conn = try db.connect()
        defer { conn.close() }
        try insertJob(conn, org: 0, account: 0, batch: "b")
        let otherConn = try other.connect()
        defer { otherConn.close() }
        try insertJob(otherConn, org: 0, account: 0, batch: "b")

        let producer = try openProducerTransaction(db, org: 0, account: 1, batch: "b")
        defer { producer.close() }
        let url = db.url
        onThread(after: 0) {
            guard let c = try? PGConnection(url: url) else { return }
            defer { c.close() }
            _ = try? JobStore.claim(c, limit: 1, options: options("w1"))
        }
        Thread.sleep(forTimeInterval: 0.5)

        try otherConn.execute("SET statement_timeout = '3s'")
        let start = ContinuousClock.now
        var outcome: String
        do {
            outcome = "claimed \(try JobStore.claim(otherConn, limit: 1, options: options("x1")).count)"
        } catch {
            outcome = "error \(error)"
        }
        let waited = OrgGate.seconds(ContinuousClock.now - start)
        try producer.execute("COMMIT")
        Thread.sleep(forTimeInterval: 0.5)
        #expect(outcome == "claimed 1" && waited < 1,
                "a claim in another schema waited \(String(format: "%.2f", waited)) s for this schema's claim: \(outcome)")
    }
}
