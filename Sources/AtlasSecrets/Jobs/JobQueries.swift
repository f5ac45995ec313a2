public import Foundation

/// Read-side queries for the CLI (`status`, `list`, `show`) and the operator's writes (`retry`,
/// `cancel`, `enqueue`). Each answers from an index or the counters table, never a full scan.
public enum JobQueries {
    /// Counts by state for a batch or org (from the trigger-kept counters).
    public struct Counts: Sendable, Equatable, Codable {
        public var queued = 0, running = 0, succeeded = 0, failed = 0, cancelled = 0
        public var total: Int { queued + running + succeeded + failed + cancelled }
        public var done: Int { succeeded + failed + cancelled }

        mutating func add(_ state: String, _ n: Int) {
            switch state {
            case "queued": queued += n
            case "running": running += n
            case "succeeded": succeeded += n
            case "failed": failed += n
            case "cancelled": cancelled += n
            default: break
            }
        }
    }

    /// One organization's line in `status`.
    public struct OrgStatus: Sendable, Codable, Equatable {
        public var orgId: String
        public var counts: Counts
        public var throttledUntil: Date?
        public var pausedReason: String?
    }

    /// Everything `status` shows.
    public struct Status: Sendable, Codable, Equatable {
        public var counts: Counts
        /// Jobs finished in the last 60 s, per second.
        public var ratePerSecond: Double
        public var topErrors: [ErrorCount]
        public var oldestQueuedSeconds: Double?
        public var orgs: [OrgStatus]
    }

    public struct ErrorCount: Sendable, Codable, Equatable {
        public var code: String
        public var count: Int
    }

    static func filter(batch: String?, org: String?) -> PGQuery {
        let b: PGQuery = batch.map { " AND batch = \($0)" } ?? ""
        let o: PGQuery = org.map { " AND org_id = \($0)" } ?? ""
        return "\(b)\(o)"
    }

    /// Counts by state only (cheap: the counters table).
    public static func counts(_ conn: PGConnection, batch: String?, org: String? = nil) throws(PGError) -> Counts {
        var counts = Counts()
        let q: PGQuery = "SELECT state, sum(n)::bigint AS n FROM secret_job_counts WHERE n <> 0 \(filter(batch: batch, org: org)) GROUP BY state"
        for row in try conn.query(q).rows {
            counts.add(try row["state"].string(), try row["n"].int())
        }
        return counts
    }

    /// The status of a batch, an org, or everything.
    public static func status(_ conn: PGConnection, batch: String?, org: String?) throws(PGError) -> Status {
        var counts = Counts()
        var byOrg: [String: Counts] = [:]
        let rows = try conn.query("""
            SELECT org_id, state, sum(n)::bigint AS n FROM secret_job_counts
            WHERE n <> 0 \(filter(batch: batch, org: org))
            GROUP BY org_id, state
            """).rows
        for row in rows {
            let n = try row["n"].int()
            let state = try row["state"].string()
            counts.add(state, n)
            byOrg[try row["org_id"].string(), default: Counts()].add(state, n)
        }
        let rate = try conn.query("""
            SELECT count(*)::float8 / 60 AS rate FROM secret_jobs
            WHERE finished_at > now() - interval '60 seconds' \(filter(batch: batch, org: org))
            """).rows[0]["rate"].double()
        let errors = try conn.query("""
            SELECT coalesce(last_error_code, 'UNKNOWN') AS code, count(*) AS n FROM secret_jobs
            WHERE state = 'failed' \(filter(batch: batch, org: org))
            GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5
            """).rows.map { row throws(PGError) in ErrorCount(code: try row["code"].string(), count: try row["n"].int()) }
        let oldest = try conn.query("""
            SELECT extract(epoch FROM now() - min(run_at))::float8 AS age FROM secret_jobs
            WHERE state = 'queued' AND run_at <= now() \(filter(batch: batch, org: org))
            """).rows[0]["age"]
        var pacing: [String: (Date?, String?)] = [:]
        let orgIds = Array(byOrg.keys)
        for row in try conn.query("""
            SELECT org_id, CASE WHEN not_before > now() THEN not_before END AS not_before,
                   CASE WHEN paused_at > now() - interval '5 minutes' THEN paused_reason END AS paused_reason
            FROM secret_org_pacing WHERE org_id = ANY(\(orgIds))
            """).rows {
            pacing[try row["org_id"].string()] = (try row["not_before"].optionalDate(), try row["paused_reason"].optionalString())
        }
        let orgs = byOrg.keys.sorted().map { id in
            OrgStatus(orgId: id, counts: byOrg[id]!, throttledUntil: pacing[id]?.0 ?? nil, pausedReason: pacing[id]?.1 ?? nil)
        }
        return Status(counts: counts, ratePerSecond: rate, topErrors: errors,
                      oldestQueuedSeconds: oldest.isNull ? nil : try oldest.double(), orgs: orgs)
    }

