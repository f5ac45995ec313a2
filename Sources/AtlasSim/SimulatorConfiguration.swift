public import AtlasSecrets

/// How the simulator behaves; every field has a documented default.
public struct SimulatorConfiguration: Sendable {
    /// Which kind of credential each seeded organization gets.
    public enum AuthMode: String, Sendable, CaseIterable {
        /// A service account per org (OAuth client credentials). The default.
        case oauth
        /// A programmatic API key pair per org (HTTP Digest).
        case digest
        /// Alternating by org: even index OAuth, odd index Digest.
        case mixed
    }

    /// When an injected failure strikes a create-secret call.
    public enum FailMode: String, Sendable, CaseIterable {
        /// Fail before creating: nothing is created.
        case before
        /// Create the secret, keep it live, then answer 500: the ambiguous case.
        case after
        /// Either, chosen by the seeded RNG, half and half.
        case mixed
    }

    /// Address to bind; only `127.0.0.1` (or `localhost`) is accepted. Default `127.0.0.1`.
    public var host = "127.0.0.1"
    /// Port; 0 (the default) picks an ephemeral one.
    public var port = 0
    /// Credential kind for seeded orgs. Default `.oauth`.
    public var auth: AuthMode = .oauth
    /// `expires_in` of minted OAuth tokens, seconds. Default 3600.
    public var tokenTTL: Int = 3600
    /// Live OAuth tokens allowed per service account. Default 100 (Atlas's limit).
    public var maxTokensPerServiceAccount = 100
    /// Digest algorithm offered in challenges. Default MD5 (what Atlas offers).
    public var digestAlgorithm: Hashing.Algorithm = .md5
    /// Seconds a Digest nonce stays valid. Default 30.
    public var nonceTTL: Double = 30
    /// Drop `maskedSecretValue` from the create-secret 201, as some real responses do. Default false.
    public var omitMaskedSecretValue = false
    /// Fraction (0...1) of create-secret calls answered 500 UNEXPECTED_ERROR. Default 0.
    public var failRate: Double = 0
    /// Whether those failures strike before or after creating. Default `.before`.
    public var failMode: FailMode = .before
    /// Latency added to every `/api` request, milliseconds. Default 0.
    public var latencyMs = 0
    /// Seed of the RNG that decides injected faults. Default 1.
    public var seed: UInt64 = 1
    /// Log one line per request to stderr. Default false.
    public var verbose = false
    /// Seconds an idle keep-alive connection is kept. Default 60.
    public var idleTimeoutSeconds = 60

    /// The defaults.
    public init() {}
}
