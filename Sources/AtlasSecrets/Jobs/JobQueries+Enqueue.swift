import Foundation

extension JobQueries {
    /// What an enqueue run did.
    public struct EnqueueResult: Sendable, Equatable, Codable {
        /// Requests that became new jobs.
        public var inserted: Int
        /// Requests whose idempotency key already had a job for the same request.
        public var alreadyPresent: Int
        public var batch: String
    }

    /// A key already used by a job for a different request.
    public struct KeyConflict: Sendable, Equatable {
        public var request: ParsedRequest
        public var existingJobId: Int64
        public var existing: String
    }

    /// Inserts all requests in one transaction, or nothing: one statement over arrays, so a
    /// 100,000-line file is one round trip. Re-running the same file inserts nothing. A key
    /// that names a different existing request is a conflict: nothing is inserted and the
    /// conflicts are thrown as `EnqueueConflicts`.
    public static func enqueue(
        _ conn: PGConnection, _ requests: [ParsedRequest], batch: String, maxAttempts: Int
    ) throws -> EnqueueResult {
        let keys = requests.map { $0.request.effectiveIdempotencyKey(batch: batch) }
        return try conn.transaction { conn in
            let inserted = try conn.query("""
                INSERT INTO secret_jobs (org_id, client_id, expires_after_hours, idempotency_key, batch, priority, max_attempts)
                SELECT o, c, h, k, \(batch), p, \(maxAttempts)
                FROM unnest(\(requests.map(\.request.orgId))::text[], \(requests.map(\.request.clientId))::text[],
                            \(requests.map { Int64($0.request.secretExpiresAfterHours) })::int[], \(keys)::text[],
                            \(requests.map { Int64($0.request.priority) })::int[]) AS r(o, c, h, k, p)
                ON CONFLICT ON CONSTRAINT secret_jobs_idempotency_key_unique DO NOTHING
                RETURNING idempotency_key
                """).rows
            let new = Set(try inserted.map { row throws(PGError) in try row["idempotency_key"].string() })
            let others = zip(requests, keys).filter { !new.contains($0.1) }
            var conflicts: [KeyConflict] = []
            if !others.isEmpty {
                let rows = try conn.query("""
                    SELECT id, idempotency_key, org_id, client_id, expires_after_hours FROM secret_jobs
                    WHERE idempotency_key = ANY(\(others.map(\.1)))
                    """).rows
                var existing: [String: (Int64, String, String, Int)] = [:]
                for row in rows {
                    existing[try row["idempotency_key"].string()] = (
                        try row["id"].int64(), try row["org_id"].string(), try row["client_id"].string(),
                        try row["expires_after_hours"].int())
                }
                for (parsed, key) in others {
                    guard let e = existing[key] else { continue }
                    let r = parsed.request
                    if (e.1, e.2, e.3) != (r.orgId, r.clientId, r.secretExpiresAfterHours) {
                        conflicts.append(KeyConflict(
                            request: parsed, existingJobId: e.0,
                            existing: "org \(e.1), client \(e.2), \(e.3) hours"))
                    }
                }
                if !conflicts.isEmpty { throw EnqueueConflicts(conflicts: conflicts) }
            }
            return EnqueueResult(inserted: new.count, alreadyPresent: requests.count - new.count, batch: batch)
        }
    }

    /// Thrown inside the enqueue transaction so that it rolls back.
    public struct EnqueueConflicts: Error {
        public var conflicts: [KeyConflict]
    }
}
