import Foundation

/// Credential for one organization. description/debugDescription never show the secret part.
public enum AtlasCredential: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// OAuth 2.0 client credentials of a service account.
    case serviceAccount(clientId: String, clientSecret: String)
    /// A programmatic API key, used with HTTP Digest.
    case apiKey(publicKey: String, privateKey: String)

    /// The non-secret half: the client id or the public key.
    public var identity: String {
        switch self {
        case .serviceAccount(let clientId, _): clientId
        case .apiKey(let publicKey, _): publicKey
        }
    }

    public var description: String {
        switch self {
        case .serviceAccount(let clientId, _): "serviceAccount(clientId: \(clientId), clientSecret: <redacted>)"
        case .apiKey(let publicKey, _): "apiKey(publicKey: \(publicKey), privateKey: <redacted>)"
        }
    }

    public var debugDescription: String { description }

    /// Mirror (and so `dump`) shows only the non-secret half.
    public var customMirror: Mirror { Mirror(self, children: ["identity": identity], displayStyle: .enum) }
}

/// Why credentials could not be loaded; names the variable, file, org key or field, never a value.
public struct CredentialError: Error, CustomStringConvertible {
    /// What is wrong; extensible.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case incompleteEnvironment, conflictingEnvironment, fileUnreadable, insecureFile, invalidFile, invalidEntry
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        /// Half of an environment pair is set.
        public static let incompleteEnvironment = Code(.incompleteEnvironment)
        /// Both a service account and an API key are set in the environment.
        public static let conflictingEnvironment = Code(.conflictingEnvironment)
        /// The file is missing or cannot be read.
        public static let fileUnreadable = Code(.fileUnreadable)
        /// Group or other have access to the file.
        public static let insecureFile = Code(.insecureFile)
        /// Not JSON, or not `{"orgs": {…}}`.
        public static let invalidFile = Code(.invalidFile)
        /// One org entry is wrong; `orgKey` and `field` say where.
        public static let invalidEntry = Code(.invalidEntry)
        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String
    public var file: String?
    public var orgKey: String?
    public var field: String?

    /// An error from its parts.
    public init(code: Code, message: String, file: String? = nil, orgKey: String? = nil, field: String? = nil) {
        self.code = code
        self.message = message
        self.file = file
        self.orgKey = orgKey
        self.field = field
    }

    public var description: String { message }
}

/// Org id -> credential, plus a default from the environment.
public struct CredentialStore: Sendable {
    /// The credential for orgs not in the file, from the environment.
    public var defaultCredential: AtlasCredential?
    /// Per-org credentials from the file.
    public var orgs: [String: AtlasCredential]

    /// A store from its parts (tests, the simulator's demo).
    public init(defaultCredential: AtlasCredential? = nil, orgs: [String: AtlasCredential] = [:]) {
        self.defaultCredential = defaultCredential
        self.orgs = orgs
    }

    /// The org's own credential, else the default, else nil.
    public func credential(forOrg orgId: String) -> AtlasCredential? { orgs[orgId] ?? defaultCredential }

    /// No default and no per-org entry.
    public var isEmpty: Bool { defaultCredential == nil && orgs.isEmpty }

    /// environment: MONGODB_ATLAS_CLIENT_ID/_CLIENT_SECRET (service account) or
    /// MONGODB_ATLAS_PUBLIC_API_KEY/_PRIVATE_API_KEY give the default (both of a pair required).
    /// file: `--credentials`, else ATLAS_SECRETS_CREDENTIALS_FILE; refused unless mode 0600 or stricter.
    public static func load(environment: [String: String], file: String?) throws(CredentialError) -> CredentialStore {
        var store = CredentialStore()
        store.defaultCredential = try defaultFromEnvironment(environment)
        let path = nonEmpty(file) ?? nonEmpty(environment["ATLAS_SECRETS_CREDENTIALS_FILE"])
        if let path { store.orgs = try loadFile(path) }
        return store
    }

    private static func nonEmpty(_ s: String?) -> String? {
        guard let s, !s.isEmpty else { return nil }
        return s
    }

    private static func defaultFromEnvironment(_ env: [String: String]) throws(CredentialError) -> AtlasCredential? {
        func pair(_ a: String, _ b: String) throws(CredentialError) -> (String, String)? {
            switch (nonEmpty(env[a]), nonEmpty(env[b])) {
            case (nil, nil): return nil
            case (let x?, let y?): return (x, y)
            case (nil, _): throw CredentialError(code: .incompleteEnvironment, message: "\(b) is set but \(a) is not: set both or neither")
            case (_, nil): throw CredentialError(code: .incompleteEnvironment, message: "\(a) is set but \(b) is not: set both or neither")
            }
        }
        let sa = try pair("MONGODB_ATLAS_CLIENT_ID", "MONGODB_ATLAS_CLIENT_SECRET")
        let key = try pair("MONGODB_ATLAS_PUBLIC_API_KEY", "MONGODB_ATLAS_PRIVATE_API_KEY")
        if sa != nil, key != nil {
            throw CredentialError(
                code: .conflictingEnvironment,
                message: "both MONGODB_ATLAS_CLIENT_ID/_CLIENT_SECRET and MONGODB_ATLAS_PUBLIC_API_KEY/_PRIVATE_API_KEY are set: unset one pair")
        }
        if let (id, secret) = sa {
            guard AtlasIdentifier.isClientId(id) else {
                throw CredentialError(code: .incompleteEnvironment, message: "MONGODB_ATLAS_CLIENT_ID is not a service-account client id (mdb_sa_id_ followed by 24 hex characters)")
            }
            return .serviceAccount(clientId: id, clientSecret: secret)
        }
        if let (pub, priv) = key { return .apiKey(publicKey: pub, privateKey: priv) }
        return nil
    }

