import Dispatch
import Foundation
import Synchronization

/// OAuth tokens for service-account credentials, shared by all lanes (Sendable; a lock inside).
///
/// One token per client id: cached, renewed `renewBefore` seconds (clamped to 10 s…10 min, and to
/// half the token's lifetime) before expiry by ONE caller while the others wait on a condition
/// variable; a failed fetch wakes the waiters with that error. Only the HTTP client passed to
/// `token(for:secret:using:)` is used for the fetch, so it runs on the caller's lane.
///
/// With a `TokenLedger`, the fetching caller asks it first (other processes' tokens count
/// against Atlas's limits too) and tells it how the fetch ended and what `revokeAll` revoked.
public final class TokenProvider: Sendable {
    public let baseURL: String
    /// Seconds before expiry at which a token is renewed, after clamping.
    public let renewBefore: Double
    /// Consulted before each fetch (nil: none, each process on its own).
    public let ledger: (any TokenLedger)?
    private let now: @Sendable () -> Double
    private let state = TokenState()

    /// The `operation` of every error from the token endpoint (and of the ledger's refusals).
    public static let tokenOperation = "POST /api/oauth/token"

    /// A provider for `baseURL` (`https://cloud.mongodb.com`, trailing `/` tolerated).
    public convenience init(baseURL: String, renewBefore: Double = 60, ledger: (any TokenLedger)? = nil) {
        self.init(baseURL: baseURL, renewBefore: renewBefore, ledger: ledger, clock: { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 })
    }

    /// As above with a monotonic clock in seconds (tests).
    init(baseURL: String, renewBefore: Double, ledger: (any TokenLedger)? = nil, clock: @escaping @Sendable () -> Double) {
        self.baseURL = AtlasURL.trimmedBase(baseURL)
        self.renewBefore = min(600, max(10, renewBefore.isFinite ? renewBefore : 60))
        self.ledger = ledger
        self.now = clock
    }

    /// How many tokens this provider has obtained from the token endpoint.
    public var tokensMinted: Int { state.withLock { $0.minted } }

    /// A valid access token for the service account; fetches one when none is cached or it is
    /// about to expire. Throws `.authentication` (credential refused), `.rateLimited`, `.transport`,
    /// `.api` or `.invalidResponse`; none of them is ambiguous. A ledger's refusal throws
    /// `.authentication` (live cap) or `.rateLimited` (fetch rate) with `refusedByTokenLedger`.
    public func token(for clientId: String, secret: String, using http: HTTPClient) throws(AtlasError) -> String {
        state.lock()
        while true {
            var entry = state.value.entries[clientId] ?? TokenEntry()
            if let token = entry.token, now() < entry.renewAt {
                state.unlock()
                return token
            }
            if entry.fetching {
                let generation = entry.generation
                while state.value.entries[clientId]?.fetching == true { state.wait() }
                if let after = state.value.entries[clientId], after.generation != generation, let failure = after.failure {
                    state.unlock()
                    throw failure
                }
                continue
            }
            entry.fetching = true
            state.value.entries[clientId] = entry
            state.unlock()

            let outcome: Result<(String, Double, TokenLedgerEntry?), AtlasError>
            do throws(AtlasError) {
                outcome = .success(try fetchRecorded(clientId: clientId, secret: secret, http: http))
            } catch {
                outcome = .failure(error)
            }

            state.lock()
            var done = state.value.entries[clientId] ?? TokenEntry()
            done.fetching = false
            done.generation += 1
            switch outcome {
            case .success(let (token, expiresIn, entry)):
                let margin = min(renewBefore, expiresIn / 2)
                done.token = token
                done.ledgerEntry = entry
                done.secret = secret
                done.renewAt = now() + expiresIn - margin
                done.failure = nil
                state.value.minted += 1
            case .failure(let error):
                done.failure = error
            }
            state.value.entries[clientId] = done
            state.broadcast()
            state.unlock()
            switch outcome {
            case .success(let (token, expiresIn, entry)):
                // Recorded after the waiters have the token: the ledger's write is bookkeeping,
                // and every lane of the credential used to wait for it.
                if let ledger, let entry { ledger.fetched(entry, expiresIn: expiresIn) }
                return token
            case .failure(let error): throw error
            }
        }
    }

