import Foundation
import Testing
@testable import AtlasSecrets

@Suite struct AtlasClientTests {
    static let orgId = "5f1a2b3c4d5e6f7a8b9c0d1e"
    static let clientId = "mdb_sa_id_5f1a2b3c4d5e6f7a8b9c0d1e"
    static let secretsPath = "/api/atlas/v2/orgs/5f1a2b3c4d5e6f7a8b9c0d1e/serviceAccounts/mdb_sa_id_5f1a2b3c4d5e6f7a8b9c0d1e/secrets"
    static let plaintext = "mdb_sa_sk_PLAINTEXTSECRET0123456789"
    static let created = """
        {"id":"6a1a2b3c4d5e6f7a8b9c0d1f","createdAt":"2025-01-01T00:00:00Z","expiresAt":"2025-01-31T00:00:00Z",\
        "lastUsedAt":null,"maskedSecretValue":"mdb_sa_sk_...6789","secret":"\(plaintext)"}
        """
    static let serviceAccount: AtlasCredential = .serviceAccount(clientId: clientId, clientSecret: "mdb_sa_sk_CLIENTSECRET")
    static let apiKey: AtlasCredential = .apiKey(publicKey: "abcdefgh", privateKey: "0d7e-PRIVATEKEY")
    static let json = [("Content-Type", "application/vnd.atlas.2024-08-05+json")]

