import Foundation
import Synchronization
import Testing
@testable import AtlasSecrets

/// `TokenProvider` with a `TokenLedger`: what it asks, what it reports, and that a refusal
/// sends nothing to Atlas. The database ledger itself is tested in `TokenLedgerTests`.
@Suite struct TokenProviderLedgerTests {
    static let secret = "mdb_sa_sk_TOPSECRET"
    static func client(_ i: Int) -> String { "mdb_sa_id_" + String(format: "%024x", 0x5f0000 + i) }

    /// A ledger answering `verdict` (numbering the entries it grants) and recording every call.
    final class RecordingLedger: TokenLedger {
        enum Call: Equatable {
            case reserve(String), fetched(Int64, Double), failed(Int64, mayHaveMinted: Bool), revoked([Int64])
        }
        let verdict: @Sendable (Int64) -> TokenLedgerVerdict
        let state = Mutex<(next: Int64, calls: [Call])>((1, []))
        init(_ verdict: @escaping @Sendable (Int64) -> TokenLedgerVerdict = { .proceed(TokenLedgerEntry(id: $0)) }) {
            self.verdict = verdict
        }
        var calls: [Call] { state.withLock { $0.calls } }

        func reserveFetch(clientId: String) -> TokenLedgerVerdict {
            let id = state.withLock { s in
                s.calls.append(.reserve(clientId))
                defer { s.next += 1 }
                return s.next
            }
            return verdict(id)
        }
        func fetched(_ entry: TokenLedgerEntry, expiresIn: Double) { state.withLock { $0.calls.append(.fetched(entry.id, expiresIn)) } }
        func fetchFailed(_ entry: TokenLedgerEntry, mayHaveMinted: Bool) {
            state.withLock { $0.calls.append(.failed(entry.id, mayHaveMinted: mayHaveMinted)) }
        }
        func revoked(_ entries: [TokenLedgerEntry]) { state.withLock { $0.calls.append(.revoked(entries.map(\.id).sorted())) } }
    }

    @Test func aLiveCapRefusalSendsNothingAndPausesWithTheReason() throws {
        let server = OAuthTests.tokenServer()
        defer { server.stop() }
        let ledger = RecordingLedger { _ in .liveCapReached(live: 80, cap: 80, oldestExpiresAt: Date(timeIntervalSince1970: 1_800_000_000)) }
        let tokens = TokenProvider(baseURL: server.baseURL, ledger: ledger)
        let error = #expect(throws: AtlasError.self) { try tokens.token(for: Self.client(0), secret: Self.secret, using: HTTPClient()) }
        #expect(server.requests.isEmpty)
        #expect(error?.code == .authentication)
        #expect(error?.refusedByTokenLedger == true)
        #expect(error?.httpStatus == nil)
        #expect(error?.message == "80 live OAuth tokens for credential \(Self.client(0)), the cap is 80 (Atlas allows 100); the oldest expires at 2027-01-15T08:00:00Z")
        #expect(ledger.calls == [.reserve(Self.client(0))])
        #expect(tokens.tokensMinted == 0)
    }

    @Test func aRateRefusalSendsNothingAndCarriesTheWait() throws {
        let server = OAuthTests.tokenServer()
        defer { server.stop() }
        let ledger = RecordingLedger { _ in .tooManyFetches(recent: 40, limit: 40, retryAfter: 12.5) }
        let tokens = TokenProvider(baseURL: server.baseURL, ledger: ledger)
        let error = #expect(throws: AtlasError.self) { try tokens.token(for: Self.client(0), secret: Self.secret, using: HTTPClient()) }
        #expect(server.requests.isEmpty)
        #expect(error?.code == .rateLimited)
        #expect(error?.retryAfter == 12.5)
        #expect(error?.refusedByTokenLedger == true)
        #expect(error?.message.contains("40 token requests for credential \(Self.client(0)) in the last minute, the limit is 40") == true)
    }

    /// One reservation per fetch, the answer's lifetime reported on it; at exit every revoked
    /// token in one report (the database ledger turns it into one statement).
    @Test func fetchesAreReportedAndRevocationsReportedOnceForAll() throws {
        let server = OAuthTests.tokenServer(expiresIn: 1800)
        defer { server.stop() }
        let ledger = RecordingLedger()
        let tokens = TokenProvider(baseURL: server.baseURL, ledger: ledger)
        let http = HTTPClient()
        for i in 0..<3 {
            _ = try tokens.token(for: Self.client(i), secret: Self.secret, using: http)
            _ = try tokens.token(for: Self.client(i), secret: Self.secret, using: http)  // cached: no reservation
        }
        #expect(ledger.calls == (0..<3).flatMap { i in [.reserve(Self.client(i)), .fetched(Int64(i + 1), 1800)] })
        tokens.revokeAll(parallelism: 3) { HTTPClient() }
        #expect(server.requests.filter { $0.target == "/api/oauth/revoke" }.count == 3)
        #expect(ledger.calls.last == .revoked([1, 2, 3]))
        #expect(ledger.calls.filter { if case .revoked = $0 { true } else { false } }.count == 1)
    }

    /// A refused fetch made no token, nor did Atlas's own 5xx; a gateway's 502/504 or a lost
    /// answer may have.
    @Test func failedFetchesSayWhetherATokenMayExist() throws {
        let refusing = LocalHTTPServer { _, _ in .respond(status: 401, body: #"{"error":"invalid_client"}"#) }
        defer { refusing.stop() }
        let ledger = RecordingLedger()
        _ = try? TokenProvider(baseURL: refusing.baseURL, ledger: ledger).token(for: Self.client(0), secret: Self.secret, using: HTTPClient())
        #expect(ledger.calls == [.reserve(Self.client(0)), .failed(1, mayHaveMinted: false)])

        for (status, mayHaveMinted) in [(503, false), (500, false), (504, true), (502, true)] {
            let failing = LocalHTTPServer { _, _ in .respond(status: status) }
            defer { failing.stop() }
            let other = RecordingLedger()
            _ = try? TokenProvider(baseURL: failing.baseURL, ledger: other).token(for: Self.client(0), secret: Self.secret, using: HTTPClient())
            #expect(other.calls == [.reserve(Self.client(0)), .failed(1, mayHaveMinted: mayHaveMinted)], "HTTP \(status)")
        }
    }

    /// A ledger that cannot answer lets the fetch go ahead, and nothing is reported on it.
    @Test func anUnrecordedFetchGoesAheadQuietly() throws {
        let server = OAuthTests.tokenServer()
        defer { server.stop() }
        let ledger = RecordingLedger { _ in .proceed(nil) }
        let tokens = TokenProvider(baseURL: server.baseURL, ledger: ledger)
        #expect(try tokens.token(for: Self.client(0), secret: Self.secret, using: HTTPClient()) == "tok-0")
        tokens.revokeAll { HTTPClient() }
        #expect(ledger.calls == [.reserve(Self.client(0))])
    }
}