    /// Forgets `token` for `clientId` (after the API answered 401 to it); a newer token is kept.
    public func invalidate(clientId: String, token: String) {
        state.withLock { value in
            guard let entry = value.entries[clientId], entry.token == token else { return }
            // Atlas refused it, but it may still count among the account's live tokens: it is
            // revoked at exit with the others (and its ledger row marked).
            if let secret = entry.secret { value.dropped.append((clientId, secret, token, entry.ledgerEntry)) }
            value.entries[clientId]?.token = nil
            value.entries[clientId]?.ledgerEntry = nil
        }
    }

    /// Revokes every cached token (`POST {base}/api/oauth/revoke`) and forgets them; errors are
    /// ignored, and the ledger is told which revocations Atlas accepted. Call at exit, after the
    /// lanes stopped. `http` makes one client per revoking thread: up to `parallelism`
    /// revocations go out at once (a worker across 200 orgs holds 200 tokens, and revoking them
    /// one by one made its exit a third of a second longer).
    public func revokeAll(parallelism: Int = 8, http: @escaping @Sendable () -> HTTPClient) {
        typealias Item = (clientId: String, secret: String, token: String, entry: TokenLedgerEntry?)
        let toRevoke: [Item] = state.withLock { value in
            var list: [Item] = value.dropped
            value.dropped.removeAll()
            for (clientId, entry) in value.entries {
                if let token = entry.token, let secret = entry.secret { list.append((clientId, secret, token, entry.ledgerEntry)) }
                value.entries[clientId]?.token = nil
                value.entries[clientId]?.ledgerEntry = nil
            }
            return list
        }
        let baseURL = self.baseURL
        let revokedEntries = LockedList<TokenLedgerEntry>()
        let revoke: @Sendable (HTTPClient, Item) -> Void = { client, item in
            let body = "token=\(formEncode(item.token))&token_type_hint=access_token"
            let request = HTTPRequest(
                method: "POST", url: baseURL + "/api/oauth/revoke",
                headers: [
                    ("Authorization", basicAuthorization(item.clientId, item.secret)),
                    ("Accept", "application/json"),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                body: Array(body.utf8))
            if let response = try? client.send(request), response.status == 200, let entry = item.entry {
                revokedEntries.append(entry)
            }
        }
        defer {
            let entries = revokedEntries.items
            if let ledger, !entries.isEmpty { ledger.revoked(entries) }
        }
        let threads = min(max(1, parallelism), toRevoke.count)
        guard threads > 1 else {
            if !toRevoke.isEmpty { let client = http(); for item in toRevoke { revoke(client, item) } }
            return
        }
        let done = DispatchGroup()
        for k in 0..<threads {
            done.enter()
            let share = stride(from: k, to: toRevoke.count, by: threads).map { toRevoke[$0] }
            let thread = Thread {
                defer { done.leave() }
                let client = http()
                for item in share { revoke(client, item) }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        done.wait()
    }

    /// `fetch`, asking the ledger first and telling it of a failure (a success is reported by
    /// the caller once the token is shared).
    private func fetchRecorded(clientId: String, secret: String, http: HTTPClient) throws(AtlasError) -> (String, Double, TokenLedgerEntry?) {
        guard let ledger else {
            let (token, expiresIn) = try fetch(clientId: clientId, secret: secret, http: http)
            return (token, expiresIn, nil)
        }
        let verdict = ledger.reserveFetch(clientId: clientId)
        if let refusal = verdict.error(clientId: clientId) { throw refusal }
        guard case .proceed(let entry) = verdict else { preconditionFailure("a verdict without an error proceeds") }
        do throws(AtlasError) {
            let (token, expiresIn) = try fetch(clientId: clientId, secret: secret, http: http)
            return (token, expiresIn, entry)
        } catch {
            if let entry {
                // A token may exist when the answer was lost after the request left, came
                // unreadable, or came from a gateway that gave up waiting (502, 504): it keeps
                // counting until its hour is over. Atlas's own error (a 500, a 503) made none:
                // counting those would fill the cap during a token-endpoint outage.
                let mayHaveMinted = error.httpStatus.map { [200, 502, 504].contains($0) } ?? (error.transport?.requestMayHaveBeenSent ?? false)
                ledger.fetchFailed(entry, mayHaveMinted: mayHaveMinted)
            }
            throw error
        }
    }

    private func fetch(clientId: String, secret: String, http: HTTPClient) throws(AtlasError) -> (String, Double) {
        let operation = Self.tokenOperation
        let request = HTTPRequest(
            method: "POST", url: baseURL + "/api/oauth/token",
            headers: [
                ("Authorization", basicAuthorization(clientId, secret)),
                ("Accept", "application/json"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            body: Array("grant_type=client_credentials".utf8))
        let response: HTTPResponse
        do throws(HTTPError) {
            response = try http.send(request)
        } catch {
            throw AtlasError(code: .transport, operation: operation, transport: error, isAmbiguous: false)
        }
        if response.status == 200 {
            let json = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
            guard let json else {
                throw AtlasError(code: .invalidResponse, operation: operation, message: "token response is not a JSON object", httpStatus: 200, isAmbiguous: false)
            }
            guard let token = json["access_token"] as? String, !token.isEmpty else {
                throw AtlasError(code: .invalidResponse, operation: operation, message: "token response lacks access_token", httpStatus: 200, isAmbiguous: false)
            }
            let expiresIn = (json["expires_in"] as? NSNumber)?.doubleValue ?? 3600
            return (token, max(1, expiresIn))
        }
        var error = AtlasResponse.error(response, operation: operation, isAmbiguous: false)
        if error.apiError == nil, let oauth = Self.oauthError(response) { error.apiError = oauth }
        if error.code != .rateLimited, [400, 401, 403].contains(response.status) {
            error.code = .authentication
            if error.message.isEmpty { error.message = "the token endpoint refused client \(clientId)" }
        }
        throw error
    }

    /// `{"error": "invalid_client", "error_description": "…"}` as an `ApiError`.
    private static func oauthError(_ response: HTTPResponse) -> ApiError? {
        guard let json = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
              let code = json["error"] as? String
        else { return nil }
        return ApiError(error: response.status, errorCode: code, detail: json["error_description"] as? String)
    }
}

/// `Basic base64(id:secret)`.
func basicAuthorization(_ user: String, _ password: String) -> String {
    "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
}

/// application/x-www-form-urlencoded value encoding.
func formEncode(_ s: String) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
}

/// One client id's cached token and fetch status.
struct TokenEntry {
    var token: String?
    var secret: String?
    var renewAt: Double = 0
    /// The ledger's record of `token`'s fetch.
    var ledgerEntry: TokenLedgerEntry?
    var fetching = false
    var generation = 0
    var failure: AtlasError?
}

struct TokenStateValue {
    var entries: [String: TokenEntry] = [:]
    var minted = 0
    /// Tokens dropped after Atlas refused them (`invalidate`), still to revoke at exit.
    var dropped: [(clientId: String, secret: String, token: String, entry: TokenLedgerEntry?)] = []
}

/// A list appended to from several threads.
final class LockedList<Element: Sendable>: Sendable {
    private let list = Mutex<[Element]>([])
    func append(_ element: Element) { list.withLock { $0.append(element) } }
    var items: [Element] { list.withLock { $0 } }
}

/// The provider's mutable state behind an `NSCondition`.
final class TokenState: @unchecked Sendable {  // every access to `value` holds `condition`
    private let condition = NSCondition()
    var value = TokenStateValue()

    func lock() { condition.lock() }
    func unlock() { condition.unlock() }
    func wait() { condition.wait() }
    func broadcast() { condition.broadcast() }

    func withLock<T>(_ body: (inout TokenStateValue) -> T) -> T {
        condition.lock()
        defer { condition.unlock() }
        return body(&value)
    }
}
