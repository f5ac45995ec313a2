public import Foundation

/// A record of OAuth token fetches shared by every process that uses the same credentials, so
/// that together they stay under Atlas's limits for one service account (100 live tokens, about
/// 50 token requests a minute), which no single `TokenProvider` can see.
///
/// `TokenProvider` asks it before each fetch (from the one caller that fetches for a client id)
/// and tells it how the fetch ended and which tokens it revoked. Implementations must be
/// thread-safe, and should let work go on (`.proceed(nil)`) when their store cannot be reached:
/// a ledger protects the credential, it must not stop the work it protects.
public protocol TokenLedger: Sendable {
    /// About to request a token for `clientId`: go ahead (with the entry to report back), or why not.
    func reserveFetch(clientId: String) -> TokenLedgerVerdict
    /// The reserved fetch got a token living `expiresIn` seconds.
    func fetched(_ entry: TokenLedgerEntry, expiresIn: Double)
    /// The reserved fetch got no token (`mayHaveMinted`: the answer was lost after the request
    /// left, so a token may exist; the entry keeps counting as live).
    func fetchFailed(_ entry: TokenLedgerEntry, mayHaveMinted: Bool)
    /// These tokens were revoked at Atlas.
    func revoked(_ entries: [TokenLedgerEntry])
}

/// One recorded fetch.
public struct TokenLedgerEntry: Sendable, Hashable {
    public let id: Int64
    public init(id: Int64) { self.id = id }
}

/// The ledger's answer before a fetch.
public enum TokenLedgerVerdict: Sendable, Equatable {
    /// Fetch; report the outcome on the entry (nil: nothing was recorded).
    case proceed(TokenLedgerEntry?)
    /// `live` unexpired, unrevoked tokens of this credential already reach `cap`.
    case liveCapReached(live: Int, cap: Int, oldestExpiresAt: Date?)
    /// `recent` fetches of this credential in the last minute reach `limit`; the oldest of them
    /// is a minute old in `retryAfter` seconds.
    case tooManyFetches(recent: Int, limit: Int, retryAfter: Double)
}

extension TokenLedgerVerdict {
    /// The refusal as the error the fetch fails with (nil for `.proceed`): `.authentication` for
    /// the live cap (the org pauses, with this message as its reason), `.rateLimited` with
    /// `retryAfter` for the rate (the org waits). Nothing was sent; `refusedByTokenLedger` is set.
    func error(clientId: String) -> AtlasError? {
        let operation = TokenProvider.tokenOperation
        var error: AtlasError
        switch self {
        case .proceed:
            return nil
        case .liveCapReached(let live, let cap, let oldest):
            let expiry = oldest.map { "; the oldest expires at \(AtlasTime.format($0))" } ?? ""
            error = AtlasError(
                code: .authentication, operation: operation,
                message: "\(live) live OAuth tokens for credential \(clientId), the cap is \(cap) (Atlas allows \(TokenLedgerLimits.atlasLiveTokens))\(expiry)",
                isAmbiguous: false)
        case .tooManyFetches(let recent, let limit, let retryAfter):
            error = AtlasError(
                code: .rateLimited, operation: operation,
                message: "\(recent) token requests for credential \(clientId) in the last minute, the limit is \(limit) (Atlas allows about \(TokenLedgerLimits.atlasFetchesPerMinute))",
                retryAfter: retryAfter, isAmbiguous: false)
        }
        error.refusedByTokenLedger = true
        return error
    }
}

/// Atlas's own limits per service account, and the defaults kept under them.
public enum TokenLedgerLimits {
    /// Atlas's cap of active tokens per service account.
    public static let atlasLiveTokens = 100
    /// Atlas's token endpoint limit, requests per minute per client (approximate).
    public static let atlasFetchesPerMinute = 50
    /// Default cap of live tokens per credential across all workers (room left under Atlas's 100
    /// for other clients of the same service account).
    public static let defaultLiveCap = 80
    /// Default token requests per credential per minute across all workers.
    public static let defaultFetchesPerMinute = 40
}
