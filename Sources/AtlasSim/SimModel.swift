#if canImport(Glibc)
import Glibc
#endif
import AtlasSecrets
import Foundation

/// A secret the simulator issued; kept after revocation as history.
struct SecretRecord: Sendable {
    var id: String
    var value: String
    var createdAt: Int64
    var expiresAt: Int64
    var revokedAt: Int64?
    var lastUsedAt: Int64?
    /// Created by a request that was then answered with an injected failure.
    var createdAfterFailure = false

    var masked: String { "mdb_sa_sk_..." + value.suffix(4) }

    func isLive(at now: Int64) -> Bool { revokedAt == nil && expiresAt > now }

    /// The Atlas shape (`ServiceAccountSecret`): plaintext only when `withValue`.
    func atlasJSON(withValue: Bool, includeMasked: Bool = true) -> JSON {
        var pairs: [(String, JSON)] = [
            ("id", .string(id)),
            ("createdAt", .string(SimClock.iso(createdAt))),
            ("expiresAt", .string(SimClock.iso(expiresAt))),
            ("lastUsedAt", lastUsedAt.map { .string(SimClock.iso($0)) } ?? .null),
        ]
        if includeMasked { pairs.append(("maskedSecretValue", .string(masked))) }
        if withValue { pairs.append(("secret", .string(value))) }
        return .object(pairs)
    }

    /// The inspection shape for `/_sim/state`: plaintext, revocation, failure marker.
    var stateJSON: JSON {
        .object([
            ("id", .string(id)),
            ("secret", .string(value)),
            ("maskedSecretValue", .string(masked)),
            ("createdAt", .string(SimClock.iso(createdAt))),
            ("expiresAt", .string(SimClock.iso(expiresAt))),
            ("lastUsedAt", lastUsedAt.map { .string(SimClock.iso($0)) } ?? .null),
            ("revokedAt", revokedAt.map { .string(SimClock.iso($0)) } ?? .null),
            ("createdAfterFailure", .bool(createdAfterFailure)),
        ])
    }
}

/// A service account in an organization.
struct AccountRecord: Sendable {
    var orgId: String
    var clientId: String
    var name: String
    var description: String
    var roles: [String]
    var createdAt: Int64
    var secrets: [SecretRecord] = []

    func liveSecrets(at now: Int64) -> [SecretRecord] { secrets.filter { $0.isLive(at: now) } }

    /// The Atlas shape (`OrgServiceAccount`) with live secrets, masked only.
    func atlasJSON(now: Int64) -> JSON {
        .object([
            ("clientId", .string(clientId)),
            ("createdAt", .string(SimClock.iso(createdAt))),
            ("description", .string(description)),
            ("name", .string(name)),
            ("roles", .array(roles.map { .string($0) })),
            ("secrets", .array(liveSecrets(at: now).map { $0.atlasJSON(withValue: false) })),
        ])
    }

    var stateJSON: JSON {
        .object([
            ("orgId", .string(orgId)),
            ("clientId", .string(clientId)),
            ("name", .string(name)),
            ("secrets", .array(secrets.map(\.stateJSON))),
        ])
    }
}

/// An organization and its credential.
struct OrgRecord: Sendable {
    var id: String
    var accountIds: [String] = []
    var credential: SimCredential?
    var credentialsRevoked = false
}

/// A credential the simulator issued for one organization.
public enum SimCredential: Sendable, Equatable, CustomStringConvertible {
    /// A service account: OAuth client credentials.
    case serviceAccount(clientId: String, clientSecret: String)
    /// A programmatic API key: HTTP Digest.
    case apiKey(publicKey: String, privateKey: String)

    /// The JSON object the worker's credentials file holds for an org.
    public var fileJSON: JSON {
        switch self {
        case let .serviceAccount(id, secret): ["clientId": .string(id), "clientSecret": .string(secret)]
        case let .apiKey(pub, priv): ["publicKey": .string(pub), "privateKey": .string(priv)]
        }
    }

    /// Names the credential, never its secret part.
    public var description: String {
        switch self {
        case let .serviceAccount(id, _): "serviceAccount(\(id), secret: <redacted>)"
        case let .apiKey(pub, _): "apiKey(\(pub), private: <redacted>)"
        }
    }
}

/// An OAuth access token.
struct TokenRecord: Sendable {
    var clientId: String
    var orgId: String
    var expiresAt: Double
}

/// Time helpers: whole seconds since the epoch, ISO-8601 UTC with `Z`.
enum SimClock {
    static func now() -> Double { Date().timeIntervalSince1970 }
    static func seconds() -> Int64 { Int64(Date().timeIntervalSince1970) }

    /// `2024-08-05T10:00:00Z`
    static func iso(_ t: Int64) -> String {
        var time = time_t(t)
        var parts = tm()
        gmtime_r(&time, &parts)
        func pad(_ v: Int32, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))Z"
    }
}

/// Random values the simulator hands out: ids, secrets, keys (from `RAND_bytes`).
enum SimRandom {
    private static let alphanumerics = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)

    /// 24 lowercase hex digits, like an ObjectId.
    static func objectId() -> String { Hashing.hexString(Hashing.randomBytes(12)) }

    /// `count` random characters from `alphabet`, unbiased (rejection sampling).
    static func string(_ count: Int, from alphabet: [UInt8]) -> String {
        var out: [UInt8] = []
        let limit = 256 - (256 % alphabet.count)
        while out.count < count {
            for b in Hashing.randomBytes(count * 2) where Int(b) < limit && out.count < count {
                out.append(alphabet[Int(b) % alphabet.count])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `mdb_sa_sk_` + 40 random lowercase alphanumerics.
    static func secretValue() -> String { "mdb_sa_sk_" + string(40, from: alphanumerics) }

    /// An API key's public part: 8 lowercase letters.
    static func publicKey() -> String { string(8, from: Array("abcdefghijklmnopqrstuvwxyz".utf8)) }

    /// An API key's private part: a lowercase UUID.
    static func privateKey() -> String { UUID().uuidString.lowercased() }

    /// An opaque access token.
    static func accessToken() -> String {
        "sim." + string(64, from: Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8))
    }
}

/// A small deterministic RNG (SplitMix64) for fault decisions, so `--seed` reproduces a run.
struct SplitMix64: Sendable {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
