public import Foundation

/// Identifies one claimed attempt of a job; every write after the claim must match it.
public struct JobFence: Sendable, Hashable, CustomStringConvertible {
    public var jobId: Int64
    public var attempt: Int
    public var owner: String

    public init(jobId: Int64, attempt: Int, owner: String) {
        self.jobId = jobId
        self.attempt = attempt
        self.owner = owner
    }

    public var description: String { "job \(jobId) attempt \(attempt)" }
}

/// What the claim hands a lane.
public struct ClaimedJob: Sendable {
    public var job: Job
    public var fence: JobFence
    /// The attempt's start is recorded (an open history row, the known secrets): a try resumed
    /// in the same worker after waiting for its org need not record it again.
    public var startRecorded = false

    public init(job: Job, fence: JobFence, startRecorded: Bool = false) {
        self.job = job
        self.fence = fence
        self.startRecorded = startRecorded
    }
}

/// The queue's SQL: claim, fenced writes, rescue. Stateless; each call runs on the connection it
/// is given (the caller decides which thread owns it). Every write after the claim is fenced by
/// job id, attempt, owner and state `running`: a write that matches nothing returns false and
/// never overwrites.
public enum JobStore {
    /// Options of the claim, from the worker's flags.
    public struct ClaimOptions: Sendable {
        public var owner: String
        public var leaseSeconds: Double
        public var orphanPolicy: String
        public var batch: String?
        /// At most this many running jobs per organization, across all workers (nil: no cap).
        public var perOrgConcurrency: Int?
        /// Jobs started per organization per second, across all workers (nil: no pace).
        public var orgRatePerSecond: Double?
        /// Organizations to leave alone in this claim: the worker's gate knows them throttled.
        public var skipOrgs: [String] = []

        public init(owner: String, leaseSeconds: Double, orphanPolicy: String, batch: String? = nil,
                    perOrgConcurrency: Int? = nil, orgRatePerSecond: Double? = nil) {
            self.orgRatePerSecond = orgRatePerSecond
            self.owner = owner
            self.leaseSeconds = leaseSeconds
            self.orphanPolicy = orphanPolicy
            self.batch = batch
            self.perOrgConcurrency = perOrgConcurrency
        }
    }

    /// Claims up to `limit` runnable jobs in one statement (`claim_secret_jobs()`, see
    /// migrations/004_fair_claim.sql): at most one per service account (and no account that already
    /// has a running job), none of a throttled, paused or paced organization, priorities first, then
    /// organizations and batches in round robin, then oldest first; never more than `limit`.
    public static func claim(_ conn: PGConnection, limit: Int, options: ClaimOptions) throws(PGError) -> [ClaimedJob] {
        guard limit > 0 else { return [] }
        let query: PGQuery = """
            SELECT \(raw: Job.columns) FROM claim_secret_jobs(
                \(options.owner), \(limit), \(options.leaseSeconds), \(options.orphanPolicy),
                \(options.batch), \(options.perOrgConcurrency), \(options.orgRatePerSecond),
                \(options.skipOrgs.isEmpty ? nil : options.skipOrgs))
            """
        let result = try conn.query(query)
        return try result.rows.map { row throws(PGError) in
            let job = try Job(row: row)
            return ClaimedJob(job: job, fence: JobFence(jobId: job.id, attempt: job.attempts, owner: options.owner))
        }
    }

    /// The fence as a SQL condition on alias `j`.
    private static func fenced(_ f: JobFence) -> PGQuery {
        "j.id = \(f.jobId) AND j.attempts = \(f.attempt) AND j.lease_owner = \(f.owner) AND j.state = 'running'"
    }

