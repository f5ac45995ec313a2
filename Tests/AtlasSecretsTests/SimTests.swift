#if canImport(Glibc)
import Glibc
#endif
import AtlasSecrets
import AtlasSim
import Foundation
import Testing

@Suite struct SimTests {
    static func date(_ json: JSON?) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return json?.stringValue.flatMap { f.date(from: $0) }
    }

    // MARK: Versioning and validation

    @Test func wrongOrMissingAcceptIs406InvalidVersionDate() throws {
        let h = try SimHarness()
        defer { h.stop() }
        let c = try h.client()
        let token = try h.token(0, c)
        let path = "/api/atlas/v2/orgs/\(AtlasSimulator.orgId(index: 0))/serviceAccounts"
        for accept in ["application/json", "application/vnd.atlas.2023-01-01+json"] {
            let r = try c.send("GET", path, headers: [("Authorization", "Bearer \(token)"), ("Accept", accept)])!
            #expect(r.status == 406)
            #expect(r.json?["errorCode"] == "INVALID_VERSION_DATE")
            #expect(r.json?["error"] == 406)
            #expect(r.json?["reason"] == "Not Acceptable")
            #expect(r.json?["parameters"] == [])
        }
        let missing = try c.send("GET", path, headers: [("Authorization", "Bearer \(token)")])!
        #expect(missing.status == 406)
        let ok = try h.call(c, token, "GET", path)
        #expect(ok.status == 200)
        #expect(ok.header("Content-Type") == atlasMediaType)
    }

    @Test func badPathParametersBodyAndMediaTypeAreRejectedNamingTheProblem() throws {
        let h = try SimHarness()
        defer { h.stop() }
        let c = try h.client()
        let token = try h.token(0, c)
        let org = AtlasSimulator.orgId(index: 0)
        let badClient = try h.call(c, token, "POST", "/api/atlas/v2/orgs/\(org)/serviceAccounts/mdb_sa_id_123/secrets", json: #"{"secretExpiresAfterHours":8}"#)
        #expect(badClient.status == 400)
        #expect(badClient.json?["errorCode"] == .string(SimErrorCode.invalidParameter))
        #expect(badClient.json?["detail"]?.stringValue?.contains("clientId") == true)
        let badOrg = try h.call(c, token, "GET", "/api/atlas/v2/orgs/\(org.dropLast())G/serviceAccounts")
        #expect(badOrg.status == 400)
        #expect(badOrg.json?["detail"]?.stringValue?.contains("orgId") == true)

        let path = SimHarness.secretsPath(org: 0, account: 0)
        for (body, code) in [(#"{"secretExpiresAfterHours":7}"#, SimErrorCode.validationError), (#"{"secretExpiresAfterHours":8761}"#, SimErrorCode.validationError),
                             (#"{"secretExpiresAfterHours":"8"}"#, SimErrorCode.validationError), ("{}", SimErrorCode.validationError),
                             ("{not json", SimErrorCode.invalidJSON), (#"{"secretExpiresAfterHours":8,"x":1}"#, SimErrorCode.invalidAttribute)] {
            let r = try h.call(c, token, "POST", path, json: body)
            #expect(r.status == 400, "\(body)")
            #expect(r.json?["errorCode"] == .string(code), "\(body)")
        }
        let bounds = try h.call(c, token, "POST", path, json: #"{"secretExpiresAfterHours":7}"#)
        #expect(bounds.json?["detail"]?.stringValue?.contains("between 8 and 8760") == true)
        #expect(bounds.json?["badRequestDetail"]?["fields"] == [["description": bounds.json!["detail"]!, "field": "secretExpiresAfterHours"]])

        let wrongType = try c.send("POST", path, headers: [("Authorization", "Bearer \(token)"), SimHarness.accept, ("Content-Type", "application/json")],
                                   body: Array(#"{"secretExpiresAfterHours":8}"#.utf8))!
        #expect(wrongType.status == 415)
        #expect(wrongType.json?["error"] == 415)
        let unknownAccount = try h.call(c, token, "POST", "/api/atlas/v2/orgs/\(org)/serviceAccounts/mdb_sa_id_\(String(repeating: "a", count: 24))/secrets", json: #"{"secretExpiresAfterHours":8}"#)
        #expect(unknownAccount.status == 404)
        #expect(unknownAccount.json?["errorCode"] == "RESOURCE_NOT_FOUND")
        #expect(try h.call(c, token, "GET", "/api/atlas/v2/orgs/\(org)/nothing").status == 404)
        #expect(h.sim.stateJSON()["counters"]?["secretsCreated"] == 0)
    }

    // MARK: Secrets

    @Test func createSecretAnswers201WithTheSpecShape() throws {
        let h = try SimHarness()
        defer { h.stop() }
        let c = try h.client()
        let token = try h.token(0, c)
        let r = try h.call(c, token, "POST", SimHarness.secretsPath(org: 0, account: 1), json: #"{"secretExpiresAfterHours":720}"#)
        #expect(r.status == 201)
        #expect(r.header("Content-Type") == atlasMediaType)
        let j = try #require(r.json)
        #expect(j.keys.sorted() == ["createdAt", "expiresAt", "id", "lastUsedAt", "maskedSecretValue", "secret"])
        #expect(AtlasIdentifier.isSecretId(j["id"]?.stringValue ?? ""))
        #expect(j["lastUsedAt"] == .null)
        #expect(j["createdAt"]?.stringValue?.hasSuffix("Z") == true)
        let created = try #require(SimTests.date(j["createdAt"]))
        let expires = try #require(SimTests.date(j["expiresAt"]))
        #expect(expires.timeIntervalSince(created) == 720 * 3600)
        let secret = try #require(j["secret"]?.stringValue)
        #expect(secret.range(of: "^mdb_sa_sk_[a-z0-9]{40}$", options: .regularExpression) != nil)
        #expect(j["maskedSecretValue"]?.stringValue == "mdb_sa_sk_..." + secret.suffix(4))
        // The account lists the secret masked, never its value.
        let account = try h.call(c, token, "GET", "/api/atlas/v2/orgs/\(AtlasSimulator.orgId(index: 0))/serviceAccounts/\(AtlasSimulator.clientId(org: 0, account: 1))")
        #expect(account.status == 200)
        #expect(account.json?["secrets"] == [["id": j["id"]!, "createdAt": j["createdAt"]!, "expiresAt": j["expiresAt"]!, "lastUsedAt": nil, "maskedSecretValue": j["maskedSecretValue"]!]])
        #expect(!account.text.contains(secret))
    }

    @Test func omitMaskedDropsTheMaskFromThe201() throws {
        let h = try SimHarness { $0.omitMaskedSecretValue = true }
        defer { h.stop() }
        let c = try h.client()
        let r = try h.call(c, try h.token(0, c), "POST", SimHarness.secretsPath(org: 0, account: 0), json: #"{"secretExpiresAfterHours":8}"#)
        #expect(r.status == 201)
        #expect(r.json?["maskedSecretValue"] == nil)
        #expect(r.json?["secret"]?.stringValue?.hasPrefix("mdb_sa_sk_") == true)
    }

    @Test func aThirdLiveSecretIsRefusedAndOlderSecretsShrinkToSevenDays() throws {
        let h = try SimHarness()
        defer { h.stop() }
        let c = try h.client()
        let token = try h.token(0, c)
        let path = SimHarness.secretsPath(org: 0, account: 0)
        let first = try h.call(c, token, "POST", path, json: #"{"secretExpiresAfterHours":8760}"#)
        #expect(first.status == 201)
        let firstExpiry = try #require(SimTests.date(first.json?["expiresAt"]))
        let second = try h.call(c, token, "POST", path, json: #"{"secretExpiresAfterHours":8760}"#)
        #expect(second.status == 201)
        let third = try h.call(c, token, "POST", path, json: #"{"secretExpiresAfterHours":8}"#)
        #expect(third.status == 400)
        #expect(third.json?["errorCode"] == .string(SimErrorCode.secretLimitExceeded))
        #expect(SimErrorCode.secretLimitExceeded == "SERVICE_ACCOUNT_SECRET_LIMIT_EXCEEDED")

        let account = try h.call(c, token, "GET", "/api/atlas/v2/orgs/\(AtlasSimulator.orgId(index: 0))/serviceAccounts/\(AtlasSimulator.clientId(org: 0, account: 0))")
        guard case let .array(secrets)? = account.json?["secrets"] else { Issue.record("no secrets"); return }
        #expect(secrets.count == 2)
        let shortened = try #require(SimTests.date(secrets.first { $0["id"] == first.json?["id"] }?["expiresAt"]))
        let created = try #require(SimTests.date(second.json?["createdAt"]))
        #expect(shortened < firstExpiry)
        #expect(shortened.timeIntervalSince(created) <= 7 * 24 * 3600)
        #expect(shortened.timeIntervalSince(created) >= 7 * 24 * 3600 - 2)

        // Deleting one frees a slot: 204, no body, kept in history as revoked.
        let secretId = first.json!["id"]!.stringValue!
        let deleted = try h.call(c, token, "DELETE", path + "/" + secretId)
        #expect(deleted.status == 204)
        #expect(deleted.body.isEmpty)
        #expect(try h.call(c, token, "DELETE", path + "/" + secretId).status == 404)
        #expect(try h.call(c, token, "POST", path, json: #"{"secretExpiresAfterHours":8}"#).status == 201)
        let history = try c.send("GET", "/_sim/accounts/\(AtlasSimulator.clientId(org: 0, account: 0))")!.json
        guard case let .array(all)? = history?["secrets"] else { Issue.record("no history"); return }
        #expect(all.count == 3)
        #expect(all.first { $0["id"] == .string(secretId) }?["revokedAt"] != .null)
    }

    // MARK: Auth

    /// An RFC 7616 Authorization header for `challenge`, computed here independently.
    static func digestAuthorization(_ challenge: String, user: String, password: String, method: String, uri: String, nc: Int, algorithm: Hashing.Algorithm = .md5) -> String {
        let nonce = challenge.components(separatedBy: "nonce=\"")[1].components(separatedBy: "\"")[0]
        let cnonce = "0a4f113b"
        let ncText = String(format: "%08x", nc)
        let ha1 = Hashing.hex("\(user):MMS Public API:\(password)", algorithm)
        let ha2 = Hashing.hex("\(method):\(uri)", algorithm)
        let response = Hashing.hex("\(ha1):\(nonce):\(ncText):\(cnonce):auth:\(ha2)", algorithm)
        return "Digest username=\"\(user)\", realm=\"MMS Public API\", nonce=\"\(nonce)\", uri=\"\(uri)\", algorithm=\(algorithm.rawValue), qop=auth, nc=\(ncText), cnonce=\"\(cnonce)\", response=\"\(response)\""
    }

    @Test(arguments: [Hashing.Algorithm.md5, .sha256])
    func digestChallengeThenComputedResponseSucceedsAndReplayFails(algorithm: Hashing.Algorithm) throws {
        let h = try SimHarness(orgs: 1) {
            $0.auth = .digest
            $0.digestAlgorithm = algorithm
        }
        defer { h.stop() }
        guard case let .apiKey(pub, priv) = h.credential(0) else { Issue.record("not digest"); return }
        let c = try h.client()
        let uri = "/api/atlas/v2/orgs/\(AtlasSimulator.orgId(index: 0))/serviceAccounts?itemsPerPage=10"
        let first = try c.send("GET", uri, headers: [SimHarness.accept])!
        #expect(first.status == 401)
        let challenge = try #require(first.header("WWW-Authenticate"))
        #expect(challenge.hasPrefix("Digest realm=\"MMS Public API\", domain=\"\", nonce=\""))
        #expect(challenge.hasSuffix("algorithm=\(algorithm.rawValue), qop=\"auth\", stale=false"))
        let auth1 = SimTests.digestAuthorization(challenge, user: pub, password: priv, method: "GET", uri: uri, nc: 1, algorithm: algorithm)
        let ok = try c.send("GET", uri, headers: [SimHarness.accept, ("Authorization", auth1)])!
        #expect(ok.status == 200)
        #expect(ok.json?["totalCount"] == 2)
        // The same nonce with the next nc works; a replayed nc does not.
        let auth2 = SimTests.digestAuthorization(challenge, user: pub, password: priv, method: "GET", uri: uri, nc: 2, algorithm: algorithm)
        #expect(try c.send("GET", uri, headers: [SimHarness.accept, ("Authorization", auth2)])!.status == 200)
        #expect(try c.send("GET", uri, headers: [SimHarness.accept, ("Authorization", auth2)])!.status == 401)
        // A wrong password or a uri that is not the request's fails.
        let wrong = SimTests.digestAuthorization(challenge, user: pub, password: priv + "x", method: "GET", uri: uri, nc: 3, algorithm: algorithm)
        #expect(try c.send("GET", uri, headers: [SimHarness.accept, ("Authorization", wrong)])!.status == 401)
        let otherURI = SimTests.digestAuthorization(challenge, user: pub, password: priv, method: "GET", uri: "/api/atlas/v2/x", nc: 4, algorithm: algorithm)
        #expect(try c.send("GET", uri, headers: [SimHarness.accept, ("Authorization", otherURI)])!.status == 401)
    }

    @Test func anExpiredNonceIsAnsweredStale() throws {
        let h = try SimHarness(orgs: 1) {
            $0.auth = .digest
            $0.nonceTTL = 0.2
        }
        defer { h.stop() }
        guard case let .apiKey(pub, priv) = h.credential(0) else { Issue.record("not digest"); return }
        let c = try h.client()
        let uri = "/api/atlas/v2/orgs/\(AtlasSimulator.orgId(index: 0))/serviceAccounts"
        let challenge = try #require(try c.send("GET", uri, headers: [SimHarness.accept])?.header("WWW-Authenticate"))
        usleep(400_000)
        let auth = SimTests.digestAuthorization(challenge, user: pub, password: priv, method: "GET", uri: uri, nc: 1)
        let stale = try c.send("GET", uri, headers: [SimHarness.accept, ("Authorization", auth)])!
        #expect(stale.status == 401)
        #expect(stale.header("WWW-Authenticate")?.hasSuffix("stale=true") == true)
    }

    @Test func oauthTokenThenBearerCallAndTheTokenEndpointsErrors() throws {
        let h = try SimHarness { $0.tokenTTL = 120 }
        defer { h.stop() }
        let c = try h.client()
        guard case let .serviceAccount(id, secret) = h.credential(0) else { Issue.record("not oauth"); return }
        let form = ("Content-Type", "application/x-www-form-urlencoded")
        let basic = "Basic " + Data("\(id):\(secret)".utf8).base64EncodedString()
        let minted = try c.send("POST", "/api/oauth/token", headers: [("Authorization", basic), form], body: Array("grant_type=client_credentials".utf8))!
        #expect(minted.status == 200)
        #expect(minted.json?["expires_in"] == 120)
        #expect(minted.json?["token_type"] == "Bearer")
        let token = try #require(minted.json?["access_token"]?.stringValue)
        #expect(try h.call(c, token, "GET", "/api/atlas/v2/orgs/\(AtlasSimulator.orgId(index: 0))/serviceAccounts").status == 200)

        let badSecret = "Basic " + Data("\(id):mdb_sa_sk_wrong".utf8).base64EncodedString()
        let denied = try c.send("POST", "/api/oauth/token", headers: [("Authorization", badSecret), form], body: Array("grant_type=client_credentials".utf8))!
        #expect(denied.status == 401)
        #expect(denied.json?["error"] == "invalid_client")
        let grant = try c.send("POST", "/api/oauth/token", headers: [("Authorization", basic), form], body: Array("grant_type=password".utf8))!
        #expect(grant.status == 400)
        #expect(grant.json?["error"] == "unsupported_grant_type")
        let noGrant = try c.send("POST", "/api/oauth/token", headers: [("Authorization", basic), form], body: [])!
        #expect(noGrant.json?["error"] == "invalid_request")

        // Revoked tokens and unknown tokens get a 401 ApiError.
        let revoked = try c.send("POST", "/api/oauth/revoke", headers: [("Authorization", basic), form], body: Array("token=\(token)&token_type_hint=access_token".utf8))!
        #expect(revoked.status == 200)
        let after = try h.call(c, token, "GET", "/api/atlas/v2/orgs/\(AtlasSimulator.orgId(index: 0))/serviceAccounts")
        #expect(after.status == 401)
        #expect(after.json?["error"] == 401)
        let state = h.sim.stateJSON()["counters"]
        #expect(state?["tokensMinted"]?[id] == 1)
        #expect(state?["tokensRevoked"] == 1)
    }

    @Test func aServiceAccountHoldsAtMostTheLimitOfLiveTokens() throws {
        let h = try SimHarness(orgs: 1, accounts: 0) { $0.maxTokensPerServiceAccount = 3 }
        defer { h.stop() }
        let c = try h.client()
        for _ in 0..<3 { _ = try h.token(0, c) }
        #expect(throws: SimRawClient.Failure.self) { try h.token(0, c) }
    }

    @Test func aCredentialOnlyWorksForItsOwnOrgAndRevocationEndsIt() throws {
        let h = try SimHarness()
        defer { h.stop() }
        let c = try h.client()
        let token = try h.token(0, c)
        let other = try h.call(c, token, "GET", "/api/atlas/v2/orgs/\(AtlasSimulator.orgId(index: 1))/serviceAccounts")
        #expect(other.status == 403)
        #expect(other.json?["errorCode"] == .string(SimErrorCode.forbidden))
        let post = try h.call(c, token, "POST", SimHarness.secretsPath(org: 1, account: 0), json: #"{"secretExpiresAfterHours":8}"#)
        #expect(post.status == 403)

        let revoke = try c.send("POST", "/_sim/credentials/revoke", body: Array(#"{"orgId":"\#(AtlasSimulator.orgId(index: 0))"}"#.utf8))!
        #expect(revoke.status == 200)
        #expect(try h.call(c, token, "GET", "/api/atlas/v2/orgs/\(AtlasSimulator.orgId(index: 0))/serviceAccounts").status == 401)
        #expect(throws: SimRawClient.Failure.self) { try h.token(0, c) }
    }

    // MARK: Faults and rate limits

    @Test func a500AfterCreateLeavesALiveSecretMarkedInState() throws {
        let h = try SimHarness()
        defer { h.stop() }
        let c = try h.client()
        let token = try h.token(0, c)
        let rule = #"{"rules":[{"method":"POST","pathContains":"/secrets","status":500,"when":"after","times":1}]}"#
        #expect(try c.send("POST", "/_sim/faults", body: Array(rule.utf8))?.status == 200)
        let path = SimHarness.secretsPath(org: 0, account: 0)
        let failed = try h.call(c, token, "POST", path, json: #"{"secretExpiresAfterHours":8}"#)
        #expect(failed.status == 500)
        #expect(failed.json?["errorCode"] == "UNEXPECTED_ERROR")
        #expect(failed.json?["secret"] == nil)
        // The lost secret is live: the account lists it, and the state marks it.
        let account = try h.call(c, token, "GET", "/api/atlas/v2/orgs/\(AtlasSimulator.orgId(index: 0))/serviceAccounts/\(AtlasSimulator.clientId(org: 0, account: 0))")
        guard case let .array(live)? = account.json?["secrets"] else { Issue.record("no secrets"); return }
        #expect(live.count == 1)
        let inspected = try c.send("GET", "/_sim/accounts/\(AtlasSimulator.clientId(org: 0, account: 0))")!.json
        #expect(inspected?["secrets"]?.arrayFirst?["createdAfterFailure"] == true)
        #expect(inspected?["secrets"]?.arrayFirst?["id"] == live[0]["id"])
        // The rule is spent: the next create succeeds.
        #expect(try h.call(c, token, "POST", path, json: #"{"secretExpiresAfterHours":8}"#).status == 201)
        #expect(h.sim.stateJSON()["counters"]?["faultsInjected"] == 1)
    }

    @Test func aBeforeFaultCreatesNothingAndDropConnectionClosesWithoutAnswer() throws {
        let h = try SimHarness()
        defer { h.stop() }
        let c = try h.client()
        let token = try h.token(0, c)
        let rules = #"{"rules":[{"pathContains":"/secrets","status":503,"retryAfter":3,"times":1},{"pathContains":"/secrets","dropConnection":true,"when":"after","times":1}]}"#
        #expect(try c.send("POST", "/_sim/faults", body: Array(rules.utf8))?.status == 200)
        let path = SimHarness.secretsPath(org: 0, account: 1)
        let unavailable = try h.call(c, token, "POST", path, json: #"{"secretExpiresAfterHours":8}"#)
        #expect(unavailable.status == 503)
        #expect(unavailable.header("Retry-After") == "3")
        #expect(h.sim.stateJSON()["counters"]?["secretsCreated"] == 0)
        #expect(try c.send("POST", path, headers: [("Authorization", "Bearer \(token)"), SimHarness.accept, SimHarness.contentType],
                           body: Array(#"{"secretExpiresAfterHours":8}"#.utf8)) == nil)
        #expect(h.sim.stateJSON()["counters"]?["secretsCreated"] == 1)
        #expect(try h.client().send("DELETE", "/_sim/faults")?.status == 200)
    }

    @Test func a429RuleCarriesRetryAfterAndRateLimitHeaders() throws {
        let h = try SimHarness()
        defer { h.stop() }
        let c = try h.client()
        let token = try h.token(0, c)
        let rule = #"{"rules":[{"status":429,"retryAfter":2,"times":1}]}"#
        #expect(try c.send("POST", "/_sim/faults", body: Array(rule.utf8))?.status == 200)
        let r = try h.call(c, token, "POST", SimHarness.secretsPath(org: 0, account: 0), json: #"{"secretExpiresAfterHours":8}"#)
        #expect(r.status == 429)
        #expect(r.json?["errorCode"] == "RATE_LIMITED")
        #expect(r.header("Retry-After") == "2")
        #expect(r.header("RateLimit-Remaining") == "0")
        #expect(r.header("RateLimit-Limit") != nil)
        // Coming back at once is an early request.
        _ = try h.call(c, token, "GET", "/api/atlas/v2/orgs/\(AtlasSimulator.orgId(index: 0))/serviceAccounts")
        #expect(h.sim.stateJSON()["counters"]?["earlyRequests"]?[AtlasSimulator.orgId(index: 0)] == 1)
    }

    @Test(arguments: ["429", "400"])
    func aPerOrgTokenBucketRejectsWithRetryAfterAndCounts(style: String) throws {
        let h = try SimHarness()
        defer { h.stop() }
        let c = try h.client()
        let token = try h.token(0, c)
        let body = #"{"perOrg":{"capacity":2,"refillPerSecond":0.5},"style":"\#(style)"}"#
        #expect(try c.send("POST", "/_sim/rate-limits", body: Array(body.utf8))?.status == 200)
        let path = "/api/atlas/v2/orgs/\(AtlasSimulator.orgId(index: 0))/serviceAccounts"
        let first = try h.call(c, token, "GET", path)
        #expect(first.status == 200)
        #expect(first.header("RateLimit-Limit") == "2")
        #expect(first.header("RateLimit-Remaining") == "1")
        #expect(try h.call(c, token, "GET", path).status == 200)
        let limited = try h.call(c, token, "GET", path)
        #expect(limited.status == Int(style))
        #expect(limited.json?["errorCode"] == "RATE_LIMITED")
        #expect(limited.header("Retry-After") == "2")
        _ = try h.call(c, token, "GET", path)
        let counters = h.sim.stateJSON()["counters"]
        #expect(counters?["rejected429"]?[AtlasSimulator.orgId(index: 0)] == 2)
        #expect(counters?["earlyRequests"]?[AtlasSimulator.orgId(index: 0)] == 1)
    }

    @Test func failRateWithASeedFailsAboutThatShareOfCreates() throws {
        let h = try SimHarness(orgs: 1, accounts: 40) {
            $0.failRate = 0.5
            $0.failMode = .after
            $0.seed = 42
        }
        defer { h.stop() }
        let c = try h.client()
        let token = try h.token(0, c)
        var failures = 0
        for j in 0..<40 {
            let r = try h.call(c, token, "POST", SimHarness.secretsPath(org: 0, account: j), json: #"{"secretExpiresAfterHours":8}"#)
            if r.status == 500 { failures += 1 } else { #expect(r.status == 201) }
        }
        #expect((8...32).contains(failures))
        let counters = h.sim.stateJSON()["counters"]
        #expect(counters?["secretsCreated"] == 40)  // "after": every call created its secret
        #expect(counters?["faultsInjected"] == .int(failures))
    }

    // MARK: State, service accounts, startup

    @Test func stateListsAccountsSecretsInPlaintextAndCounters() throws {
        let h = try SimHarness(orgs: 1, accounts: 1)
        defer { h.stop() }
        let c = try h.client()
        let token = try h.token(0, c)
        let created = try h.call(c, token, "POST", SimHarness.secretsPath(org: 0, account: 0), json: #"{"secretExpiresAfterHours":8}"#)
        let state = try #require(try c.send("GET", "/_sim/state")?.json)
        guard case let .array(accounts)? = state["accounts"] else { Issue.record("no accounts"); return }
        let account = try #require(accounts.first { $0["clientId"] == .string(AtlasSimulator.clientId(org: 0, account: 0)) })
        #expect(account["orgId"] == .string(AtlasSimulator.orgId(index: 0)))
        #expect(account["secrets"]?.arrayFirst?["secret"] == created.json?["secret"])
        #expect(account["secrets"]?.arrayFirst?["revokedAt"] == .null)
        #expect(account["secrets"]?.arrayFirst?["createdAfterFailure"] == false)
        #expect(state["counters"]?["createSecret"] == 1)
        #expect(state["counters"]?["secretsCreated"] == 1)
        #expect((state["counters"]?["requests"]?.intValue ?? 0) >= 2)
        let creds = try #require(try c.send("GET", "/_sim/credentials")?.json)
        #expect(creds["orgs"]?[AtlasSimulator.orgId(index: 0)]?["clientId"] == .string(AtlasSimulator.adminClientId(org: 0)))
    }

    @Test func createListAndDeleteServiceAccountsWithPaging() throws {
        let h = try SimHarness(orgs: 1, accounts: 3)
        defer { h.stop() }
        let c = try h.client()
        let token = try h.token(0, c)
        let base = "/api/atlas/v2/orgs/\(AtlasSimulator.orgId(index: 0))/serviceAccounts"
        let created = try h.call(c, token, "POST", base, json: #"{"name":"ci bot","description":"for CI","roles":["ORG_MEMBER"],"secretExpiresAfterHours":24}"#)
        #expect(created.status == 201)
        let clientId = try #require(created.json?["clientId"]?.stringValue)
        #expect(AtlasIdentifier.isClientId(clientId))
        #expect(created.json?["secrets"]?.arrayFirst?["secret"]?.stringValue?.hasPrefix("mdb_sa_sk_") == true)
        let missing = try h.call(c, token, "POST", base, json: #"{"name":"x","roles":["ORG_MEMBER"],"secretExpiresAfterHours":24}"#)
        #expect(missing.status == 400)
        #expect(missing.json?["badRequestDetail"]?["fields"]?.arrayFirst?["field"] == "description")
        let page = try h.call(c, token, "GET", base + "?itemsPerPage=2&pageNum=3")
        #expect(page.json?["totalCount"] == 5)  // admin + 3 seeded + 1 created
        if case let .array(results)? = page.json?["results"] { #expect(results.count == 1) } else { Issue.record("no results") }
        #expect(try h.call(c, token, "GET", base + "?itemsPerPage=501").status == 400)
        let enveloped = try h.call(c, token, "GET", base + "/" + clientId + "?envelope=true")
        #expect(enveloped.status == 200)
        #expect(enveloped.json?["status"] == 200)
        #expect(enveloped.json?["content"]?["clientId"] == .string(clientId))
        #expect(try h.call(c, token, "DELETE", base + "/" + clientId).status == 204)
        #expect(try h.call(c, token, "GET", base + "/" + clientId).status == 404)
    }

    @Test func commandLineFlagsParseAndBadOnesAreUsageErrors() throws {
        let options = try SimulatorCommandLine.parse(["--port", "0", "--seed-orgs", "3", "--accounts-per-org", "2", "--auth", "mixed",
            "--digest-algorithm", "SHA-256", "--fail-rate", "0.1", "--fail-mode", "after", "--omit-masked", "--seed-from", "a.jsonl", "--seed-from", "b.csv"])
        #expect(options.seedOrgs == 3)
        #expect(options.configuration.auth == .mixed)
        #expect(options.configuration.digestAlgorithm == .sha256)
        #expect(options.configuration.failMode == .after)
        #expect(options.configuration.omitMaskedSecretValue)
        #expect(options.seedFiles == ["a.jsonl", "b.csv"])
        for bad in [["--fail-rate", "2"], ["--auth", "basic"], ["--host", "0.0.0.0"], ["--bogus"], ["--port"]] {
            #expect(throws: SimulatorCommandLine.UsageError.self) { try SimulatorCommandLine.parse(bad) }
        }
    }

    @Test func seedingFromJSONLinesAndCSVSkipsBadLinesAndWritesAPrivateCredentialsFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sim-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let org = "5f1a2b3c4d5e6f7a8b9c0d1e"
        try """
            {"orgId":"\(org)","clientId":"mdb_sa_id_aaaaaaaaaaaaaaaaaaaaaaaa","secretExpiresAfterHours":8}
            {"orgId":"bad","clientId":"mdb_sa_id_bbbbbbbbbbbbbbbbbbbbbbbb"}
            """.write(toFile: dir + "/a.jsonl", atomically: true, encoding: .utf8)
        try "secretExpiresAfterHours,orgId,clientId\n8,\(org),mdb_sa_id_cccccccccccccccccccccccc\n8,\(org),nope\n"
            .write(toFile: dir + "/b.csv", atomically: true, encoding: .utf8)
        let sim = AtlasSimulator()
        #expect(try sim.seed(fromFile: dir + "/a.jsonl") == (added: 1, skipped: 1))
        #expect(try sim.seed(fromFile: dir + "/b.csv") == (added: 1, skipped: 1))
        try sim.writeCredentials(to: dir + "/creds.json")
        let attributes = try FileManager.default.attributesOfItem(atPath: dir + "/creds.json")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let file = try #require(JSON.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/creds.json")))))
        #expect(file["orgs"]?.keys == [org])
        #expect(file["orgs"]?[org]?["clientSecret"]?.stringValue?.hasPrefix("mdb_sa_sk_") == true)
        #expect(!"\(sim.credentials[0].credential)".contains("mdb_sa_sk_"))
    }

    @Test func manyConcurrentKeepAliveClientsAreServedAndLeaveNoConnectionsBehind() async throws {
        let h = try SimHarness(orgs: 1, accounts: 1)
        defer { h.stop() }
        let token = try h.token(0, try h.client())
        let path = "/api/atlas/v2/orgs/\(AtlasSimulator.orgId(index: 0))/serviceAccounts/\(AtlasSimulator.clientId(org: 0, account: 0))"
        let port = h.sim.port
        let started = Date()
        let ok = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<16 {
                group.addTask {
                    let c = try SimRawClient(port: port)
                    var n = 0
                    for _ in 0..<150 {
                        let r = try c.send("GET", path, headers: [("Authorization", "Bearer \(token)"), SimHarness.accept])
                        if r?.status == 200 { n += 1 }
                    }
                    return n
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = Date().timeIntervalSince(started)
        #expect(ok == 16 * 150)
        print("atlas-sim: \(ok) requests on 16 keep-alive connections in \(String(format: "%.2f", elapsed)) s")
        var open = h.sim.openConnections
        for _ in 0..<100 where open > 0 {
            usleep(10_000)
            open = h.sim.openConnections
        }
        #expect(open == 0)
    }
}

extension JSON {
    /// The first element of an array.
    var arrayFirst: JSON? { if case let .array(items) = self { items.first } else { nil } }
}
