import Foundation

extension Job {
    /// The columns `Job(row:)` reads, for SELECT and RETURNING lists (prefix with a table alias as needed).
    static let columns = """
        id, org_id, client_id, expires_after_hours, idempotency_key, batch, priority, state, attempts, \
        max_attempts, run_at, lease_owner, lease_expires_at, created_at, updated_at, started_at, \
        finished_at, secret_id, secret_created_at, secret_expires_at, masked_secret, secret_key_id, \
        last_error_code, last_error_detail, last_http_status, known_secret_ids, known_secrets_attempt, needs_reconcile, \
        revoked_secrets::text AS revoked_secrets, shortened_secrets::text AS shortened_secrets, orphan_policy
        """

    /// Decodes a row selected with `Job.columns`.
    init(row: PGRow) throws(PGError) {
        let stateText = try row["state"].string()
        guard let state = JobState(rawValue: stateText) else {
            throw PGError(code: .badValue, message: "unknown job state \(stateText)", column: "state")
        }
        self.init(
            id: try row["id"].int64(),
            orgId: try row["org_id"].string(),
            clientId: try row["client_id"].string(),
            expiresAfterHours: try row["expires_after_hours"].int(),
            idempotencyKey: try row["idempotency_key"].string(),
            batch: try row["batch"].string(),
            priority: try row["priority"].int(),
            state: state,
            attempts: try row["attempts"].int(),
            maxAttempts: try row["max_attempts"].int(),
            runAt: try row["run_at"].date(),
            leaseOwner: try row["lease_owner"].optionalString(),
            leaseExpiresAt: try row["lease_expires_at"].optionalDate(),
            createdAt: try row["created_at"].date(),
            updatedAt: try row["updated_at"].date(),
            startedAt: try row["started_at"].optionalDate(),
            finishedAt: try row["finished_at"].optionalDate(),
            secretId: try row["secret_id"].optionalString(),
            secretCreatedAt: try row["secret_created_at"].optionalDate(),
            secretExpiresAt: try row["secret_expires_at"].optionalDate(),
            maskedSecret: try row["masked_secret"].optionalString(),
            secretKeyId: try row["secret_key_id"].optionalString(),
            lastErrorCode: try row["last_error_code"].optionalString(),
            lastErrorDetail: try row["last_error_detail"].optionalString(),
            lastHTTPStatus: try row["last_http_status"].optionalInt(),
            knownSecretIds: row["known_secret_ids"].isNull ? nil : try row["known_secret_ids"].stringArray(),
            knownSecretsAttempt: try row["known_secrets_attempt"].optionalInt(),
            needsReconcile: try row["needs_reconcile"].bool(),
            revokedSecrets: try row["revoked_secrets"].string(),
            shortenedSecrets: try row["shortened_secrets"].string(),
            orphanPolicy: try row["orphan_policy"].optionalString()
        )
    }
}

extension JobAttempt {
    static let columns = "attempt, owner, started_at, finished_at, outcome, http_status, error_code, detail, duration_ms, secret_id"

    init(row: PGRow) throws(PGError) {
        self.init(
            attempt: try row["attempt"].int(),
            owner: try row["owner"].string(),
            startedAt: try row["started_at"].date(),
            finishedAt: try row["finished_at"].optionalDate(),
            outcome: try row["outcome"].string(),
            httpStatus: try row["http_status"].optionalInt(),
            errorCode: try row["error_code"].optionalString(),
            detail: try row["detail"].optionalString(),
            durationMs: try row["duration_ms"].optionalInt(),
            secretId: try row["secret_id"].optionalString()
        )
    }
}