    /// Records that the attempt is about to call Atlas (so a crash leaves a trace to reconcile),
    /// with the account's secret ids as seen before the job's first create when given (one
    /// statement, one commit). False when the attempt is superseded.
    public static func recordAttemptStarted(_ conn: PGConnection, _ f: JobFence, knownSecretIds: [String]? = nil) throws(PGError) -> Bool {
        let job: PGQuery = knownSecretIds.map { ids in
            "UPDATE secret_jobs j SET known_secret_ids = \(ids), known_secrets_attempt = j.attempts, updated_at = now() WHERE \(fenced(f)) RETURNING j.id"
        } ?? "SELECT j.id FROM secret_jobs j WHERE \(fenced(f))"
        // Idempotent: repeated after a lost reply, it finds its row and adds no second one.
        let q: PGQuery = """
            WITH j AS (\(job)), started AS (
                INSERT INTO secret_job_attempts (job_id, attempt, owner)
                SELECT id, \(f.attempt), \(f.owner) FROM j
                WHERE NOT EXISTS (SELECT 1 FROM secret_job_attempts a WHERE a.job_id = j.id
                                  AND a.attempt = \(f.attempt) AND a.owner = \(f.owner) AND a.finished_at IS NULL)
            )
            SELECT count(*) AS n FROM j
            """
        return try conn.query(q).rows[0]["n"].int() == 1
    }

    /// Whether the attempt still holds its job (a read: no write, no trigger).
    public static func holdsLease(_ conn: PGConnection, _ f: JobFence) throws(PGError) -> Bool {
        try conn.query("SELECT count(*) AS n FROM secret_jobs j WHERE \(fenced(f))").rows[0]["n"].int() == 1
    }

    /// Stores the account's secret ids as this job saw them before its create. False when superseded.
    public static func recordKnownSecrets(_ conn: PGConnection, _ f: JobFence, ids: [String], needsReconcile: Bool = false) throws(PGError) -> Bool {
        let q: PGQuery = """
            UPDATE secret_jobs j SET known_secret_ids = \(ids), known_secrets_attempt = j.attempts,
                needs_reconcile = \(needsReconcile), updated_at = now()
            WHERE \(fenced(f))
            """
        return try conn.execute(q) == 1
    }

    /// Appends revoked (or kept) secrets to the job's record. False when superseded.
    public static func recordRevocations(_ conn: PGConnection, _ f: JobFence, json: String) throws(PGError) -> Bool {
        let q: PGQuery = """
            UPDATE secret_jobs j SET updated_at = now(), revoked_secrets = j.revoked_secrets || coalesce((
                -- Idempotent: entries already recorded (a repeat after a lost reply) are not added twice.
                SELECT jsonb_agg(e) FROM jsonb_array_elements(\(json)::jsonb) e
                WHERE NOT j.revoked_secrets @> jsonb_build_array(jsonb_build_object('id', e->'id'))), '[]'::jsonb)
            WHERE \(fenced(f))
            """
        return try conn.execute(q) == 1
    }

    /// The success of an attempt, with what the attempt history needs.
    public struct Success: Sendable {
        public var secretId: String
        public var createdAt: Date
        public var expiresAt: Date
        public var maskedSecret: String
        public var ciphertext: [UInt8]
        public var keyId: String
        public var shortenedJSON: String
        public var httpStatus: Int
        public var durationMs: Int
    }

    /// Stores the result. Idempotent: a repeat of the same write after a lost connection finds the
    /// job already succeeded with this secret and reports true. False: superseded, nothing written.
    public static func complete(_ conn: PGConnection, _ f: JobFence, _ s: Success) throws(PGError) -> Bool {
        let q: PGQuery = """
            WITH done AS (
                UPDATE secret_jobs j
                SET state = 'succeeded', secret_id = \(s.secretId), secret_created_at = \(s.createdAt),
                    secret_expires_at = \(s.expiresAt), masked_secret = \(s.maskedSecret),
                    secret_ciphertext = \(s.ciphertext), secret_key_id = \(s.keyId),
                    shortened_secrets = \(s.shortenedJSON)::jsonb,
                    lease_owner = NULL, lease_expires_at = NULL, needs_reconcile = false,
                    finished_at = now(), updated_at = now(), last_http_status = \(s.httpStatus),
                    last_error_code = NULL, last_error_detail = NULL
                WHERE \(fenced(f))
                RETURNING j.id, j.org_id
            ), unpause AS (
                -- The org's credential works: a pause from an earlier refusal is over.
                UPDATE secret_org_pacing p SET paused_reason = NULL, paused_at = NULL, updated_at = now()
                FROM done WHERE p.org_id = done.org_id AND p.paused_reason IS NOT NULL
            ), history AS (
                UPDATE secret_job_attempts a
                SET finished_at = now(), outcome = 'succeeded', http_status = \(s.httpStatus),
                    duration_ms = \(s.durationMs), secret_id = \(s.secretId)
                FROM done WHERE a.job_id = done.id AND a.attempt = \(f.attempt) AND a.owner = \(f.owner)
                  AND a.finished_at IS NULL
            )
            SELECT (SELECT count(*) FROM done) AS written,
                   (SELECT count(*) FROM secret_jobs WHERE id = \(f.jobId) AND state = 'succeeded'
                        AND secret_id = \(s.secretId)) AS already
            """
        let row = try conn.query(q).rows[0]
        let written = try row["written"].int()
        let already = try row["already"].int()
        return written == 1 || already == 1
    }

