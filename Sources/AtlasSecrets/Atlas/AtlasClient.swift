import Foundation

/// The three calls the worker makes, per the OpenAPI spec, authenticated by credential kind.
///
/// Bearer tokens come from the shared `TokenProvider` (on a 401: invalidate, retry once with a
/// fresh token). API keys use HTTP Digest done here: the last challenge is cached per public key
/// and reused with nc+1; a 401 re-challenges once, resending the same body.
/// NOT thread-safe: one lane owns it (with its `HTTPClient`).
public final class AtlasClient {
    /// The base URL without trailing slashes.
    public let baseURL: String
    public let tokens: TokenProvider
    public let http: HTTPClient
    private var digestSessions: [String: DigestSession] = [:]
    /// `RateLimit-Remaining` of the last API response (nil: absent, or no response), for pacing.
    public private(set) var lastRateLimitRemaining: Int?
    /// `RateLimit-Limit` of the last API response (the bucket's capacity; nil: absent).
    public private(set) var lastRateLimitLimit: Int?

    /// A client for `baseURL` (`https://cloud.mongodb.com`; a trailing `/` is tolerated).
    public init(baseURL: String, tokens: TokenProvider, http: HTTPClient) {
        self.baseURL = AtlasURL.trimmedBase(baseURL)
        self.tokens = tokens
        self.http = http
    }

    /// `POST /api/atlas/v2/orgs/{orgId}/serviceAccounts/{clientId}/secrets`: the new secret,
    /// `secret` holding the plaintext. A 201 lacking `id` (24 hex), `createdAt`, `expiresAt` or
    /// `secret` throws `.invalidResponse` with `isAmbiguous` true: the secret may exist.
    public func createSecret(orgId: String, clientId: String, expiresAfterHours: Int, credential: AtlasCredential) throws(AtlasError) -> ServiceAccountSecret {
        let path = AtlasURL.path(["orgs", orgId, "serviceAccounts", clientId, "secrets"])
        let operation = "POST /api/atlas/v2/orgs/{orgId}/serviceAccounts/{clientId}/secrets"
        let body = Array("{\"secretExpiresAfterHours\":\(expiresAfterHours)}".utf8)
        // A fresh connection: libcurl silently resends a request whose kept-alive connection died
        // before any reply, which for a create could make a second secret.
        let response = try perform(method: "POST", path: path, body: body, credential: credential, operation: operation, freshConnection: true)
        guard response.status == 201 || response.status == 200 else {
            throw AtlasResponse.error(response, operation: operation, isAmbiguous: nil)
        }
        func invalid(_ message: String) -> AtlasError {
            // Never attach the body: it may hold the plaintext secret.
            AtlasError(code: .invalidResponse, operation: operation, message: message, httpStatus: response.status, isAmbiguous: true)
        }
        let secret: ServiceAccountSecret
        do {
            secret = try JSONDecoder().decode(ServiceAccountSecret.self, from: Data(response.body))
        } catch {
            throw invalid("unreadable \(response.status) body: \(AtlasResponse.describe(error))")
        }
        guard AtlasIdentifier.isSecretId(secret.id) else { throw invalid("field id is not 24 hex characters") }
        guard !secret.createdAt.isEmpty else { throw invalid("field createdAt is empty") }
        guard !secret.expiresAt.isEmpty else { throw invalid("field expiresAt is empty") }
        guard let value = secret.secret, !value.isEmpty else { throw invalid("field secret is missing") }
        return secret
    }

    /// `GET /api/atlas/v2/orgs/{orgId}/serviceAccounts/{clientId}`: the account and its secrets (no values).
    public func getServiceAccount(orgId: String, clientId: String, credential: AtlasCredential) throws(AtlasError) -> OrgServiceAccount {
        let path = AtlasURL.path(["orgs", orgId, "serviceAccounts", clientId])
        let operation = "GET /api/atlas/v2/orgs/{orgId}/serviceAccounts/{clientId}"
        let response = try perform(method: "GET", path: path, body: nil, credential: credential, operation: operation)
        guard response.status == 200 else { throw AtlasResponse.error(response, operation: operation, isAmbiguous: false) }
        do {
            return try JSONDecoder().decode(OrgServiceAccount.self, from: Data(response.body))
        } catch {
            throw AtlasError(
                code: .invalidResponse, operation: operation, message: "unreadable 200 body: \(AtlasResponse.describe(error))",
                httpStatus: 200, isAmbiguous: false)
        }
    }

