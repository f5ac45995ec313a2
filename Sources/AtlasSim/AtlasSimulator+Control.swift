import AtlasSecrets

/// The control API under `/_sim` (no auth, never under `/api`): faults, rate limits,
/// credential revocation and inspection.
extension AtlasSimulator {
    private func controlReply(_ status: Int, _ body: JSON) -> SimHTTPResponse {
        SimHTTPResponse(status: status, headers: [("Content-Type", "application/json")], body: body.serialized(pretty: true) + [10])
    }

    private func controlError(_ status: Int, _ message: String) -> SimHTTPResponse {
        controlReply(status, ["error": .string(message)])
    }

    func handleControl(_ request: SimHTTPRequest) -> SimHTTPResponse {
        let path = request.path
        switch (request.method, path) {
        case ("GET", "/_sim/state"):
            return controlReply(200, stateJSON())
        case ("GET", "/_sim/credentials"):
            return controlReply(200, credentialsFileJSON())
        case ("GET", "/_sim/faults"):
            return controlReply(200, faultsJSON())
        case ("DELETE", "/_sim/faults"):
            state.withLock { $0.faults = FaultSettings() }
            return controlReply(200, faultsJSON())
        case ("POST", "/_sim/faults"):
            return postFaults(request)
        case ("POST", "/_sim/rate-limits"):
            return postRateLimits(request)
        case ("DELETE", "/_sim/rate-limits"):
            state.withLock {
                $0.rateLimits = nil
                $0.buckets = [:]
            }
            return controlReply(200, ["rateLimits": nil])
        case ("POST", "/_sim/credentials/revoke"):
            guard let json = JSON.parse(request.body), let orgId = json["orgId"]?.stringValue else {
                return controlError(400, "body must be {\"orgId\": \"…\"}")
            }
            let found = state.withLock { s -> Bool in
                guard s.orgs[orgId] != nil else { return false }
                s.orgs[orgId]?.credentialsRevoked = true
                return true
            }
            return found ? controlReply(200, ["orgId": .string(orgId), "credentialsRevoked": true]) : controlError(404, "no org \(orgId)")
        default:
            if request.method == "GET", path.hasPrefix("/_sim/accounts/") {
                let clientId = String(path.dropFirst("/_sim/accounts/".count))
                let body = state.withLock { $0.accounts[clientId]?.stateJSON }
                return body.map { controlReply(200, $0) } ?? controlError(404, "no service account \(clientId)")
            }
            return controlError(404, "no control endpoint \(request.method) \(path)")
        }
    }

    private func faultsJSON() -> JSON {
        state.withLock { s in
            .object([
                ("failRate", .double(s.faults.failRate)),
                ("failMode", .string(s.faults.failMode.rawValue)),
                ("latencyMs", .int(s.faults.latencyMs)),
                ("rules", .array(s.faults.rules.map { (_, r) in
                    .object([
                        ("method", r.method.json), ("pathContains", r.pathContains.json), ("orgId", r.orgId.json),
                        ("status", r.status.map { .int($0) } ?? .null), ("when", .string(r.after ? "after" : "before")),
                        ("retryAfter", r.retryAfter.map { .int($0) } ?? .null), ("errorCode", r.errorCode.json),
                        ("times", r.times.map { .int($0) } ?? .null), ("latencyMs", r.latencyMs.map { .int($0) } ?? .null),
                        ("dropConnection", .bool(r.dropConnection)),
                    ])
                })),
            ])
        }
    }

    /// Sets the fields present; `rules`, when present, replaces the rule list.
    private func postFaults(_ request: SimHTTPRequest) -> SimHTTPResponse {
        guard let json = JSON.parse(request.body), case .object = json else { return controlError(400, "body must be a JSON object") }
        let known: Set = ["failRate", "failMode", "latencyMs", "rules"]
        if let unknown = json.keys.first(where: { !known.contains($0) }) { return controlError(400, "unknown field \(unknown)") }
        var failRate: Double?
        var failMode: SimulatorConfiguration.FailMode?
        var latency: Int?
        var rules: [FaultRule]?
        if let v = json["failRate"] {
            guard let d = v.doubleValue, (0...1).contains(d) else { return controlError(400, "failRate must be a number in 0...1") }
            failRate = d
        }
        if let v = json["failMode"] {
            guard let m = v.stringValue.flatMap(SimulatorConfiguration.FailMode.init(rawValue:)) else {
                return controlError(400, "failMode must be before, after or mixed")
            }
            failMode = m
        }
        if let v = json["latencyMs"] {
            guard let i = v.intValue, i >= 0 else { return controlError(400, "latencyMs must be a non-negative integer") }
            latency = i
        }
        if let v = json["rules"] {
            guard case let .array(items) = v else { return controlError(400, "rules must be an array") }
            var parsed: [FaultRule] = []
            for (n, item) in items.enumerated() {
                switch FaultRule.parse(item) {
                case let .success(rule): parsed.append(rule)
                case let .failure(error): return controlError(400, "rules[\(n)]: \(error.message)")
                }
            }
            rules = parsed
        }
        state.withLock { s in
            if let failRate { s.faults.failRate = failRate }
            if let failMode { s.faults.failMode = failMode }
            if let latency { s.faults.latencyMs = latency }
            if let rules {
                s.faults.rules = rules.map { rule in
                    defer { s.faults.nextRuleId += 1 }
                    return (s.faults.nextRuleId, rule)
                }
            }
        }
        return controlReply(200, faultsJSON())
    }

    private func postRateLimits(_ request: SimHTTPRequest) -> SimHTTPResponse {
        guard let json = JSON.parse(request.body), let perOrg = json["perOrg"],
            let capacity = perOrg["capacity"]?.doubleValue, capacity >= 1,
            let refill = perOrg["refillPerSecond"]?.doubleValue, refill >= 0
        else {
            return controlError(400, "body must be {\"perOrg\": {\"capacity\": N>=1, \"refillPerSecond\": R>=0}, \"style\": \"429\"|\"400\", \"headers\": \"all\"|\"retry-after\"|\"none\"}")
        }
        let style: Bool
        switch json["style"] {
        case nil, .string("429")?, .int(429)?: style = true
        case .string("400")?, .int(400)?: style = false
        default: return controlError(400, "style must be 429 or 400")
        }
        let headers: RateLimitHeaders
        switch json["headers"] {
        case nil: headers = .all
        case .string(let name)?:
            guard let h = RateLimitHeaders(rawValue: name) else { return controlError(400, "headers must be all, retry-after or none") }
            headers = h
        default: return controlError(400, "headers must be all, retry-after or none")
        }
        state.withLock {
            $0.rateLimits = RateLimitSettings(capacity: capacity, refillPerSecond: refill, style429: style, headers: headers)
            $0.buckets = [:]
        }
        return controlReply(200, [
            "perOrg": ["capacity": .double(capacity), "refillPerSecond": .double(refill)], "style": style ? "429" : "400",
            "headers": .string(headers.rawValue),
        ])
    }
}
