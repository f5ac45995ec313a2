/// One injected-failure rule, as posted to `POST /_sim/faults` in `rules`.
public struct FaultRule: Sendable, Equatable {
    /// Method to match (case-insensitive); nil matches any.
    public var method: String?
    /// Substring the request path must contain; nil matches any.
    public var pathContains: String?
    /// Organization (from the path) to match; nil matches any.
    public var orgId: String?
    /// Status to answer (500, 503, 429, 400, …); nil adds only latency or drops.
    public var status: Int?
    /// Strike before the operation (nothing happens) or after it (it happened).
    public var after: Bool
    /// Seconds for a `Retry-After` header.
    public var retryAfter: Int?
    /// The ApiError `errorCode`; a default per status when nil.
    public var errorCode: String?
    /// How many matching requests get it; nil = unlimited.
    public var times: Int?
    /// Extra latency for matching requests.
    public var latencyMs: Int?
    /// Close the socket without answering.
    public var dropConnection: Bool

    /// Creates a rule.
    public init(
        method: String? = nil, pathContains: String? = nil, orgId: String? = nil, status: Int? = nil,
        after: Bool = false, retryAfter: Int? = nil, errorCode: String? = nil, times: Int? = nil,
        latencyMs: Int? = nil, dropConnection: Bool = false
    ) {
        self.method = method
        self.pathContains = pathContains
        self.orgId = orgId
        self.status = status
        self.after = after
        self.retryAfter = retryAfter
        self.errorCode = errorCode
        self.times = times
        self.latencyMs = latencyMs
        self.dropConnection = dropConnection
    }

    /// Parses one rule object; the message names the bad field.
    static func parse(_ json: JSON) -> Result<FaultRule, RuleError> {
        guard case .object = json else { return .failure(RuleError("a rule must be an object")) }
        let known: Set = ["method", "pathContains", "orgId", "status", "when", "retryAfter", "errorCode", "times", "latencyMs", "dropConnection"]
        if let unknown = json.keys.first(where: { !known.contains($0) }) {
            return .failure(RuleError("unknown rule field \(unknown)"))
        }
        var rule = FaultRule()
        func string(_ key: String) throws(RuleError) -> String? {
            guard let v = json[key], v != .null else { return nil }
            guard let s = v.stringValue else { throw RuleError("\(key) must be a string") }
            return s
        }
        func int(_ key: String, _ range: ClosedRange<Int>) throws(RuleError) -> Int? {
            guard let v = json[key], v != .null else { return nil }
            guard let i = v.intValue, range.contains(i) else { throw RuleError("\(key) must be an integer in \(range)") }
            return i
        }
        do throws(RuleError) {
            rule.method = try string("method")?.uppercased()
            rule.pathContains = try string("pathContains")
            rule.orgId = try string("orgId")
            rule.status = try int("status", 100...599)
            switch try string("when") {
            case nil, "before": rule.after = false
            case "after": rule.after = true
            case let other?: throw RuleError("when must be before or after, not \(other)")
            }
            rule.retryAfter = try int("retryAfter", 0...86400)
            rule.errorCode = try string("errorCode")
            rule.times = try int("times", 0...Int.max)
            rule.latencyMs = try int("latencyMs", 0...600_000)
            if let d = json["dropConnection"], d != .null {
                guard let b = d.boolValue else { throw RuleError("dropConnection must be a boolean") }
                rule.dropConnection = b
            }
        } catch {
            return .failure(error)
        }
        return .success(rule)
    }

    func matches(method: String, path: String, orgId: String?) -> Bool {
        if let m = self.method, m != method.uppercased() { return false }
        if let p = pathContains, !path.contains(p) { return false }
        if let o = self.orgId, o != orgId { return false }
        return true
    }

    /// A bad rule.
    struct RuleError: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }
}

/// Faults in force: the random create-secret failures and the rules.
struct FaultSettings: Sendable {
    var failRate: Double = 0
    var failMode: SimulatorConfiguration.FailMode = .before
    var latencyMs = 0
    /// Rules with a stable id each, so a spent count can be refunded.
    var rules: [(id: Int, rule: FaultRule)] = []
    var nextRuleId = 1
}

/// What a matching fault does to a request.
struct FaultAction: Sendable {
    var status: Int?
    var errorCode: String?
    var retryAfter: Int?
    var dropConnection: Bool
    var after: Bool
    var ruleId: Int?
    var latencyMs: Int
}

/// The per-org token bucket policy posted to `/_sim/rate-limits`.
struct RateLimitSettings: Sendable {
    var capacity: Double
    var refillPerSecond: Double
    /// Answer 429 (true) or 400 with errorCode RATE_LIMITED (false).
    var style429: Bool
    /// Which headers go with answers (Atlas may leave any of them out).
    var headers: RateLimitHeaders = .all
}

/// `all`: `RateLimit-Limit` and `RateLimit-Remaining` on every answer, `Retry-After` on a
/// throttle; `retryAfter`: only `Retry-After`; `none`: no header at all.
enum RateLimitHeaders: String, Sendable {
    case all
    case retryAfter = "retry-after"
    case none
}

/// One org's token bucket.
struct TokenBucket: Sendable {
    var tokens: Double
    var updatedAt: Double

    /// Takes a token if one is there; otherwise gives the seconds until one is.
    mutating func take(now: Double, settings: RateLimitSettings) -> (ok: Bool, retryAfter: Int, remaining: Int) {
        tokens = min(settings.capacity, tokens + (now - updatedAt) * settings.refillPerSecond)
        updatedAt = now
        if tokens >= 1 {
            tokens -= 1
            return (true, 0, Int(tokens))
        }
        let wait = settings.refillPerSecond > 0 ? (1 - tokens) / settings.refillPerSecond : 3600
        return (false, max(1, Int(wait.rounded(.up))), 0)
    }
}

/// Counters reported by `/_sim/state`.
struct SimCounters: Sendable {
    var requests = 0
    var createSecret = 0
    var secretsCreated = 0
    var secretsRevoked = 0
    var tokensMinted: [String: Int] = [:]
    var tokensRevoked = 0
    var rejected429: [String: Int] = [:]
    var earlyRequests: [String: Int] = [:]
    /// Per org, the simulator clock (seconds) of its first and last rate-limited request: how
    /// long after the run's start each org began, and how long its schedule took.
    var firstRequestAt: [String: Double] = [:]
    var lastRequestAt: [String: Double] = [:]
    var faultsInjected = 0
    var digestChallenges = 0
    var authFailures = 0

    var json: JSON {
        func map(_ d: [String: Int]) -> JSON { .object(d.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) }) }
        func times(_ d: [String: Double]) -> JSON { .object(d.sorted { $0.key < $1.key }.map { ($0.key, .double($0.value)) }) }
        return .object([
            ("requests", .int(requests)),
            ("createSecret", .int(createSecret)),
            ("secretsCreated", .int(secretsCreated)),
            ("secretsRevoked", .int(secretsRevoked)),
            ("tokensMinted", map(tokensMinted)),
            ("tokensRevoked", .int(tokensRevoked)),
            ("rejected429", map(rejected429)),
            ("earlyRequests", map(earlyRequests)),
            ("firstRequestAt", times(firstRequestAt)),
            ("lastRequestAt", times(lastRequestAt)),
            ("faultsInjected", .int(faultsInjected)),
            ("digestChallenges", .int(digestChallenges)),
            ("authFailures", .int(authFailures)),
        ])
    }
}
