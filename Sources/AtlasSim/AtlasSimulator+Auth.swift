import AtlasSecrets
import Foundation

/// Authentication: OAuth 2.0 client credentials (token, revoke, Bearer) and HTTP Digest (RFC 7616).
extension AtlasSimulator {
    static let digestRealm = "MMS Public API"

    // MARK: API calls

    /// The org the request's credential belongs to, or the 401 to answer.
    func authenticate(_ request: SimHTTPRequest) -> Result<String, Reply> {
        guard let header = request.header("Authorization") else { return .failure(challenge(stale: false, "Authentication required.")) }
        if header.hasPrefix("Bearer ") {
            let token = String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
            let now = SimClock.now()
            let org: String? = state.withLock { s in
                guard let record = s.tokens[token] else { return nil }
                guard record.expiresAt > now, s.orgs[record.orgId]?.credentialsRevoked == false else { return nil }
                return record.orgId
            }
            if let org { return .success(org) }
            state.withLock { $0.counters.authFailures += 1 }
            var reply = Reply.error(401, SimErrorCode.unauthorized, "The access token is unknown, expired or revoked.")
            reply.headers.append(("WWW-Authenticate", "Bearer error=\"invalid_token\""))
            return .failure(reply)
        }
        if header.hasPrefix("Digest ") { return verifyDigest(String(header.dropFirst(7)), request) }
        return .failure(challenge(stale: false, "Unsupported authorization scheme."))
    }

    /// A 401 with a fresh Digest challenge.
    func challenge(stale: Bool, _ detail: String) -> Reply {
        let nowMs = Int64(SimClock.now() * 1000)
        let stamp = String(nowMs, radix: 16)
        let nonce = stamp + Hashing.hex(stamp + ":" + nonceKey, .sha256).prefix(32)
        state.withLock { $0.counters.digestChallenges += 1 }
        var reply = Reply.error(401, SimErrorCode.unauthorized, detail)
        reply.headers.append((
            "WWW-Authenticate",
            "Digest realm=\"\(AtlasSimulator.digestRealm)\", domain=\"\", nonce=\"\(nonce)\", "
                + "algorithm=\(configuration.digestAlgorithm.rawValue), qop=\"auth\", stale=\(stale)"
        ))
        return reply
    }

    private func verifyDigest(_ text: String, _ request: SimHTTPRequest) -> Result<String, Reply> {
        let fail = { (detail: String) -> Result<String, Reply> in
            self.state.withLock { $0.counters.authFailures += 1 }
            return .failure(self.challenge(stale: false, detail))
        }
        let p = AtlasSimulator.parseDigestParameters(text)
        guard let user = p["username"], let realm = p["realm"], let nonce = p["nonce"], let uri = p["uri"],
            let response = p["response"], let qop = p["qop"], let ncText = p["nc"], let cnonce = p["cnonce"]
        else { return fail("Digest authorization lacks a required parameter.") }
        guard realm == AtlasSimulator.digestRealm else { return fail("Wrong Digest realm.") }
        let algorithm = p["algorithm"] ?? "MD5"
        guard algorithm.caseInsensitiveCompare(configuration.digestAlgorithm.rawValue) == .orderedSame else {
            return fail("Digest algorithm \(algorithm) is not the one offered.")
        }
        guard qop == "auth" else { return fail("Digest qop must be auth.") }
        guard uri == request.target else { return fail("Digest uri does not match the request.") }
        guard ncText.count == 8, let nc = UInt32(ncText, radix: 16) else { return fail("Digest nc must be 8 hex digits.") }
        // The nonce is ours when its MAC checks out; its age says whether it is stale.
        guard nonce.count > 32 else { return fail("Unknown nonce.") }
        let stamp = String(nonce.dropLast(32))
        guard nonce.suffix(32) == Hashing.hex(stamp + ":" + nonceKey, .sha256).prefix(32), let issuedMs = Int64(stamp, radix: 16) else {
            return fail("Unknown nonce.")
        }
        let key: (orgId: String, privateKey: String)? = state.withLock { s in
            guard let k = s.apiKeys[user], s.orgs[k.orgId]?.credentialsRevoked == false else { return nil }
            return k
        }
        guard let key else { return fail("Unknown or revoked API key.") }
        let alg = configuration.digestAlgorithm
        let ha1 = Hashing.hex("\(user):\(realm):\(key.privateKey)", alg)
        let ha2 = Hashing.hex("\(request.method):\(uri)", alg)
        let expected = Hashing.hex("\(ha1):\(nonce):\(ncText):\(cnonce):\(qop):\(ha2)", alg)
        guard expected == response.lowercased() else { return fail("Digest response does not match.") }
        let now = SimClock.now()
        let expires = Double(issuedMs) / 1000 + configuration.nonceTTL
        if now > expires {
            state.withLock { $0.counters.authFailures += 1 }
            return .failure(challenge(stale: true, "The nonce has expired."))
        }
        let fresh = state.withLock { s -> Bool in
            var entry = s.nonceCounts[nonce] ?? (expires, [])
            guard entry.seen.insert(nc).inserted else { return false }
            s.nonceCounts[nonce] = entry
            if s.nonceCounts.count > s.noncePurgeAt {
                s.nonceCounts = s.nonceCounts.filter { $0.value.expires > now }
                s.noncePurgeAt = max(20_000, s.nonceCounts.count * 2)
            }
            return true
        }
        guard fresh else { return fail("Digest nc \(ncText) was already used with this nonce.") }
        return .success(key.orgId)
    }