    /// `DELETE /api/atlas/v2/orgs/{orgId}/serviceAccounts/{clientId}/secrets/{secretId}`: 204 (or 200).
    /// A 404 throws `.api` with status 404 (already gone).
    public func deleteSecret(orgId: String, clientId: String, secretId: String, credential: AtlasCredential) throws(AtlasError) {
        let path = AtlasURL.path(["orgs", orgId, "serviceAccounts", clientId, "secrets", secretId])
        let operation = "DELETE /api/atlas/v2/orgs/{orgId}/serviceAccounts/{clientId}/secrets/{secretId}"
        let response = try perform(method: "DELETE", path: path, body: nil, credential: credential, operation: operation)
        guard response.status == 204 || response.status == 200 else {
            throw AtlasResponse.error(response, operation: operation, isAmbiguous: nil)
        }
    }

    /// Sends one API request with auth; returns any response except an auth failure.
    private func perform(method: String, path: String, body: [UInt8]?, credential: AtlasCredential, operation: String, freshConnection: Bool = false) throws(AtlasError) -> HTTPResponse {
        var request = HTTPRequest(method: method, url: baseURL + path, headers: [("Accept", atlasMediaType)], body: body)
        request.freshConnection = freshConnection
        if body != nil { request.headers.append(("Content-Type", atlasMediaType)) }
        let response: HTTPResponse
        lastRateLimitRemaining = nil
        lastRateLimitLimit = nil
        switch credential {
        case .serviceAccount(let clientId, let secret):
            response = try sendBearer(request, clientId: clientId, secret: secret, operation: operation)
        case .apiKey(let publicKey, let privateKey):
            response = try sendDigest(request, path: path, publicKey: publicKey, privateKey: privateKey, operation: operation)
        }
        lastRateLimitRemaining = response.header("RateLimit-Remaining").flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        lastRateLimitLimit = response.header("RateLimit-Limit").flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        if response.status == 401 || response.status == 403 {
            var error = AtlasResponse.error(response, operation: operation, isAmbiguous: false)
            if error.code != .rateLimited { error.code = .authentication }
            throw error
        }
        return response
    }

    private func send(_ request: HTTPRequest, operation: String, ambiguousIfSent: Bool) throws(AtlasError) -> HTTPResponse {
        do throws(HTTPError) {
            return try http.send(request)
        } catch {
            throw AtlasError(code: .transport, operation: operation, transport: error, isAmbiguous: ambiguousIfSent && error.requestMayHaveBeenSent)
        }
    }

    private func sendBearer(_ base: HTTPRequest, clientId: String, secret: String, operation: String) throws(AtlasError) -> HTTPResponse {
        var retried = false
        while true {
            let token = try tokens.token(for: clientId, secret: secret, using: http)
            var request = base
            request.headers.append(("Authorization", "Bearer \(token)"))
            let response = try send(request, operation: operation, ambiguousIfSent: true)
            guard response.status == 401, !retried else { return response }
            tokens.invalidate(clientId: clientId, token: token)
            retried = true
        }
    }

    private func sendDigest(_ base: HTTPRequest, path: String, publicKey: String, privateKey: String, operation: String) throws(AtlasError) -> HTTPResponse {
        let uri = path  // the request-target the server sees (base URL path prefix included by AtlasURL)
        let target = AtlasURL.requestTarget(base.url) ?? uri
        var rechallenged = false
        while true {
            var request = base
            var authenticated = false
            if var session = digestSessions[publicKey] {
                session.nc += 1
                digestSessions[publicKey] = session
                request.headers.append((
                    "Authorization",
                    session.challenge.authorization(
                        username: publicKey, password: privateKey, method: request.method, uri: target, nc: session.nc, cnonce: session.cnonce)
                ))
                authenticated = true
            }
            // Without credentials Atlas cannot act on the request: a lost answer is not ambiguous.
            let response = try send(request, operation: operation, ambiguousIfSent: authenticated)
            guard response.status == 401 else { return response }
            let challenges = AuthChallenge.parse(response.headers(named: "WWW-Authenticate"))
            guard !rechallenged, let challenge = DigestChallenge.select(from: challenges) else {
                digestSessions[publicKey] = nil
                return response  // perform() turns it into .authentication
            }
            digestSessions[publicKey] = DigestSession(challenge: challenge, nc: 0, cnonce: DigestChallenge.makeCnonce())
            rechallenged = true
        }
    }
}