    /// Jobs, newest first, at most `limit`.
    public static func list(_ conn: PGConnection, state: JobState?, batch: String?, org: String?, limit: Int) throws(PGError) -> [Job] {
        let where_: PGQuery = state.map { "state = \($0.rawValue)" } ?? "TRUE"
        let f = filter(batch: batch, org: org)
        return try conn.query("""
            SELECT \(raw: Job.columns) FROM secret_jobs WHERE \(where_) \(f) ORDER BY id DESC LIMIT \(limit)
            """).rows.map { row throws(PGError) in try Job(row: row) }
    }

    /// One job and its attempts, oldest attempt first; nil when there is no such job.
    public static func show(_ conn: PGConnection, id: Int64) throws(PGError) -> (Job, [JobAttempt])? {
        guard let row = try conn.query("SELECT \(raw: Job.columns) FROM secret_jobs WHERE id = \(id)").rows.first else { return nil }
        let attempts = try conn.query("""
            SELECT \(raw: JobAttempt.columns) FROM secret_job_attempts WHERE job_id = \(id) ORDER BY id
            """).rows.map { row throws(PGError) in try JobAttempt(row: row) }
        return (try Job(row: row), attempts)
    }

    /// The encrypted secret of a succeeded job: (ciphertext, key id), nil when none.
    public static func sealedSecret(_ conn: PGConnection, id: Int64) throws(PGError) -> (state: JobState, sealed: [UInt8]?, keyId: String?)? {
        guard let row = try conn.query("""
            SELECT state, secret_ciphertext, secret_key_id FROM secret_jobs WHERE id = \(id)
            """).rows.first else { return nil }
        return (JobState(rawValue: try row["state"].string()) ?? .queued, try row["secret_ciphertext"].optionalBytes(),
                try row["secret_key_id"].optionalString())
    }

    /// Requeues failed (or cancelled) jobs with as many attempts again as they had (the attempt
    /// count itself never goes back: it is part of every write's fence), forgetting the account
    /// read they made (it may be days old); returns the ids requeued.
    public static func retry(_ conn: PGConnection, ids: [Int64]?, batch: String?) throws(PGError) -> [Int64] {
        let target: PGQuery
        if let ids {
            target = "id = ANY(\(ids)) AND state IN ('failed', 'cancelled')"
        } else {
            target = "state = 'failed' \(filter(batch: batch, org: nil))"
        }
        let rows = try conn.query("""
            UPDATE secret_jobs SET state = 'queued', max_attempts = least(100, attempts + max_attempts),
                known_secret_ids = NULL, known_secrets_attempt = NULL,
                run_at = now(), finished_at = NULL, updated_at = now()
            WHERE \(target) RETURNING id
            """).rows
        if !rows.isEmpty { _ = try conn.execute("SELECT pg_notify('atlas_secrets_jobs', '')") }
        return try rows.map { row throws(PGError) in try row["id"].int64() }.sorted()
    }

    /// Cancels jobs that have not started (queued), except those still settling an earlier
    /// create's unknown outcome (a secret may exist that only their next attempt will revoke);
    /// returns the ids cancelled.
    public static func cancel(_ conn: PGConnection, ids: [Int64]?, batch: String?) throws(PGError) -> [Int64] {
        let idFilter: PGQuery = ids.map { "id = ANY(\($0))" } ?? "TRUE"
        let target: PGQuery = "\(idFilter) \(filter(batch: batch, org: nil))"
        let rows = try conn.query("""
            UPDATE secret_jobs SET state = 'cancelled', finished_at = now(), updated_at = now(),
                last_error_code = 'CANCELLED', last_error_detail = 'cancelled by an operator'
            WHERE \(target) AND state = 'queued' AND NOT needs_reconcile RETURNING id
            """).rows
        return try rows.map { row throws(PGError) in try row["id"].int64() }.sorted()
    }

    /// States of the given ids (to explain ids that retry/cancel left alone).
    public static func states(_ conn: PGConnection, ids: [Int64]) throws(PGError) -> [Int64: JobState] {
        var out: [Int64: JobState] = [:]
        for row in try conn.query("SELECT id, state FROM secret_jobs WHERE id = ANY(\(ids))").rows {
            out[try row["id"].int64()] = JobState(rawValue: try row["state"].string())
        }
        return out
    }
}