    /// Parses `k=v, k2="v 2"` (quoted strings may hold commas and `\"`).
    static func parseDigestParameters(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        var i = text.startIndex
        while i < text.endIndex {
            while i < text.endIndex, text[i] == " " || text[i] == "," { i = text.index(after: i) }
            guard let eq = text[i...].firstIndex(of: "=") else { break }
            let name = text[i..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            i = text.index(after: eq)
            var value = ""
            if i < text.endIndex, text[i] == "\"" {
                i = text.index(after: i)
                while i < text.endIndex, text[i] != "\"" {
                    if text[i] == "\\", text.index(after: i) < text.endIndex { i = text.index(after: i) }
                    value.append(text[i])
                    i = text.index(after: i)
                }
                if i < text.endIndex { i = text.index(after: i) }
            } else {
                let end = text[i...].firstIndex(of: ",") ?? text.endIndex
                value = text[i..<end].trimmingCharacters(in: .whitespaces)
                i = end
            }
            out[name] = value
        }
        return out
    }

    // MARK: OAuth endpoints

    private func oauthError(_ status: Int, _ error: String, _ description: String) -> SimHTTPResponse {
        let body: JSON = .object([("error", .string(error)), ("error_description", .string(description))])
        var headers: [(name: String, value: String)] = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        if status == 401 { headers.append(("WWW-Authenticate", "Basic realm=\"\(AtlasSimulator.digestRealm)\"")) }
        return SimHTTPResponse(status: status, headers: headers, body: body.serialized())
    }

    /// `(clientId, secret)` from `Authorization: Basic …`.
    private func basicCredentials(_ request: SimHTTPRequest) -> (String, String)? {
        guard let header = request.header("Authorization"), header.hasPrefix("Basic "),
            let data = Data(base64Encoded: String(header.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
            let text = String(data: data, encoding: .utf8), let colon = text.firstIndex(of: ":")
        else { return nil }
        return (String(text[..<colon]), String(text[text.index(after: colon)...]))
    }

    /// Whether `clientId:secret` is a live secret of an account whose org is not revoked.
    private func checkClient(_ clientId: String, _ secret: String, markUsed: Bool) -> String? {
        let now = SimClock.seconds()
        return state.withLock { s -> String? in
            guard var account = s.accounts[clientId], s.orgs[account.orgId]?.credentialsRevoked == false,
                let i = account.secrets.firstIndex(where: { $0.value == secret && $0.isLive(at: now) })
            else { return nil }
            if markUsed {
                account.secrets[i].lastUsedAt = now
                s.accounts[clientId] = account
            }
            return account.orgId
        }
    }

    /// `POST /api/oauth/token` and `POST /api/oauth/revoke`.
    func handleOAuth(_ request: SimHTTPRequest) -> SimHTTPResponse {
        guard request.method == "POST" else {
            var r = oauthError(405, "invalid_request", "Use POST.")
            r.headers.append(("Allow", "POST"))
            return r
        }
        if let fault = state.withLock({ $0.decideFault(method: request.method, path: request.path, orgId: nil, isCreateSecret: false) }) {
            AtlasSimulator.sleep(ms: fault.latencyMs)
            if fault.dropConnection || fault.status != nil { return faultReply(fault, orgId: nil, operationSucceeded: nil) }
        }
        guard request.header("Content-Type")?.lowercased().hasPrefix("application/x-www-form-urlencoded") == true else {
            return oauthError(400, "invalid_request", "The body must be application/x-www-form-urlencoded.")
        }
        let form = SimHTTPRequest.parseForm(String(decoding: request.body, as: UTF8.self))
        func field(_ name: String) -> String? { form.first { $0.name == name }?.value }
        guard let (clientId, secret) = basicCredentials(request) else {
            return oauthError(401, "invalid_client", "Client authentication (HTTP Basic) is required.")
        }
        if request.path == "/api/oauth/revoke" {
            guard checkClient(clientId, secret, markUsed: false) != nil else {
                return oauthError(401, "invalid_client", "Client authentication failed.")
            }
            guard let token = field("token"), !token.isEmpty else { return oauthError(400, "invalid_request", "token is required.") }
            if let hint = field("token_type_hint"), hint != "access_token" {
                return oauthError(400, "unsupported_token_type", "Only access tokens can be revoked.")
            }
            let foreign = state.withLock { s -> Bool in
                guard let record = s.tokens[token] else { return false }
                guard record.clientId == clientId else { return true }
                s.tokens[token] = nil
                s.tokensByClient[clientId]?.removeAll { $0 == token }
                s.counters.tokensRevoked += 1
                return false
            }
            if foreign { return oauthError(400, "invalid_request", "The token was not issued to this client.") }
            return SimHTTPResponse(status: 200, headers: [("Cache-Control", "no-store")])
        }
        guard let grant = field("grant_type") else { return oauthError(400, "invalid_request", "grant_type is required.") }
        guard grant == "client_credentials" else {
            return oauthError(400, "unsupported_grant_type", "Only client_credentials is supported.")
        }
        guard let orgId = checkClient(clientId, secret, markUsed: true) else {
            state.withLock { $0.counters.authFailures += 1 }
            return oauthError(401, "invalid_client", "Client authentication failed.")
        }
        let now = SimClock.now()
        let ttl = configuration.tokenTTL
        let limit = configuration.maxTokensPerServiceAccount
        let token = SimRandom.accessToken()
        let minted = state.withLock { s -> Bool in
            var live = (s.tokensByClient[clientId] ?? []).filter { (s.tokens[$0]?.expiresAt ?? 0) > now }
            for gone in (s.tokensByClient[clientId] ?? []) where !live.contains(gone) { s.tokens[gone] = nil }
            guard live.count < limit else {
                s.tokensByClient[clientId] = live
                return false
            }
            s.tokens[token] = TokenRecord(clientId: clientId, orgId: orgId, expiresAt: now + Double(ttl))
            live.append(token)
            s.tokensByClient[clientId] = live
            s.counters.tokensMinted[clientId, default: 0] += 1
            return true
        }
        guard minted else {
            return oauthError(400, "invalid_request", "The service account already holds \(limit) active tokens; revoke some or wait for them to expire.")
        }
        let body: JSON = .object([("access_token", .string(token)), ("expires_in", .int(ttl)), ("token_type", "Bearer")])
        return SimHTTPResponse(status: 200, headers: [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body: body.serialized())
    }
}
