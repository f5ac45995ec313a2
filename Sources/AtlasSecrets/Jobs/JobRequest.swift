/// One request to create a secret, as read from a JSON Lines or CSV file (before it is a job).
public struct JobRequest: Sendable, Equatable, Hashable {
    public var orgId: String
    public var clientId: String
    public var secretExpiresAfterHours: Int
    /// The caller's key, or nil to derive one from the line's content and batch.
    public var idempotencyKey: String?
    public var priority: Int

    public init(orgId: String, clientId: String, secretExpiresAfterHours: Int, idempotencyKey: String? = nil, priority: Int = 0) {
        self.orgId = orgId
        self.clientId = clientId
        self.secretExpiresAfterHours = secretExpiresAfterHours
        self.idempotencyKey = idempotencyKey
        self.priority = priority
    }

    /// The organisation's bounds for `secretExpiresAfterHours` (`maxServiceAccountSecretValidityInHours`).
    public static let expiryHoursRange = 8...8760
}
