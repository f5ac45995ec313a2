import Foundation

/// The worker's `TokenLedger`: table `oauth_token_ledger` (migration 005) through the worker's
/// pool, so that every worker process on the database counts the same tokens. Thread-safe.
///
/// Credentials are recorded as `sha256("atlas-secrets:" + clientId)`, never the secret. When the
/// ledger cannot be read or written (database down, schema not migrated), the fetch goes ahead
/// and a warning is logged: the ledger protects the credential, it does not gate the work.
final class DatabaseTokenLedger: TokenLedger {
    let pool: PGPool
    let owner: String
    let liveCap: Int
    let fetchesPerMinute: Int
    let logger: Logger
    /// How long one ledger call may retry across lost connections before the fetch goes ahead.
    static let deadline = 3.0

    init(pool: PGPool, owner: String, liveCap: Int, fetchesPerMinute: Int, logger: Logger) {
        self.pool = pool
        self.owner = owner
        self.liveCap = liveCap
        self.fetchesPerMinute = fetchesPerMinute
        self.logger = logger
    }

    /// The ledger's name for a credential.
    static func credentialHash(_ clientId: String) -> String { Hashing.hex("atlas-secrets:" + clientId, .sha256) }

    func reserveFetch(clientId: String) -> TokenLedgerVerdict {
        let hash = Self.credentialHash(clientId)
        let row: PGRow
        do {
            row = try pool.withRetryingConnection(deadline: Self.deadline) { conn in
                try conn.query("""
                    SELECT id, live, oldest_expires_at, recent, retry_after
                    FROM reserve_oauth_token(\(hash), \(owner), \(liveCap), \(fetchesPerMinute))
                    """).rows[0]
            }
            if let id = try row["id"].optionalInt64() {
                logger.debug("token.reserved", ["client": clientId, "live": try row["live"].string(), "recent": try row["recent"].string()])
                return .proceed(TokenLedgerEntry(id: id))
            }
            if let retryAfter = try row["retry_after"].optionalDouble() {
                let verdict = TokenLedgerVerdict.tooManyFetches(recent: try row["recent"].int(), limit: fetchesPerMinute, retryAfter: retryAfter)
                logger.warning("token.fetch_deferred", ["client": clientId, "recent": try row["recent"].string(), "limit": "\(fetchesPerMinute)",
                                                        "retry_after": String(format: "%.1f", retryAfter)])
                return verdict
            }
            let live = try row["live"].int()
            logger.error("token.live_cap_reached", ["client": clientId, "live": "\(live)", "cap": "\(liveCap)"])
            return .liveCapReached(live: live, cap: liveCap, oldestExpiresAt: try row["oldest_expires_at"].optionalDate())
        } catch {
            logger.warning("token.ledger_unavailable", ["client": clientId, "error": "\(error)", "action": "fetching without the ledger"])
            return .proceed(nil)
        }
    }

    /// The reservation counts a token live for 61 minutes; a lifetime of 59 to 61 minutes leaves
    /// it so (at most two minutes too long: conservative), a shorter one is recorded.
    static let reservedLifetime = 61.0 * 60

    func fetched(_ entry: TokenLedgerEntry, expiresIn: Double) {
        guard expiresIn < Self.reservedLifetime - 120 || expiresIn > Self.reservedLifetime else { return }
        update("token.ledger_unrecorded", """
            UPDATE oauth_token_ledger SET expires_at = now() + make_interval(secs => \(expiresIn))
            WHERE id = \(entry.id)
            """)
    }

    func fetchFailed(_ entry: TokenLedgerEntry, mayHaveMinted: Bool) {
        // A token that may exist keeps its provisional hour.
        guard !mayHaveMinted else { return }
        update("token.ledger_unrecorded", "UPDATE oauth_token_ledger SET expires_at = fetched_at WHERE id = \(entry.id)")
    }

    func revoked(_ entries: [TokenLedgerEntry]) {
        let ids = entries.map(\.id)
        update("token.ledger_unrecorded", """
            UPDATE oauth_token_ledger SET revoked_at = now()
            WHERE id = ANY(\(ids)) AND owner = \(owner) AND revoked_at IS NULL
            """)
    }

    /// Deletes rows that stopped mattering an hour ago (expired, and out of every minute window).
    /// Returns how many; a failure is logged and ignored.
    @discardableResult
    func prune() -> Int {
        do {
            return try pool.withRetryingConnection(deadline: Self.deadline) { conn in
                try Self.briefly(conn) { try $0.execute("DELETE FROM oauth_token_ledger WHERE expires_at < now() - interval '1 hour'") }
            }
        } catch {
            logger.warning("token.ledger_prune_failed", ["error": "\(error)"])
            return 0
        }
    }

    private func update(_ event: String, _ query: PGQuery) {
        do {
            _ = try pool.withRetryingConnection(deadline: Self.deadline) { conn in try Self.briefly(conn) { try $0.execute(query) } }
        } catch {
            logger.warning(event, ["error": "\(error)"])
        }
    }

    /// Runs `body` in a transaction that waits at most a second for a lock: a ledger held locked
    /// by someone else (a long transaction, a migration) must not hold up a worker's start, its
    /// lanes or its exit. (The reservation has the same limit in its function.)
    private static func briefly<T>(_ conn: PGConnection, _ body: (PGConnection) throws -> T) throws -> T {
        try conn.transaction { conn in
            try conn.executeScript("SET LOCAL lock_timeout = '1s'")
            return try body(conn)
        }
    }
}
