import Dispatch
import Foundation
import Synchronization

/// A small fixed-size pool of connections for short statements from many threads.
///
/// Thread-safe. Connections open lazily; one that breaks (or is left inside a transaction
/// that cannot be rolled back) is discarded and replaced on next use. Never hold a pooled
/// connection across an HTTP call.
public final class PGPool: Sendable {
    /// Hands a connection between threads; only the thread that checked it out touches it.
    private final class Slot: @unchecked Sendable {  // @unchecked: ownership passes through the pool's lock
        let connection: PGConnection
        init(_ connection: PGConnection) { self.connection = connection }
    }

    private struct State {
        var idle: [Slot] = []
        var closed = false
    }

    private let url: String?
    private let applicationName: String
    /// The pool size.
    public let size: Int
    private let available: DispatchSemaphore
    private let state = Mutex(State())

    /// A pool of at most `size` connections to `url` (nil: libpq's PG* environment), opened lazily.
    public init(url: String?, size: Int, applicationName: String) {
        precondition(size > 0, "PGPool size must be positive")
        self.url = url
        self.size = size
        self.applicationName = applicationName
        self.available = DispatchSemaphore(value: size)
    }

    deinit { close() }

    /// Checks out a connection (blocks while all are busy), runs `body`, checks it back in.
    /// On a connection error the connection is discarded (reconnected lazily next time).
    /// Throws `poolClosed` after `close()`, `connectionFailed`, or what `body` throws.
    public func withConnection<T>(_ body: (PGConnection) throws -> T) throws -> T {
        available.wait()
        var slot: Slot?
        defer {
            if let slot { checkIn(slot) }
            available.signal()
        }
        let (reused, closed) = state.withLock { state -> (Slot?, Bool) in
            (state.closed ? nil : state.idle.popLast(), state.closed)
        }
        if closed { throw PGError(code: .poolClosed, message: "the connection pool is closed") }
        let current = try reused ?? Slot(PGConnection(url: url, applicationName: applicationName))
        do {
            let value = try body(current.connection)
            slot = current
            return value
        } catch let error as PGError where error.isConnectionError {
            current.connection.close()
            throw error
        } catch {
            slot = current
            throw error
        }
    }

    private func checkIn(_ slot: Slot) {
        let connection = slot.connection
        if connection.isOpen, connection.isInTransaction { try? connection.executeScript("ROLLBACK") }
        guard connection.isOpen, !connection.isInTransaction else {
            connection.close()
            return
        }
        let keep = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.idle.append(slot)
            return true
        }
        if !keep { connection.close() }
    }

    /// `withConnection`, retrying connection errors (lost/failed/too many connections/shutdown)
    /// with capped exponential backoff and jitter for up to `deadline` seconds (default 60);
    /// other errors propagate at once. `body` may run more than once: make it idempotent.
    public func withRetryingConnection<T>(deadline: Double = 60, _ body: (PGConnection) throws -> T) throws -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        var attempt = 0
        while true {
            do {
                return try withConnection(body)
            } catch let error as PGError where error.isConnectionError {
                let delay = Self.backoff(attempt: attempt)
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                guard elapsed + delay < deadline else { throw error }
                attempt += 1
                Thread.sleep(forTimeInterval: delay)
            }
        }
    }

    /// Backoff before retry `attempt` (0-based): 50 ms doubling to a 2 s cap, with jitter in [50%, 100%].
    static func backoff(attempt: Int) -> Double {
        let capped = min(2.0, 0.05 * pow(2, Double(min(attempt, 16))))
        return capped * Double.random(in: 0.5...1.0)
    }

    /// Closes idle connections and makes later checkouts throw `poolClosed`; connections in
    /// use are closed when they come back. Idempotent.
    public func close() {
        let idle = state.withLock { state -> [Slot] in
            state.closed = true
            defer { state.idle.removeAll() }
            return state.idle
        }
        idle.forEach { $0.connection.close() }
    }
}
