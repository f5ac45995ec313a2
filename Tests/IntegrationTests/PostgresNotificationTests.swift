import AtlasSecrets
import Foundation
import Synchronization
import Testing

/// LISTEN/NOTIFY, terminated backends and the pool against the dev database.
@Suite final class PostgresNotificationTests {
    let db: TestDatabase
    init() throws { db = try TestDatabase(prefix: "pgnotify") }
    deinit { db.drop() }

    /// Seconds elapsed while running `body`.
    func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
        let start = Date()
        let value = try body()
        return (value, Date().timeIntervalSince(start))
    }

    /// Runs `sql` on a fresh connection after `delay` seconds, on another thread.
    func later(_ delay: Double, _ sql: String) {
        let url = db.url
        onThread(after: delay) {
            guard let c = try? PGConnection(url: url) else { return }
            try? c.executeScript(sql)
        }
    }

    @Test func notificationFromAnotherConnectionWakesTheWaiter() throws {
        let listener = try db.connect()
        let channel = "jobs \(db.schema)"  // quoted identifier: spaces are fine
        try listener.listen(channel)
        let sender = try db.connect()
        try sender.notify(channel, payload: "first")
        let first = try listener.waitForNotifications(timeout: 5)
        #expect(first.map(\.payload) == ["first"])
        #expect(first.first?.channel == channel)
        #expect(first.first?.backendPID == sender.backendPID)

        later(0.2, "NOTIFY \(PGConnection.quoteIdentifier(channel)), 'second'")
        let (second, elapsed) = try timed { try listener.waitForNotifications(timeout: 10) }
        #expect(second.map(\.payload) == ["second"])
        #expect(elapsed < 2)
    }

    @Test func waitTimesOutEmpty() throws {
        let listener = try db.connect()
        try listener.listen("quiet")
        let (received, elapsed) = try timed { try listener.waitForNotifications(timeout: 0.3) }
        #expect(received.isEmpty)
        #expect(elapsed >= 0.25 && elapsed < 2)
        #expect(listener.isOpen)
    }

    @Test func notificationDuringAQueryIsHeldForTakePending() throws {
        let listener = try db.connect()
        try listener.listen("wake")
        // The sender holds an advisory lock that the listener's query waits for; it notifies,
        // then releases the lock, so the notification certainly arrives while the query runs.
        let sender = try db.connect()
        let key = Int64.random(in: 1...Int64.max)
        try sender.execute("SELECT pg_advisory_lock(\(key))")
        final class Box: @unchecked Sendable {  // @unchecked: handed to one other thread, unused here meanwhile
            let connection: PGConnection
            init(_ c: PGConnection) { connection = c }
        }
        let box = Box(sender)
        onThread(after: 0.2) {
            try? box.connection.notify("wake", payload: "during query")
            _ = try? box.connection.execute("SELECT pg_advisory_unlock(\(key))")
        }
        try listener.execute("SELECT pg_advisory_lock(\(key))")
        let pending = listener.takePendingNotifications()
        #expect(pending.map(\.payload) == ["during query"])
        #expect(listener.takePendingNotifications().isEmpty)
        #expect(try listener.waitForNotifications(timeout: 0.1).isEmpty)
    }

    @Test func pendingNotificationsAreReturnedByTheNextWait() throws {
        let listener = try db.connect()
        try listener.listen("self")
        try listener.notify("self", payload: "own")  // delivered with the query's response
        let (received, elapsed) = try timed { try listener.waitForNotifications(timeout: 5) }
        #expect(received.map(\.payload) == ["own"])
        #expect(elapsed < 0.5)
    }

    @Test func terminatedBackendMakesTheWaitThrowConnectionLost() throws {
        let listener = try db.connect()
        try listener.listen("doomed")
        let pid = listener.backendPID
        later(0.2, "SELECT pg_terminate_backend(\(pid))")
        let start = Date()
        let error = #expect(throws: PGError.self) { try listener.waitForNotifications(timeout: 10) }
        #expect(Date().timeIntervalSince(start) < 2)
        #expect(error?.code == .connectionLost)
        #expect(error?.isConnectionError == true)
        #expect(listener.isOpen == false)
    }

    @Test func poolRetriesThroughATerminatedBackend() throws {
        let pool = PGPool(url: db.url, size: 1, applicationName: "atlas-secrets-tests")
        defer { pool.close() }
        let firstPID = try pool.withConnection { $0.backendPID }
        let admin = try db.connect()
        #expect(try admin.query("SELECT pg_terminate_backend(\(firstPID), 5000) AS ok").first?["ok"].bool() == true)
        var attempts = 0
        let (pid, value) = try pool.withRetryingConnection(deadline: 10) { c in
            attempts += 1
            return (c.backendPID, try c.query("SELECT 41 + 1 AS n").first?["n"].int())
        }
        #expect(value == 42)
        #expect(pid != firstPID)
        #expect(attempts == 2)
    }

    @Test func poolDiscardsABrokenConnectionWithoutRetrying() throws {
        let pool = PGPool(url: db.url, size: 1, applicationName: "atlas-secrets-tests")
        defer { pool.close() }
        let firstPID = try pool.withConnection { $0.backendPID }
        let admin = try db.connect()
        try admin.execute("SELECT pg_terminate_backend(\(firstPID), 5000)")
        let error = #expect(throws: PGError.self) { try pool.withConnection { try $0.execute("SELECT 1") } }
        #expect(error?.isConnectionError == true)
        let secondPID = try pool.withConnection { $0.backendPID }
        #expect(secondPID != firstPID && secondPID > 0)
    }

    @Test func retryingPropagatesOtherErrorsAtOnce() throws {
        let pool = PGPool(url: db.url, size: 2, applicationName: "atlas-secrets-tests")
        defer { pool.close() }
        var attempts = 0
        let error = #expect(throws: PGError.self) {
            try pool.withRetryingConnection { c in
                attempts += 1
                return try c.execute("SELECT 1/0")
            }
        }
        #expect(error?.sqlState == SQLState("22012"))
        #expect(attempts == 1)
    }

    @Test func retryingGivesUpAtTheDeadline() throws {
        let pool = PGPool(url: "postgresql://postgres@127.0.0.1:1/postgres", size: 1, applicationName: "t")
        let start = Date()
        let error = #expect(throws: PGError.self) { try pool.withRetryingConnection(deadline: 0.8) { _ in 1 } }
        let elapsed = Date().timeIntervalSince(start)
        #expect(error?.code == .connectionFailed)
        #expect(elapsed < 1.5)
        #expect(elapsed > 0.2)  // it did retry
    }

    @Test func poolBoundsConnectionsAcrossThreads() throws {
        let pool = PGPool(url: db.url, size: 3, applicationName: "atlas-secrets-tests")
        defer { pool.close() }
        let pids = Mutex<Set<Int32>>([])
        let sums = Mutex<Int>(0)
        onThreads(12) { i in
            for j in 0..<10 {
                let n = (try? pool.withConnection { c in
                    pids.withLock { _ = $0.insert(c.backendPID) }
                    return try c.query("SELECT \(i * 100 + j)::int AS n").first?["n"].int()
                }) ?? nil
                sums.withLock { $0 += n ?? -1_000_000 }
            }
        }
        var expected = 0
        for i in 0..<12 { for j in 0..<10 { expected += i * 100 + j } }
        let total = sums.withLock { $0 }
        #expect(total == expected)
        #expect(pids.withLock { $0.count } <= 3)
        pool.close()
        let error = #expect(throws: PGError.self) { try pool.withConnection { $0.backendPID } }
        #expect(error?.code == .poolClosed)
    }

    @Test func poolRollsBackATransactionLeftOpen() throws {
        let pool = PGPool(url: db.url, size: 1, applicationName: "atlas-secrets-tests")
        defer { pool.close() }
        try pool.withConnection { c in
            try c.executeScript("CREATE TABLE left_open (n int)")
            try c.executeScript("BEGIN")
            try c.execute("INSERT INTO left_open VALUES (1)")
        }
        let (inTransaction, count) = try pool.withConnection { c in
            (c.isInTransaction, try c.query("SELECT count(*) AS n FROM left_open").first?["n"].int())
        }
        #expect(inTransaction == false)
        #expect(count == 0)
    }
}
