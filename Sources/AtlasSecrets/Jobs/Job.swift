public import Foundation

/// One row of `secret_jobs`, as the worker and the CLI read it. Holds no plaintext secret.
public struct Job: Sendable, Equatable {
    public var id: Int64
    public var orgId: String
    public var clientId: String
    public var expiresAfterHours: Int
    public var idempotencyKey: String
    public var batch: String
    public var priority: Int
    public var state: JobState
    public var attempts: Int
    public var maxAttempts: Int
    public var runAt: Date
    public var leaseOwner: String?
    public var leaseExpiresAt: Date?
    public var createdAt: Date
    public var updatedAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var secretId: String?
    public var secretCreatedAt: Date?
    public var secretExpiresAt: Date?
    public var maskedSecret: String?
    public var secretKeyId: String?
    public var lastErrorCode: String?
    public var lastErrorDetail: String?
    public var lastHTTPStatus: Int?
    public var knownSecretIds: [String]?
    /// The attempt that read `knownSecretIds`: equal to `attempts` when the tries since were given
    /// back (throttled), so the read still stands.
    public var knownSecretsAttempt: Int?
    public var needsReconcile: Bool
    /// JSON array text: `[{"id", "reason", "action", "at"}]`.
    public var revokedSecrets: String
    /// JSON array text: `[{"id", "expiresAt"}]`.
    public var shortenedSecrets: String
    public var orphanPolicy: String?
}

/// One row of `secret_job_attempts`.
public struct JobAttempt: Sendable, Equatable {
    public var attempt: Int
    public var owner: String
    public var startedAt: Date
    public var finishedAt: Date?
    public var outcome: String
    public var httpStatus: Int?
    public var errorCode: String?
    public var detail: String?
    public var durationMs: Int?
    public var secretId: String?
}
