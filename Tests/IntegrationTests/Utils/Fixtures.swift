@testable import AtlasSecrets
import Foundation

/// A migrated schema for one suite.
func migratedDatabase(_ prefix: String) throws -> TestDatabase {
    let db = try TestDatabase(prefix: prefix)
    let conn = try db.connect()
    defer { conn.close() }
    _ = try Migrator(directory: Paths.repoRoot.appendingPathComponent("migrations").path).migrate(conn)
    return db
}

/// Deterministic ids for tests: org i, account j of org i.
enum TestIds {
    static func org(_ i: Int) -> String { String(format: "%024x", 0x0a0000 + i) }
    static func client(_ i: Int, _ j: Int) -> String { "mdb_sa_id_" + String(format: "%012x%012x", 0x0b0000 + i, j) }
}

/// Inserts `count` jobs with plain SQL: org `g % orgs`, account `g % accountsPerOrg` (or `g`: one each).
@discardableResult
func insertJobs(_ conn: PGConnection, count: Int, orgs: Int = 3, accountsPerOrg: Int? = nil, batch: String = "b",
                hours: Int = 24) throws -> [Int64] {
    let accountModulo = accountsPerOrg ?? Int(Int32.max)
    let rows = try conn.query("""
        INSERT INTO secret_jobs (org_id, client_id, expires_after_hours, batch)
        SELECT lpad(to_hex(655360 + (g % \(orgs))), 24, '0'),
               'mdb_sa_id_' || lpad(to_hex(720896 + (g % \(orgs))), 12, '0') || lpad(to_hex(g % \(accountModulo)), 12, '0'),
               \(hours), \(batch)
        FROM generate_series(0, \(count - 1)) AS g
        RETURNING id
        """).rows
    return try rows.map { try $0["id"].int64() }
}

/// Inserts one job with plain SQL: account `account` of org `org` (TestIds), in `batch`; its id.
@discardableResult
func insertJob(_ conn: PGConnection, org: Int, account: Int = 0, batch: String) throws -> Int64 {
    try conn.query("""
        INSERT INTO secret_jobs (org_id, client_id, expires_after_hours, batch)
        VALUES (\(TestIds.org(org)), \(TestIds.client(org, account)), 24, \(batch)) RETURNING id
        """).rows[0]["id"].int64()
}

/// A producer's transaction left open after inserting one job: it holds the (batch, org)'s queued
/// counter row until the caller commits (`COMMIT`) or closes the connection.
func openProducerTransaction(_ db: TestDatabase, org: Int, account: Int, batch: String) throws -> PGConnection {
    let producer = try db.connect()
    do {
        try producer.execute("BEGIN")
        try insertJob(producer, org: org, account: account, batch: batch)
        return producer
    } catch {
        producer.close()
        throw error
    }
}

/// Claim options for queue-level tests.
func options(_ owner: String, lease: Double = 30) -> JobStore.ClaimOptions {
    JobStore.ClaimOptions(owner: owner, leaseSeconds: lease, orphanPolicy: "revoke")
}

/// A stand-in result for queue-level tests (no real secret: the ciphertext is three bytes).
func success(_ secretId: String) -> JobStore.Success {
    JobStore.Success(secretId: secretId, createdAt: Date(), expiresAt: Date().addingTimeInterval(3600),
                     maskedSecret: "mdb_sa_sk_…abcd", ciphertext: [1, 2, 3], keyId: "k1", shortenedJSON: "[]",
                     httpStatus: 201, durationMs: 5)
}