/// A cached Digest challenge with its nonce count, per lane and API key.
struct DigestSession {
    var challenge: DigestChallenge
    var nc: Int
    var cnonce: String
}

/// Joining the base URL and API paths.
public enum AtlasURL {
    /// `base` without surrounding whitespace and trailing slashes, so `base + "/api/…"` never has `//`.
    public static func trimmedBase(_ base: String) -> String {
        var s = base.trimmingCharacters(in: .whitespacesAndNewlines)
        while s.hasSuffix("/") { s.removeLast() }
        return s
    }

    /// `/api/atlas/v2/` followed by the percent-encoded segments.
    public static func path(_ segments: [String]) -> String {
        "/api/atlas/v2/" + segments.map(encodeSegment).joined(separator: "/")
    }

    /// Percent-encodes everything but RFC 3986 unreserved characters.
    public static func encodeSegment(_ segment: String) -> String {
        var allowed = CharacterSet()
        allowed.insert(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
        return segment.addingPercentEncoding(withAllowedCharacters: allowed) ?? segment
    }

    /// The path-and-query part of an absolute URL (`/api/…?x=1`), as sent on the request line.
    public static func requestTarget(_ url: String) -> String? {
        guard let scheme = url.range(of: "://") else { return nil }
        let rest = url[scheme.upperBound...]
        guard let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) else { return "/" }
        var target = String(rest[slash...])
        if let hash = target.firstIndex(of: "#") { target = String(target[..<hash]) }
        return target.hasPrefix("?") ? "/" + target : target
    }
}

/// Turning non-success responses into `AtlasError`.
enum AtlasResponse {
    /// ApiError decoding, rate-limit classification and headers. `isAmbiguous` nil: 5xx is ambiguous.
    static func error(_ response: HTTPResponse, operation: String, isAmbiguous: Bool?) -> AtlasError {
        let apiError = try? JSONDecoder().decode(ApiError.self, from: Data(response.body))
        let rateLimited = response.status == 429 || (response.status == 400 && (apiError?.errorCode.contains("RATE_LIMITED") ?? false))
        var snippet: String?
        if apiError == nil, !response.body.isEmpty, response.status >= 300 {
            snippet = String(decoding: response.body.prefix(200), as: UTF8.self)
        }
        return AtlasError(
            code: rateLimited ? .rateLimited : .api,
            operation: operation,
            httpStatus: response.status,
            apiError: apiError,
            retryAfter: parseRetryAfter(response.header("Retry-After")),
            rateLimitLimit: response.header("RateLimit-Limit").flatMap { Int($0.trimmingCharacters(in: .whitespaces)) },
            rateLimitRemaining: response.header("RateLimit-Remaining").flatMap { Int($0.trimmingCharacters(in: .whitespaces)) },
            isAmbiguous: rateLimited ? false : (isAmbiguous ?? (response.status >= 500)),
            bodySnippet: snippet)
    }

    /// A decoding error as the field it concerns, without any value.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "not JSON" }
        func path(_ keys: [any CodingKey]) -> String { keys.map(\.stringValue).joined(separator: ".") }
        switch error {
        case .keyNotFound(let key, let context): return "field \(path(context.codingPath + [key])) is missing"
        case .valueNotFound(_, let context): return "field \(path(context.codingPath)) is null"
        case .typeMismatch(_, let context): return "field \(path(context.codingPath)) has the wrong type"
        case .dataCorrupted(let context): return context.codingPath.isEmpty ? "not JSON" : "field \(path(context.codingPath)) is invalid"
        @unknown default: return "not readable"
        }
    }
}
