import Foundation

/// The one media type the Atlas Admin API speaks for these endpoints, for `Accept` and bodies.
public let atlasMediaType = "application/vnd.atlas.2024-08-05+json"

/// A secret as Atlas returns it (`ServiceAccountSecret` in the OpenAPI spec).
///
/// `secret` is present only in the 201 of a create; it is the plaintext and must never be
/// logged, printed or stored unencrypted. `description` omits it.
public struct ServiceAccountSecret: Codable, Sendable, Equatable, CustomStringConvertible {
    public var id: String
    public var createdAt: String
    public var expiresAt: String
    public var lastUsedAt: String?
    public var maskedSecretValue: String?
    public var secret: String?

    public init(
        id: String, createdAt: String, expiresAt: String, lastUsedAt: String? = nil,
        maskedSecretValue: String? = nil, secret: String? = nil
    ) {
        self.id = id
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.lastUsedAt = lastUsedAt
        self.maskedSecretValue = maskedSecretValue
        self.secret = secret
    }

    public var description: String {
        "ServiceAccountSecret(id: \(id), createdAt: \(createdAt), expiresAt: \(expiresAt), masked: \(maskedSecretValue ?? "-"))"
    }
}

/// The body of a create-secret request (`ServiceAccountSecretRequest`).
public struct ServiceAccountSecretRequest: Codable, Sendable, Equatable {
    public var secretExpiresAfterHours: Int
    public init(secretExpiresAfterHours: Int) { self.secretExpiresAfterHours = secretExpiresAfterHours }
}

/// A service account as Atlas returns it (`OrgServiceAccount`); its secrets carry no values.
public struct OrgServiceAccount: Codable, Sendable, Equatable {
    public var clientId: String?
    public var createdAt: String?
    public var description: String?
    public var name: String?
    public var roles: [String]?
    public var secrets: [ServiceAccountSecret]?

    public init(
        clientId: String?, createdAt: String?, description: String?, name: String?,
        roles: [String]?, secrets: [ServiceAccountSecret]?
    ) {
        self.clientId = clientId
        self.createdAt = createdAt
        self.description = description
        self.name = name
        self.roles = roles
        self.secrets = secrets
    }
}

/// Atlas's error body (`ApiError`): `error` (the HTTP status) and `errorCode` are required.
public struct ApiError: Codable, Sendable, Equatable {
    public struct FieldViolation: Codable, Sendable, Equatable {
        public var description: String?
        public var field: String?
    }
    public struct BadRequestDetail: Codable, Sendable, Equatable {
        public var fields: [FieldViolation]?
    }
    public var error: Int
    public var errorCode: String
    public var detail: String?
    public var reason: String?
    public var parameters: [String]?
    public var badRequestDetail: BadRequestDetail?

    public init(
        error: Int, errorCode: String, detail: String? = nil, reason: String? = nil,
        parameters: [String]? = nil, badRequestDetail: BadRequestDetail? = nil
    ) {
        self.error = error
        self.errorCode = errorCode
        self.detail = detail
        self.reason = reason
        self.parameters = parameters
        self.badRequestDetail = badRequestDetail
    }
}

/// Identifier formats from the OpenAPI spec, shared by input validation, the client and the simulator.
public enum AtlasIdentifier {
    /// `^([a-f0-9]{24})$`
    public static func isOrgId(_ s: String) -> Bool { isHex24(s.utf8, allowUpper: false) }
    /// `^([a-f0-9]{24})$` (secret ids have the org id's shape)
    public static func isSecretId(_ s: String) -> Bool { isHex24(s.utf8, allowUpper: false) }
    /// `^mdb_sa_id_[a-fA-F\d]{24}$`
    public static func isClientId(_ s: String) -> Bool {
        let prefix = "mdb_sa_id_"
        guard s.hasPrefix(prefix) else { return false }
        return isHex24(s.utf8.dropFirst(prefix.utf8.count), allowUpper: true)
    }

    private static func isHex24<C: Collection>(_ bytes: C, allowUpper: Bool) -> Bool where C.Element == UInt8 {
        guard bytes.count == 24 else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x66) || (allowUpper && b >= 0x41 && b <= 0x46)
        }
    }
}