    private static func loadFile(_ path: String) throws(CredentialError) -> [String: AtlasCredential] {
        let data: Data
        switch readPrivateFile(path) {
        case .success(let d): data = d
        case .failure(let failure):
            switch failure {
            case .unreadable(let reason):
                throw CredentialError(code: .fileUnreadable, message: "credentials file \(path): \(reason)", file: path)
            case .insecure(let mode):
                throw CredentialError(
                    code: .insecureFile,
                    message: "credentials file \(path) is accessible by group or others (mode \(String(mode, radix: 8))): run chmod 600 \(path)",
                    file: path)
            }
        }
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CredentialError(code: .invalidFile, message: "credentials file \(path): not a JSON object", file: path)
        }
        guard let orgs = root["orgs"] as? [String: Any] else {
            throw CredentialError(code: .invalidFile, message: "credentials file \(path): expected {\"orgs\": {ORG_ID: {...}}}", file: path, field: "orgs")
        }
        var result: [String: AtlasCredential] = [:]
        for orgId in orgs.keys.sorted() {
            func bad(_ what: String, field: String? = nil) -> CredentialError {
                CredentialError(code: .invalidEntry, message: "credentials file \(path), org \(orgId): \(what)", file: path, orgKey: orgId, field: field)
            }
            guard AtlasIdentifier.isOrgId(orgId) else { throw bad("not an organization id (24 lowercase hex characters)") }
            guard let entry = orgs[orgId] as? [String: Any] else { throw bad("expected an object") }
            let known: Set = ["clientId", "clientSecret", "publicKey", "privateKey"]
            if let unknown = entry.keys.sorted().first(where: { !known.contains($0) }) {
                throw bad("unknown field \"\(unknown)\" (expected clientId+clientSecret or publicKey+privateKey)", field: unknown)
            }
            for (field, value) in entry {
                guard let s = value as? String, !s.isEmpty else { throw bad("field \"\(field)\" must be a non-empty string", field: field) }
            }
            let hasSA = entry["clientId"] != nil || entry["clientSecret"] != nil
            let hasKey = entry["publicKey"] != nil || entry["privateKey"] != nil
            switch (hasSA, hasKey) {
            case (false, false): throw bad("has neither clientId/clientSecret nor publicKey/privateKey")
            case (true, true): throw bad("has both a service account and an API key: keep one")
            case (true, false):
                guard let id = entry["clientId"] as? String else { throw bad("clientSecret without clientId", field: "clientId") }
                guard let secret = entry["clientSecret"] as? String else { throw bad("clientId without clientSecret", field: "clientSecret") }
                guard AtlasIdentifier.isClientId(id) else {
                    throw bad("clientId \"\(id)\" is not mdb_sa_id_ followed by 24 hex characters", field: "clientId")
                }
                result[orgId] = .serviceAccount(clientId: id, clientSecret: secret)
            case (false, true):
                guard let pub = entry["publicKey"] as? String else { throw bad("privateKey without publicKey", field: "publicKey") }
                guard let priv = entry["privateKey"] as? String else { throw bad("publicKey without privateKey", field: "privateKey") }
                result[orgId] = .apiKey(publicKey: pub, privateKey: priv)
            }
        }
        return result
    }
}

/// Why `readPrivateFile` refused a file.
enum PrivateFileFailure: Error {
    case unreadable(String)
    /// The file's permission bits.
    case insecure(mode: UInt32)
}

/// Reads a whole file that must not be accessible by group or others (checked on the open descriptor).
func readPrivateFile(_ path: String) -> Result<Data, PrivateFileFailure> {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return .failure(.unreadable(String(cString: strerror(errno)))) }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { return .failure(.unreadable(String(cString: strerror(errno)))) }
    guard (info.st_mode & S_IFMT) == S_IFREG else { return .failure(.unreadable("not a regular file")) }
    let mode = UInt32(info.st_mode) & 0o777
    guard mode & 0o077 == 0 else { return .failure(.insecure(mode: mode)) }
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return .failure(.unreadable(String(cString: strerror(errno))))
        }
        if n == 0 { break }
        data.append(contentsOf: buffer[0..<n])
        if data.count > 1 << 20 { return .failure(.unreadable("larger than 1 MiB")) }
    }
    return .success(data)
}
