import Foundation
import Synchronization
import Testing
@testable import AtlasSecrets

/// A settable clock for token expiry tests.
final class TestClock: Sendable {
    let seconds = Mutex<Double>(1000)
    func advance(_ by: Double) { seconds.withLock { $0 += by } }
    var now: Double { seconds.withLock { $0 } }
}

@Suite struct OAuthTests {
    static let clientId = "mdb_sa_id_5f1a2b3c4d5e6f7a8b9c0d1e"
    static let secret = "mdb_sa_sk_TOPSECRET"

    /// A token endpoint minting "tok-<request index>" valid for `expiresIn` seconds.
    static func tokenServer(expiresIn: Int = 3600, delay: Double = 0) -> LocalHTTPServer {
        LocalHTTPServer { request, index in
            guard request.target == "/api/oauth/token" else { return .respond(status: 200) }
            return .respond(
                status: 200, headers: [("Content-Type", "application/json")],
                body: #"{"access_token":"tok-\#(index)","expires_in":\#(expiresIn),"token_type":"Bearer"}"#, delay: delay)
        }
    }

    @Test func fetchesWithBasicAuthAndFormAndCaches() throws {
        let server = Self.tokenServer()
        defer { server.stop() }
        let tokens = TokenProvider(baseURL: server.baseURL + "/")
        let http = HTTPClient()
        #expect(try tokens.token(for: Self.clientId, secret: Self.secret, using: http) == "tok-0")
        #expect(try tokens.token(for: Self.clientId, secret: Self.secret, using: http) == "tok-0")
        #expect(tokens.tokensMinted == 1)
        let request = try #require(server.requests.first)
        #expect(server.requests.count == 1)
        #expect(request.method == "POST" && request.target == "/api/oauth/token")
        #expect(request.bodyText == "grant_type=client_credentials")
        #expect(request.header("Content-Type") == "application/x-www-form-urlencoded")
        #expect(request.header("Accept") == "application/json")
        let basic = Data("\(Self.clientId):\(Self.secret)".utf8).base64EncodedString()
        #expect(request.header("Authorization") == "Basic \(basic)")
    }

    @Test func renewsBeforeExpiryAndClampsRenewBefore() throws {
        let server = Self.tokenServer(expiresIn: 3600)
        defer { server.stop() }
        let clock = TestClock()
        let tokens = TokenProvider(baseURL: server.baseURL, renewBefore: 60, clock: { clock.now })
        let http = HTTPClient()
        #expect(try tokens.token(for: Self.clientId, secret: Self.secret, using: http) == "tok-0")
        clock.advance(3600 - 61)
        #expect(try tokens.token(for: Self.clientId, secret: Self.secret, using: http) == "tok-0")
        clock.advance(2)  // inside the last 60 s
        #expect(try tokens.token(for: Self.clientId, secret: Self.secret, using: http) == "tok-1")
        #expect(tokens.tokensMinted == 2)
        #expect(TokenProvider(baseURL: "x", renewBefore: 1).renewBefore == 10)
        #expect(TokenProvider(baseURL: "x", renewBefore: 3600).renewBefore == 600)
    }

    @Test func shortLivedTokensAreStillReused() throws {
        let server = Self.tokenServer(expiresIn: 30)
        defer { server.stop() }
        let clock = TestClock()
        let tokens = TokenProvider(baseURL: server.baseURL, renewBefore: 60, clock: { clock.now })
        let http = HTTPClient()
        _ = try tokens.token(for: Self.clientId, secret: Self.secret, using: http)
        clock.advance(10)  // renew margin is half the 30 s lifetime
        _ = try tokens.token(for: Self.clientId, secret: Self.secret, using: http)
        #expect(tokens.tokensMinted == 1)
    }

    @Test func concurrentCallersShareOneFetch() throws {
        let server = Self.tokenServer(delay: 0.3)
        defer { server.stop() }
        let tokens = TokenProvider(baseURL: server.baseURL)
        let results = runConcurrently(6) { () -> String in
            (try? tokens.token(for: Self.clientId, secret: Self.secret, using: HTTPClient())) ?? "error"
        }
        #expect(results == Array(repeating: "tok-0", count: 6))
        #expect(server.requests.count == 1)
        #expect(tokens.tokensMinted == 1)
    }

    @Test func aFailedFetchWakesTheWaitersWithTheError() throws {
        let server = LocalHTTPServer { _, _ in
            .respond(status: 401, headers: [("Content-Type", "application/json")],
                     body: #"{"error":"invalid_client","error_description":"Invalid client credentials"}"#, delay: 0.3)
        }
        defer { server.stop() }
        let tokens = TokenProvider(baseURL: server.baseURL)
        let errors = runConcurrently(4) { () -> AtlasError? in
            do throws(AtlasError) {
                _ = try tokens.token(for: Self.clientId, secret: Self.secret, using: HTTPClient())
                return nil
            } catch { return error }
        }
        #expect(server.requests.count == 1)
        for error in errors {
            #expect(error?.code == .authentication)
            #expect(error?.apiError?.errorCode == "invalid_client")
            #expect(error?.httpStatus == 401)
            #expect(error?.isAmbiguous == false)
            #expect(error?.description.contains("TOPSECRET") == false)
            #expect(error?.description.contains("Invalid client credentials") == true)
        }
        #expect(tokens.tokensMinted == 0)
    }

    @Test func rateLimitedTokenEndpointCarriesRetryAfter() {
        let server = LocalHTTPServer { _, _ in
            .respond(status: 429, headers: [("Retry-After", "17")], body: #"{"error":"RATE_LIMITED"}"#)
        }
        defer { server.stop() }
        let tokens = TokenProvider(baseURL: server.baseURL)
        let error = #expect(throws: AtlasError.self) { try tokens.token(for: Self.clientId, secret: Self.secret, using: HTTPClient()) }
        #expect(error?.code == .rateLimited)
        #expect(error?.retryAfter == 17)
    }

    @Test func invalidateDropsOnlyThatTokenAndRevokeAllPostsEachTokenAndTheDroppedOne() throws {
        let server = Self.tokenServer()
        defer { server.stop() }
        let tokens = TokenProvider(baseURL: server.baseURL)
        let http = HTTPClient()
        let first = try tokens.token(for: Self.clientId, secret: Self.secret, using: http)
        tokens.invalidate(clientId: Self.clientId, token: "some-older-token")
        #expect(try tokens.token(for: Self.clientId, secret: Self.secret, using: http) == first)
        tokens.invalidate(clientId: Self.clientId, token: first)
        #expect(try tokens.token(for: Self.clientId, secret: Self.secret, using: http) == "tok-1")

        // Both are revoked at exit: the cached one, and the one Atlas refused (it may still count
        // among the account's live tokens).
        tokens.revokeAll { HTTPClient() }
        let revokes = server.requests.filter { $0.target == "/api/oauth/revoke" }
        #expect(Set(revokes.map(\.bodyText)) == ["token=tok-0&token_type_hint=access_token", "token=tok-1&token_type_hint=access_token"])
        #expect(revokes.allSatisfy { $0.header("Authorization")?.hasPrefix("Basic ") == true })
        // Revoked tokens are forgotten: the next call mints again.
        #expect(try tokens.token(for: Self.clientId, secret: Self.secret, using: http) != "tok-1")
    }
}

/// Runs `body` on `count` dedicated threads at once and returns the results in thread order.
func runConcurrently<T: Sendable>(_ count: Int, _ body: @escaping @Sendable () -> T) -> [T] {
    let results = Mutex<[Int: T]>([:])
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        Thread.detachNewThread {
            let value = body()
            results.withLock { $0[i] = value }
            group.leave()
        }
    }
    group.wait()
    return results.withLock { r in (0..<count).map { r[$0]! } }
}