    /// How an attempt that did not succeed ends.
    public enum Ending: Sendable {
        /// Back to the queue at `delay` seconds from now; the attempt stays spent.
        case retry(delay: Double, needsReconcile: Bool)
        /// Back to the queue without spending the attempt (throttled, shutting down).
        case giveBack(delay: Double, needsReconcile: Bool, outcome: String)
        /// Terminal.
        case fail
    }

    /// Ends an attempt that did not succeed, keeping Atlas's errorCode and detail. False: superseded.
    public static func finish(
        _ conn: PGConnection, _ f: JobFence, ending: Ending, errorCode: String, detail: String,
        httpStatus: Int?, durationMs: Int
    ) throws(PGError) -> Bool {
        let outcome: String
        let set: PGQuery
        var spendsAttempt = true
        switch ending {
        case .retry(let delay, let reconcile):
            outcome = "retry"
            set = """
                state = 'queued', run_at = now() + make_interval(secs => \(delay)), lease_owner = NULL,
                lease_expires_at = NULL, needs_reconcile = \(reconcile)
                """
        case .giveBack(let delay, let reconcile, let why):
            outcome = why
            spendsAttempt = false
            set = """
                state = 'queued', run_at = now() + make_interval(secs => \(delay)), lease_owner = NULL,
                lease_expires_at = NULL, needs_reconcile = \(reconcile), attempts = j.attempts - 1
                """
        case .fail:
            outcome = "failed"
            set = "state = 'failed', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL"
        }
        let q: PGQuery = """
            WITH ended AS (
                UPDATE secret_jobs j
                SET \(set), updated_at = now(), last_error_code = \(errorCode),
                    last_error_detail = \(detail), last_http_status = \(httpStatus)
                WHERE \(fenced(f))
                RETURNING j.id
            ), history AS (
                UPDATE secret_job_attempts a
                SET finished_at = now(), outcome = \(outcome), http_status = \(httpStatus),
                    error_code = \(errorCode), detail = \(detail), duration_ms = \(durationMs)
                FROM ended WHERE a.job_id = ended.id AND a.attempt = \(f.attempt) AND a.owner = \(f.owner)
                  AND a.finished_at IS NULL
                RETURNING a.id
            ), before_create AS (
                -- An attempt spent before its create (no credential, the account read failed) has
                -- no history row yet: add one, so that every spent attempt is in the history.
                INSERT INTO secret_job_attempts (job_id, attempt, owner, finished_at, outcome, http_status, error_code, detail, duration_ms)
                SELECT ended.id, \(f.attempt), \(f.owner), now(), \(outcome), \(httpStatus), \(errorCode), \(detail), \(durationMs)
                FROM ended WHERE \(spendsAttempt) AND NOT EXISTS (SELECT 1 FROM history)
            )
            SELECT count(*) AS n FROM ended
            """
        return try conn.query(q).rows[0]["n"].int() == 1
    }

    /// Records Atlas's throttle of an attempt that stays with this worker (parked until its org
    /// reopens): the job keeps its state and attempt, shows the throttle as its last error, and
    /// the attempt's open history row (if its create was under way) ends as `throttled`, so the
    /// next try opens a new one. Idempotent. False when superseded.
    public static func recordThrottled(
        _ conn: PGConnection, _ f: JobFence, errorCode: String, detail: String, httpStatus: Int?, durationMs: Int
    ) throws(PGError) -> Bool {
        let q: PGQuery = """
            WITH j AS (
                UPDATE secret_jobs j SET last_error_code = \(errorCode), last_error_detail = \(detail),
                    last_http_status = \(httpStatus), updated_at = now()
                WHERE \(fenced(f))
                RETURNING j.id
            ), history AS (
                UPDATE secret_job_attempts a
                SET finished_at = now(), outcome = 'throttled', http_status = \(httpStatus),
                    error_code = \(errorCode), detail = \(detail), duration_ms = \(durationMs)
                FROM j WHERE a.job_id = j.id AND a.attempt = \(f.attempt) AND a.owner = \(f.owner) AND a.finished_at IS NULL
            )
            SELECT count(*) AS n FROM j
            """
        return try conn.query(q).rows[0]["n"].int() == 1
    }