    /// Answers the token endpoint, and API calls with `api`.
    static func server(_ api: @escaping @Sendable (RecordedRequest, Int) -> ServerAction) -> LocalHTTPServer {
        LocalHTTPServer { request, index in
            if request.target == "/api/oauth/token" {
                return .respond(status: 200, body: #"{"access_token":"tok-\#(index)","expires_in":3600,"token_type":"Bearer"}"#)
            }
            return api(request, index)
        }
    }

    static func client(_ server: LocalHTTPServer, trailingSlash: Bool = true) -> AtlasClient {
        AtlasClient(baseURL: server.baseURL + (trailingSlash ? "/" : ""), tokens: TokenProvider(baseURL: server.baseURL), http: HTTPClient())
    }

    @Test func urlJoiningNeverDoublesSlashesAndEncodesSegments() {
        #expect(AtlasURL.trimmedBase("https://cloud.mongodb.com/") == "https://cloud.mongodb.com")
        #expect(AtlasURL.trimmedBase(" https://cloud.mongodb.com// ") == "https://cloud.mongodb.com")
        #expect(AtlasURL.path(["orgs", "a/b c", "x?y#z%"]) == "/api/atlas/v2/orgs/a%2Fb%20c/x%3Fy%23z%25")
        #expect(AtlasURL.requestTarget("http://h:1/p/a?x=1#f") == "/p/a?x=1")
        #expect(AtlasURL.requestTarget("http://h") == "/")
    }

    @Test func createSecretSendsTheContractAndDecodesThe201() throws {
        let server = Self.server { _, _ in .respond(status: 201, headers: Self.json, body: Self.created) }
        defer { server.stop() }
        let secret = try Self.client(server).createSecret(orgId: Self.orgId, clientId: Self.clientId, expiresAfterHours: 720, credential: Self.serviceAccount)
        #expect(secret.id == "6a1a2b3c4d5e6f7a8b9c0d1f")
        #expect(secret.secret == Self.plaintext)
        #expect(secret.expiresAt == "2025-01-31T00:00:00Z")
        #expect(secret.lastUsedAt == nil)
        #expect(!"\(secret)".contains(Self.plaintext))

        let api = try #require(server.requests.last)
        #expect(server.requests.count == 2)  // token, then the call
        #expect(api.method == "POST")
        #expect(api.target == Self.secretsPath)  // no "//api" despite the trailing slash
        #expect(api.header("Accept") == "application/vnd.atlas.2024-08-05+json")
        #expect(api.header("Content-Type") == "application/vnd.atlas.2024-08-05+json")
        #expect(api.header("Authorization") == "Bearer tok-0")
        #expect(api.header("User-Agent")?.hasPrefix("atlas-secrets/") == true)
        let body = try JSONSerialization.jsonObject(with: Data(api.body)) as? [String: Int]
        #expect(body == ["secretExpiresAfterHours": 720])
    }

    /// libcurl resends a request once, silently, when a kept-alive connection dies before any
    /// reply: for a create that could make a second secret. Creates get a connection of their
    /// own; reads keep theirs.
    @Test func everyCreateGoesOnAFreshConnectionWhileReadsReuseOne() throws {
        let server = Self.server { request, _ in
            request.method == "POST"
                ? .respond(status: 201, headers: Self.json, body: Self.created)
                : .respond(status: 200, headers: Self.json, body: #"{"clientId":"\#(Self.clientId)","secrets":[]}"#)
        }
        defer { server.stop() }
        let client = Self.client(server)
        for _ in 0..<3 {
            _ = try client.getServiceAccount(orgId: Self.orgId, clientId: Self.clientId, credential: Self.serviceAccount)
        }
        let afterReads = server.connectionCount
        #expect(afterReads == 1)  // token and reads share one connection
        for _ in 0..<3 {
            _ = try client.createSecret(orgId: Self.orgId, clientId: Self.clientId, expiresAfterHours: 8, credential: Self.serviceAccount)
        }
        #expect(server.connectionCount == afterReads + 3)
    }

    @Test func a201WithoutMaskedValueIsAccepted() throws {
        let server = Self.server { _, _ in
            .respond(status: 201, body: #"{"id":"6a1a2b3c4d5e6f7a8b9c0d1f","createdAt":"c","expiresAt":"e","secret":"mdb_sa_sk_x"}"#)
        }
        defer { server.stop() }
        let secret = try Self.client(server).createSecret(orgId: Self.orgId, clientId: Self.clientId, expiresAfterHours: 8, credential: Self.serviceAccount)
        #expect(secret.maskedSecretValue == nil && secret.secret == "mdb_sa_sk_x")
    }

    @Test(arguments: [
        (#"{"id":"6a1a2b3c4d5e6f7a8b9c0d1f","createdAt":"c","expiresAt":"e"}"#, "secret"),
        (#"{"id":"nothex","createdAt":"c","expiresAt":"e","secret":"mdb_sa_sk_PLAINTEXTSECRET"}"#, "id"),
        (#"{"id":"6a1a2b3c4d5e6f7a8b9c0d1f","expiresAt":"e","secret":"mdb_sa_sk_PLAINTEXTSECRET"}"#, "createdAt"),
        (#"{"id":"6a1a2b3c4d5e6f7a8b9c0d1f","createdAt":"c","secret":"mdb_sa_sk_PLAINTEXTSECRET"}"#, "expiresAt"),
        ("<html>oops mdb_sa_sk_PLAINTEXTSECRET</html>", "not JSON"),
    ])
    func anInvalid201IsAmbiguousAndNamesTheField(body: String, field: String) {
        let server = Self.server { _, _ in .respond(status: 201, body: body) }
        defer { server.stop() }
        let error = #expect(throws: AtlasError.self) {
            try Self.client(server).createSecret(orgId: Self.orgId, clientId: Self.clientId, expiresAfterHours: 8, credential: Self.serviceAccount)
        }
        #expect(error?.code == .invalidResponse)
        #expect(error?.isAmbiguous == true)
        #expect(error?.description.contains(field) == true, "\(error?.description ?? "")")
        #expect(error?.debugDescription.contains("PLAINTEXTSECRET") == false)
    }

    @Test func apiErrorIsDecodedVerbatim() {
        let server = Self.server { _, _ in
            .respond(status: 400, headers: Self.json, body: """
                {"error":400,"errorCode":"SERVICE_ACCOUNT_SECRET_LIMIT","detail":"Max 2 secrets.","reason":"Bad Request","parameters":["x"]}
                """)
        }
        defer { server.stop() }
        let error = #expect(throws: AtlasError.self) {
            try Self.client(server).createSecret(orgId: Self.orgId, clientId: Self.clientId, expiresAfterHours: 8, credential: Self.serviceAccount)
        }
        #expect(error?.code == .api)
        #expect(error?.httpStatus == 400)
        #expect(error?.apiError?.errorCode == "SERVICE_ACCOUNT_SECRET_LIMIT")
        #expect(error?.apiError?.detail == "Max 2 secrets.")
        #expect(error?.isAmbiguous == false)
        #expect(error?.description.contains("SERVICE_ACCOUNT_SECRET_LIMIT") == true)
    }

    @Test func rateLimitsCarryRetryAfterAndBucketHeaders() {
        let server = Self.server { _, index in
            index == 1
                ? .respond(status: 429, headers: [("Retry-After", "12"), ("RateLimit-Limit", "100"), ("RateLimit-Remaining", "0")],
                           body: #"{"error":429,"errorCode":"RATE_LIMITED_TOKEN_BUCKET"}"#)
                : .respond(status: 400, headers: [("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")],
                           body: #"{"error":400,"errorCode":"ORG_RATE_LIMITED","detail":"slow down"}"#)
        }
        defer { server.stop() }
        let client = Self.client(server)
        let first = #expect(throws: AtlasError.self) {
            try client.createSecret(orgId: Self.orgId, clientId: Self.clientId, expiresAfterHours: 8, credential: Self.serviceAccount)
        }
        #expect(first?.code == .rateLimited)
        #expect(first?.retryAfter == 12)
        #expect(first?.rateLimitLimit == 100 && first?.rateLimitRemaining == 0)
        #expect(first?.isAmbiguous == false)
        let second = #expect(throws: AtlasError.self) {
            try client.createSecret(orgId: Self.orgId, clientId: Self.clientId, expiresAfterHours: 8, credential: Self.serviceAccount)
        }
        #expect(second?.code == .rateLimited)
        #expect(second?.retryAfter == 0)  // a date in the past
        #expect(second?.apiError?.errorCode == "ORG_RATE_LIMITED")
    }

    @Test func retryAfterParsesSecondsAndHTTPDates() {
        let now = Date(timeIntervalSince1970: 1_445_412_400)  // Wed, 21 Oct 2015 07:26:40 GMT
        #expect(parseRetryAfter("120", now: now) == 120)
        #expect(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT", now: now) == 80)
        #expect(parseRetryAfter("Wednesday, 21-Oct-15 07:28:00 GMT", now: now) == 80)
        #expect(parseRetryAfter("soon", now: now) == nil)
        #expect(parseRetryAfter("999999999", now: now) == 3600, "a Retry-After is taken for an hour at most")
        #expect(parseRetryAfter(nil, now: now) == nil)
    }

    @Test func serverErrorsAndLostAnswersAreAmbiguousButRefusedConnectsAreNot() {
        let server = Self.server { _, index in
            index == 1 ? .respond(status: 503, body: "<html>unavailable</html>") : .closeWithoutResponse
        }
        defer { server.stop() }
        let client = Self.client(server)
        let first = #expect(throws: AtlasError.self) {
            try client.createSecret(orgId: Self.orgId, clientId: Self.clientId, expiresAfterHours: 8, credential: Self.serviceAccount)
        }
        #expect(first?.code == .api && first?.httpStatus == 503 && first?.isAmbiguous == true)
        #expect(first?.debugDescription.contains("unavailable") == true)
        let second = #expect(throws: AtlasError.self) {
            try client.createSecret(orgId: Self.orgId, clientId: Self.clientId, expiresAfterHours: 8, credential: Self.serviceAccount)
        }
        #expect(second?.code == .transport && second?.isAmbiguous == true)
        #expect(second?.transport?.code == .connectionLost)

        let refused = AtlasClient(baseURL: "http://127.0.0.1:\(closedLocalPort())", tokens: TokenProvider(baseURL: "http://127.0.0.1:1"), http: HTTPClient())
        let third = #expect(throws: AtlasError.self) {
            try refused.createSecret(orgId: Self.orgId, clientId: Self.clientId, expiresAfterHours: 8, credential: Self.apiKey)
        }
        #expect(third?.code == .transport && third?.isAmbiguous == false)
    }

    @Test func a401RetriesOnceWithAFreshToken() throws {
        let server = Self.server { request, _ in
            request.header("Authorization") == "Bearer tok-0"
                ? .respond(status: 401, body: #"{"error":401,"errorCode":"NOT_AUTHORIZED"}"#)
                : .respond(status: 201, body: Self.created)
        }
        defer { server.stop() }
        let client = Self.client(server)
        let secret = try client.createSecret(orgId: Self.orgId, clientId: Self.clientId, expiresAfterHours: 8, credential: Self.serviceAccount)
        #expect(secret.secret == Self.plaintext)
        #expect(server.requests.map(\.target) == ["/api/oauth/token", Self.secretsPath, "/api/oauth/token", Self.secretsPath])
        #expect(client.tokens.tokensMinted == 2)
    }

    @Test func a401AfterTheRetryIsAnAuthenticationErrorWithoutSecrets() {
        let server = Self.server { _, _ in .respond(status: 401, body: #"{"error":401,"errorCode":"NOT_AUTHORIZED","detail":"Invalid token"}"#) }
        defer { server.stop() }
        let error = #expect(throws: AtlasError.self) {
            try Self.client(server).getServiceAccount(orgId: Self.orgId, clientId: Self.clientId, credential: Self.serviceAccount)
        }
        #expect(error?.code == .authentication)
        #expect(error?.apiError?.errorCode == "NOT_AUTHORIZED")
        #expect(server.requests.count == 4)
        for text in [error?.description ?? "", error?.debugDescription ?? ""] {
            #expect(!text.contains("tok-"))
            #expect(!text.contains("CLIENTSECRET"))
            #expect(!text.contains("Bearer") && !text.contains("Authorization"))
        }
    }

    @Test func digestChallengesThenResendsTheSameBodyAndReusesTheNonce() throws {
        // Nonce n1 is good for requests 0-1; from request 2 on the server calls it stale and issues n2.
        let server = Self.server { request, index in
            let challenge: (String) -> ServerAction = { nonce in
                .respond(status: 401, headers: [(
                    "WWW-Authenticate",
                    #"Digest realm="MMS Public API", domain="", nonce="\#(nonce)", algorithm=MD5, qop="auth", stale=\#(nonce == "n2")"#
                )])
            }
            guard let auth = request.header("Authorization") else { return challenge("n1") }
            let p = AuthChallenge.parse([auth]).first?.parameters ?? [:]
            if p["nonce"] == "n1" && index >= 2 { return challenge("n2") }
            // The server's own check, written out from RFC 7616.
            let ha1 = Hashing.hex("abcdefgh:MMS Public API:0d7e-PRIVATEKEY", .md5)
            let ha2 = Hashing.hex("\(request.method):\(request.target)", .md5)
            let expected = Hashing.hex("\(ha1):\(p["nonce"]!):\(p["nc"]!):\(p["cnonce"]!):auth:\(ha2)", .md5)
            guard p["response"] == expected, p["uri"] == request.target, p["username"] == "abcdefgh" else {
                return .respond(status: 401, body: #"{"error":401,"errorCode":"WRONG_DIGEST"}"#)
            }
            return request.method == "POST"
                ? .respond(status: 201, body: Self.created)
                : .respond(status: 200, body: #"{"clientId":"\#(Self.clientId)","secrets":[{"id":"6a1a2b3c4d5e6f7a8b9c0d1f","createdAt":"c","expiresAt":"e"}]}"#)
        }
        defer { server.stop() }
        let client = Self.client(server)
        let secret = try client.createSecret(orgId: Self.orgId, clientId: Self.clientId, expiresAfterHours: 24, credential: Self.apiKey)
        #expect(secret.secret == Self.plaintext)
        let account = try client.getServiceAccount(orgId: Self.orgId, clientId: Self.clientId, credential: Self.apiKey)
        #expect(account.secrets?.map(\.id) == ["6a1a2b3c4d5e6f7a8b9c0d1f"])

        let seen = server.requests
        #expect(seen.map(\.method) == ["POST", "POST", "GET", "GET"])
        #expect(seen[0].header("Authorization") == nil)
        #expect(seen[0].body == seen[1].body && !seen[1].body.isEmpty)  // the resend carries the same body
        #expect(seen[1].header("Content-Type") == atlasMediaType)
        let nc = seen.dropFirst().map { AuthChallenge.parse([$0.header("Authorization") ?? ""]).first?.parameters["nc"] }
        #expect(nc == ["00000001", "00000002", "00000001"])  // cached challenge reused with nc+1, then re-challenged
        #expect(client.tokens.tokensMinted == 0)
    }

    @Test func wrongDigestCredentialsAreAnAuthenticationError() {
        let server = Self.server { _, _ in
            .respond(status: 401, headers: [("WWW-Authenticate", #"Digest realm="r", nonce="n", qop="auth""#)],
                     body: #"{"error":401,"errorCode":"NOT_AUTHORIZED"}"#)
        }
        defer { server.stop() }
        let error = #expect(throws: AtlasError.self) {
            try Self.client(server).deleteSecret(orgId: Self.orgId, clientId: Self.clientId, secretId: "6a1a2b3c4d5e6f7a8b9c0d1f", credential: Self.apiKey)
        }
        #expect(error?.code == .authentication && error?.httpStatus == 401)
        #expect(server.requests.count == 2)  // probe, one authenticated try
        #expect(error?.description.contains("PRIVATEKEY") == false)
    }

    @Test func deleteAcceptsA204AndReportsA404() throws {
        let server = Self.server { request, _ in
            request.target.hasSuffix("/gone")
                ? .respond(status: 404, body: #"{"error":404,"errorCode":"RESOURCE_NOT_FOUND","detail":"No secret"}"#)
                : .respond(status: 204)
        }
        defer { server.stop() }
        let client = Self.client(server, trailingSlash: false)
        try client.deleteSecret(orgId: Self.orgId, clientId: Self.clientId, secretId: "6a1a2b3c4d5e6f7a8b9c0d1f", credential: Self.serviceAccount)
        let delete = try #require(server.requests.last)
        #expect(delete.method == "DELETE" && delete.target == Self.secretsPath + "/6a1a2b3c4d5e6f7a8b9c0d1f")
        #expect(delete.header("Accept") == atlasMediaType && delete.header("Content-Type") == nil)
        let error = #expect(throws: AtlasError.self) {
            try client.deleteSecret(orgId: Self.orgId, clientId: Self.clientId, secretId: "gone", credential: Self.serviceAccount)
        }
        #expect(error?.code == .api && error?.httpStatus == 404 && error?.apiError?.errorCode == "RESOURCE_NOT_FOUND")
    }
}
