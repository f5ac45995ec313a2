import AtlasSecrets

/// Everything the simulator knows; lives inside one `Mutex` in `AtlasSimulator`.
struct SimState: Sendable {
    var orgs: [String: OrgRecord] = [:]
    var orgOrder: [String] = []
    /// Service accounts by clientId (client ids are global in Atlas).
    var accounts: [String: AccountRecord] = [:]
    /// API keys: public key -> (org, private key).
    var apiKeys: [String: (orgId: String, privateKey: String)] = [:]
    var tokens: [String: TokenRecord] = [:]
    /// Live tokens per service account, oldest first.
    var tokensByClient: [String: [String]] = [:]
    /// nc values seen per Digest nonce, and when each nonce expires (for purging).
    var nonceCounts: [String: (expires: Double, seen: Set<UInt32>)] = [:]
    /// Size at which expired nonces are next purged (doubles when most are still live).
    var noncePurgeAt = 20_000
    var faults = FaultSettings()
    var rateLimits: RateLimitSettings?
    var buckets: [String: TokenBucket] = [:]
    /// When the sim last told an org it may come back (Retry-After), epoch seconds.
    var retryAfterUntil: [String: Double] = [:]
    var counters = SimCounters()
    var rng: SplitMix64

    init(seed: UInt64) { rng = SplitMix64(state: seed) }

    // MARK: Seeding

    mutating func addOrg(_ orgId: String) -> Bool {
        guard orgs[orgId] == nil else { return false }
        orgs[orgId] = OrgRecord(id: orgId)
        orgOrder.append(orgId)
        return true
    }

    mutating func addAccount(_ account: AccountRecord) -> Bool {
        guard accounts[account.clientId] == nil, orgs[account.orgId] != nil else { return false }
        accounts[account.clientId] = account
        orgs[account.orgId]?.accountIds.append(account.clientId)
        return true
    }

    mutating func setCredential(_ credential: SimCredential, org orgId: String) {
        orgs[orgId]?.credential = credential
        if case let .apiKey(pub, priv) = credential { apiKeys[pub] = (orgId, priv) }
    }

    // MARK: Secrets

    enum CreateSecretOutcome {
        case created(SecretRecord)
        case noAccount
        case limit
    }

    /// Creates a secret: at most 2 live, older live ones shortened to expire within 7 days.
    mutating func createSecret(clientId: String, hours: Int, now: Int64, value: String, id: String, afterFailure: Bool) -> CreateSecretOutcome {
        guard var account = accounts[clientId] else { return .noAccount }
        if account.liveSecrets(at: now).count >= 2 { return .limit }
        let week: Int64 = 7 * 24 * 3600
        for i in account.secrets.indices where account.secrets[i].isLive(at: now) {
            account.secrets[i].expiresAt = min(account.secrets[i].expiresAt, now + week)
        }
        let secret = SecretRecord(
            id: id, value: value, createdAt: now, expiresAt: now + Int64(hours) * 3600,
            createdAfterFailure: afterFailure)
        account.secrets.append(secret)
        accounts[clientId] = account
        counters.secretsCreated += 1
        return .created(secret)
    }

    /// Revokes a secret that is not yet revoked; false when there is none with that id.
    mutating func revokeSecret(clientId: String, secretId: String, now: Int64) -> Bool {
        guard let i = accounts[clientId]?.secrets.firstIndex(where: { $0.id == secretId && $0.revokedAt == nil }) else {
            return false
        }
        accounts[clientId]?.secrets[i].revokedAt = now
        counters.secretsRevoked += 1
        return true
    }

    /// Deletes a service account; its tokens stop working.
    mutating func deleteAccount(clientId: String) {
        guard let account = accounts.removeValue(forKey: clientId) else { return }
        orgs[account.orgId]?.accountIds.removeAll { $0 == clientId }
        for token in tokensByClient.removeValue(forKey: clientId) ?? [] { tokens[token] = nil }
    }

    // MARK: Faults and rate limits

    /// The fault for this request, if any; consumes one use of a matching rule.
    mutating func decideFault(method: String, path: String, orgId: String?, isCreateSecret: Bool) -> FaultAction? {
        let baseLatency = faults.latencyMs
        for i in faults.rules.indices {
            let (id, rule) = faults.rules[i]
            guard rule.matches(method: method, path: path, orgId: orgId) else { continue }
            if let times = rule.times {
                if times <= 0 { continue }
                faults.rules[i].rule.times = times - 1
            }
            return FaultAction(
                status: rule.status, errorCode: rule.errorCode, retryAfter: rule.retryAfter,
                dropConnection: rule.dropConnection, after: rule.after, ruleId: id,
                latencyMs: baseLatency + (rule.latencyMs ?? 0))
        }
        if isCreateSecret, faults.failRate > 0, rng.unit() < faults.failRate {
            let after = switch faults.failMode {
            case .before: false
            case .after: true
            case .mixed: rng.unit() < 0.5
            }
            return FaultAction(status: 500, errorCode: nil, retryAfter: nil, dropConnection: false, after: after, ruleId: nil, latencyMs: baseLatency)
        }
        if baseLatency > 0 {
            return FaultAction(status: nil, errorCode: nil, retryAfter: nil, dropConnection: false, after: false, ruleId: nil, latencyMs: baseLatency)
        }
        return nil
    }

    /// Gives back the use of a rule whose "after" fault did not apply (the operation failed).
    mutating func refund(ruleId: Int) {
        guard let i = faults.rules.firstIndex(where: { $0.id == ruleId }), let t = faults.rules[i].rule.times else { return }
        faults.rules[i].rule.times = t + 1
    }

    /// Counts an early request and takes a rate-limit token for `orgId`.
    mutating func admit(orgId: String, now: Double) -> (ok: Bool, retryAfter: Int, limit: Int, remaining: Int)? {
        if let until = retryAfterUntil[orgId], now < until { counters.earlyRequests[orgId, default: 0] += 1 }
        guard let settings = rateLimits else { return nil }
        if counters.firstRequestAt[orgId] == nil { counters.firstRequestAt[orgId] = now }
        counters.lastRequestAt[orgId] = now
        var bucket = buckets[orgId] ?? TokenBucket(tokens: settings.capacity, updatedAt: now)
        let taken = bucket.take(now: now, settings: settings)
        buckets[orgId] = bucket
        if !taken.ok {
            counters.rejected429[orgId, default: 0] += 1
            retryAfterUntil[orgId] = now + Double(taken.retryAfter)
        }
        return (taken.ok, taken.retryAfter, Int(settings.capacity), taken.remaining)
    }

    // MARK: Inspection

    func stateJSON(now: Int64) -> JSON {
        var accountList: [JSON] = []
        for orgId in orgOrder {
            for clientId in orgs[orgId]?.accountIds ?? [] {
                if let a = accounts[clientId] { accountList.append(a.stateJSON) }
            }
        }
        let orgList: [JSON] = orgOrder.compactMap { id in
            guard let org = orgs[id] else { return nil }
            let kind: JSON = switch org.credential {
            case .serviceAccount?: "oauth"
            case .apiKey?: "digest"
            case nil: .null
            }
            return .object([
                ("orgId", .string(id)), ("credential", kind),
                ("credentialsRevoked", .bool(org.credentialsRevoked)),
                ("accounts", .int(org.accountIds.count)),
            ])
        }
        return .object([
            ("orgs", .array(orgList)),
            ("accounts", .array(accountList)),
            ("counters", counters.json),
        ])
    }
}