    /// Marks an attempt superseded in the history (its late write was refused).
    public static func recordSuperseded(_ conn: PGConnection, _ f: JobFence, detail: String) throws(PGError) {
        try conn.execute("""
            UPDATE secret_job_attempts SET finished_at = coalesce(finished_at, now()),
                outcome = 'superseded', detail = \(detail)
            WHERE job_id = \(f.jobId) AND attempt = \(f.attempt) AND owner = \(f.owner) AND outcome = 'started'
            """)
    }

    /// Renews the leases of the given attempts; returns the fences still held (the others were lost).
    public static func heartbeat(_ conn: PGConnection, owner: String, fences: [JobFence], leaseSeconds: Double) throws(PGError) -> Set<JobFence> {
        guard !fences.isEmpty else { return [] }
        let ids = fences.map(\.jobId)
        let attempts = fences.map { Int64($0.attempt) }
        let q: PGQuery = """
            UPDATE secret_jobs j SET lease_expires_at = now() + make_interval(secs => \(leaseSeconds))
            FROM unnest(\(ids)::bigint[], \(attempts)::bigint[]) AS held(id, attempt)
            WHERE j.id = held.id AND j.attempts = held.attempt AND j.lease_owner = \(owner) AND j.state = 'running'
            RETURNING j.id, j.attempts
            """
        var held = Set<JobFence>()
        for row in try conn.query(q).rows {
            held.insert(JobFence(jobId: try row["id"].int64(), attempt: try row["attempts"].int(), owner: owner))
        }
        return held
    }

    /// Returns expired leases to the queue in one statement that re-checks the lease at write
    /// time; their last attempt's outcome is unknown, so they are reconciled before running again.
    /// Returns the ids rescued.
    public static func rescueExpired(_ conn: PGConnection) throws(PGError) -> [Int64] {
        let q: PGQuery = """
            WITH expired AS (
                SELECT id FROM secret_jobs
                WHERE state = 'running' AND lease_expires_at < now()
                FOR UPDATE SKIP LOCKED
            ), rescued AS (
                UPDATE secret_jobs j
                SET state = 'queued', run_at = now(), needs_reconcile = true,
                    last_error_code = 'LEASE_EXPIRED',
                    last_error_detail = 'worker ' || j.lease_owner || ' stopped renewing its lease; the job was given back to the queue',
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
                FROM expired
                WHERE j.id = expired.id AND j.state = 'running' AND j.lease_expires_at < now()
                RETURNING j.id, j.attempts
            ), history AS (
                UPDATE secret_job_attempts a SET finished_at = now(), outcome = 'lease_expired'
                FROM rescued r WHERE a.job_id = r.id AND a.attempt = r.attempts AND a.finished_at IS NULL
            )
            SELECT id FROM rescued ORDER BY id
            """
        return try conn.query(q).rows.map { row throws(PGError) in try row["id"].int64() }
    }

    /// When the next queued job becomes runnable, in seconds from now (nil: nothing queued),
    /// counting its org's throttle and pause.
    public static func secondsUntilNextRunnable(_ conn: PGConnection, batch: String?) throws(PGError) -> Double? {
        let filter: PGQuery = batch.map { "AND j.batch = \($0)" } ?? ""
        let q: PGQuery = """
            SELECT extract(epoch FROM (min(greatest(j.run_at, p.not_before,
                       CASE WHEN p.paused_reason IS NOT NULL THEN p.paused_at + interval '5 minutes' END)) - now()))::float8 AS wait
            FROM secret_jobs j LEFT JOIN secret_org_pacing p ON p.org_id = j.org_id
            WHERE j.state = 'queued' \(filter)
            """
        let row = try conn.query(q).rows[0]
        return row["wait"].isNull ? nil : max(0, try row["wait"].double())
    }
}
