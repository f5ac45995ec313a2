import CLibPQ
import Foundation

/// One libpq connection.
///
/// Not Sendable: one thread owns it at a time (libpq's rule). Sessions are set to UTF-8,
/// `DateStyle=ISO`, `TimeZone=UTC` and hex `bytea` output, so text results parse the same
/// way everywhere. Server notices are discarded. Closing is idempotent and happens in `deinit`.
public final class PGConnection {
    private var conn: OpaquePointer?
    private var pending: [PGNotification] = []
    /// Statements prepared on this connection, by SQL text: a worker runs the same few dozen
    /// statements millions of times, and parsing and planning each anew took more of the
    /// server's time than running them.
    private var prepared: [String: String] = [:]
    /// At most this many prepared statements per connection (statements past it run unprepared).
    static let maxPrepared = 256

    /// Opens a connection.
    ///
    /// `url`: a libpq URI or conninfo string as the user gave it (expanded by libpq, which
    /// may override `application_name` and `connect_timeout`), or nil to use libpq's own
    /// `PG*` environment variables. Connect timeout default 5 s.
    /// Throws `connectionFailed` with libpq's message.
    public init(url: String?, applicationName: String = "atlas-secrets") throws(PGError) {
        // Keywords before dbname are defaults the URL may override; client_encoding is forced.
        var pairs: [(String, String)] = [("connect_timeout", "5"), ("application_name", applicationName)]
        if let url { pairs.append(("dbname", url)) }
        pairs.append(("client_encoding", "UTF8"))
        conn = Self.connect(pairs)
        guard let conn, PQstatus(conn) == CONNECTION_OK else {
            let message = conn.map { Self.errorMessage($0) } ?? "out of memory"
            close()
            throw PGError(code: .connectionFailed, message: message)
        }
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
        do {
            try executeScript("SET DateStyle TO ISO; SET TimeZone TO 'UTC'; SET bytea_output TO hex; SET jit TO off")
        } catch {
            close()
            throw PGError(code: .connectionFailed, message: "session setup failed: \(error.message)", sqlState: error.sqlState)
        }
    }

    deinit { close() }

    private static func connect(_ pairs: [(String, String)]) -> OpaquePointer? {
        let keys = pairs.map { strdup($0.0) }
        let values = pairs.map { strdup($0.1) }
        defer {
            keys.forEach { free($0) }
            values.forEach { free($0) }
        }
        var keyPointers: [UnsafePointer<CChar>?] = keys.map { UnsafePointer($0) } + [nil]
        var valuePointers: [UnsafePointer<CChar>?] = values.map { UnsafePointer($0) } + [nil]
        return keyPointers.withUnsafeMutableBufferPointer { k in
            valuePointers.withUnsafeMutableBufferPointer { v in
                PQconnectdbParams(k.baseAddress, v.baseAddress, 1)
            }
        }
    }

    static func errorMessage(_ conn: OpaquePointer) -> String {
        guard let cString = PQerrorMessage(conn) else { return "unknown libpq error" }
        let text = String(cString: cString).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "unknown libpq error" : text
    }

    /// True while the connection is usable (`PQstatus == CONNECTION_OK`).
    public var isOpen: Bool {
        guard let conn else { return false }
        return PQstatus(conn) == CONNECTION_OK
    }

    /// The backend process id, for tests that terminate connections; 0 when closed.
    public var backendPID: Int32 {
        guard let conn else { return 0 }
        return PQbackendPID(conn)
    }

    /// True when the session is inside a transaction block (open or failed).
    public var isInTransaction: Bool {
        guard let conn else { return false }
        let status = PQtransactionStatus(conn)
        return status == PQTRANS_INTRANS || status == PQTRANS_INERROR || status == PQTRANS_ACTIVE
    }

    /// Closes the connection (`PQfinish`); later calls throw `connectionLost`. Idempotent.
    public func close() {
        if let conn { PQfinish(conn) }
        conn = nil
    }

    private func openConnection() throws(PGError) -> OpaquePointer {
        guard let conn else { throw PGError(code: .connectionLost, message: "connection is closed") }
        return conn
    }

    /// Runs one statement with text-format binds and returns its rows: prepared once per
    /// connection (`PQprepare`, then `PQexecPrepared`), or `PQexecParams` past `maxPrepared`.
    /// Throws `queryFailed` with the server's SQLSTATE and message, or `connectionLost`.
    @discardableResult
    public func query(_ q: PGQuery) throws(PGError) -> PGResult {
        let conn = try openConnection()
        let copies = q.binds.map { $0.map { strdup($0) } ?? nil }
        defer { copies.forEach { free($0) } }
        var pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } }
        let count = Int32(pointers.count)
        guard let name = try statement(q, conn: conn) else {
            let result = pointers.withUnsafeMutableBufferPointer { PQexecParams(conn, q.sql, count, nil, $0.baseAddress, nil, nil, 0) }
            return try consume(result, conn: conn, sql: q.sql)
        }
        let result = pointers.withUnsafeMutableBufferPointer { PQexecPrepared(conn, name, count, $0.baseAddress, nil, nil, 0) }
        do {
            return try consume(result, conn: conn, sql: q.sql)
        } catch {
            // The server forgot it (a pooler in transaction mode hands out other sessions):
            // stop preparing on this connection; the statement is run again unprepared.
            guard error.sqlState == .invalidSQLStatementName else { throw error }
            prepared = [:]
            preparing = false
            return try query(q)
        }
    }

    /// False once the server lost a prepared statement: everything runs unprepared from then on.
    private var preparing = true

    /// The name of `q`'s prepared statement, preparing it first (nil: run it unprepared).
    private func statement(_ q: PGQuery, conn: OpaquePointer) throws(PGError) -> String? {
        if let name = prepared[q.sql] { return name }
        guard preparing, prepared.count < Self.maxPrepared else { return nil }
        let name = "atlas_secrets_\(prepared.count + 1)"
        _ = try consume(PQprepare(conn, name, q.sql, Int32(q.binds.count), nil), conn: conn, sql: q.sql)
        prepared[q.sql] = name
        return name
    }

    /// Runs one statement and returns the number of affected rows.
    @discardableResult
    public func execute(_ q: PGQuery) throws(PGError) -> Int {
        try query(q).affectedRows
    }

    /// Runs a script of several statements (`PQexec`, no binds); stops at the first error.
    /// Without an explicit BEGIN the whole script is one implicit transaction.
    public func executeScript(_ sql: String) throws(PGError) {
        let conn = try openConnection()
        _ = try consume(PQexec(conn, sql), conn: conn, sql: sql)
    }

    /// Runs `body` between BEGIN and COMMIT; ROLLBACK (and rethrow) when it throws.
    /// Throws `queryFailed` if COMMIT turns into a rollback because a statement failed inside.
    public func transaction<T>(_ body: (PGConnection) throws -> T) throws -> T {
        try executeScript("BEGIN")
        let value: T
        do {
            value = try body(self)
        } catch {
            if isOpen { try? executeScript("ROLLBACK") }
            throw error
        }
        let conn = try openConnection()
        guard let result = PQexec(conn, "COMMIT") else {
            throw PGError(code: .connectionLost, message: Self.errorMessage(conn), query: "COMMIT")
        }
        let tag = PQcmdStatus(result).map { String(cString: $0) } ?? ""
        _ = try consume(result, conn: conn, sql: "COMMIT")
        if tag == "ROLLBACK" {
            throw PGError(
                code: .queryFailed, message: "transaction was rolled back at COMMIT because a statement in it failed",
                query: "COMMIT")
        }
        return value
    }

    /// Checks, converts and clears (exactly once) a libpq result; drains notifications.
    private func consume(_ result: OpaquePointer?, conn: OpaquePointer, sql: String) throws(PGError) -> PGResult {
        defer { drainNotifications(conn) }
        guard let result else {
            let code: PGError.Code = PQstatus(conn) == CONNECTION_OK ? .queryFailed : .connectionLost
            throw PGError(code: code, message: Self.errorMessage(conn), query: sql)
        }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return Self.read(result)
        case PGRES_FATAL_ERROR, PGRES_NONFATAL_ERROR, PGRES_BAD_RESPONSE:
            throw Self.error(from: result, conn: conn, sql: sql)
        default:
            let status = String(cString: PQresStatus(PQresultStatus(result)))
            throw PGError(code: .unsupported, message: "unsupported result status \(status)", query: sql)
        }
    }

    private static func field(_ result: OpaquePointer, _ code: Int32) -> String? {
        guard let value = PQresultErrorField(result, code) else { return nil }
        return String(cString: value)
    }

    private static func error(from result: OpaquePointer, conn: OpaquePointer, sql: String) -> PGError {
        let sqlState = field(result, Int32(CLIBPQ_DIAG_SQLSTATE)).map { SQLState($0) }
        let primary = field(result, Int32(CLIBPQ_DIAG_MESSAGE_PRIMARY))
        let message = primary
            ?? PQresultErrorMessage(result).map { String(cString: $0).trimmingCharacters(in: .whitespacesAndNewlines) }
            ?? errorMessage(conn)
        let code: PGError.Code = PQstatus(conn) == CONNECTION_OK ? .queryFailed : .connectionLost
        return PGError(
            code: code, message: message.isEmpty ? errorMessage(conn) : message, sqlState: sqlState,
            detail: field(result, Int32(CLIBPQ_DIAG_MESSAGE_DETAIL)),
            hint: field(result, Int32(CLIBPQ_DIAG_MESSAGE_HINT)),
            constraint: field(result, Int32(CLIBPQ_DIAG_CONSTRAINT_NAME)),
            column: field(result, Int32(CLIBPQ_DIAG_COLUMN_NAME)), query: sql)
    }

    private static func read(_ result: OpaquePointer) -> PGResult {
        let rowCount = Int(PQntuples(result))
        let columnCount = Int(PQnfields(result))
        let columns = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
        var rows = [PGRow]()
        rows.reserveCapacity(rowCount)
        for r in 0..<Int32(rowCount) {
            var texts = [String?]()
            texts.reserveCapacity(columnCount)
            for c in 0..<Int32(columnCount) {
                texts.append(PQgetisnull(result, r, c) == 1 ? nil : String(cString: PQgetvalue(result, r, c)))
            }
            rows.append(PGRow(columns: columns, texts: texts))
        }
        let affected = PQcmdTuples(result).map { Int(String(cString: $0)) ?? 0 } ?? 0
        let tag = PQcmdStatus(result).map { String(cString: $0) } ?? ""
        return PGResult(rows: rows, affectedRows: affected, columns: columns, commandTag: tag)
    }

    private func drainNotifications(_ conn: OpaquePointer) {
        while let notify = PQnotifies(conn) {
            let channel = String(cString: notify.pointee.relname)
            let payload = notify.pointee.extra.map { String(cString: $0) } ?? ""
            pending.append(PGNotification(channel: channel, payload: payload, backendPID: notify.pointee.be_pid))
            PQfreemem(notify)
        }
    }

    /// Notifications that arrived while a query ran (libpq holds them), plus any already in the
    /// socket buffer; returns and forgets them.
    public func takePendingNotifications() -> [PGNotification] {
        if let conn, PQstatus(conn) == CONNECTION_OK {
            _ = PQconsumeInput(conn)
            drainNotifications(conn)
        }
        defer { pending.removeAll() }
        return pending
    }

    /// `LISTEN` on `channel` (quoted as an identifier, so any name works).
    public func listen(_ channel: String) throws(PGError) {
        try executeScript("LISTEN \(Self.quoteIdentifier(channel))")
    }

    /// `UNLISTEN` `channel`.
    public func unlisten(_ channel: String) throws(PGError) {
        try executeScript("UNLISTEN \(Self.quoteIdentifier(channel))")
    }

    /// Sends a notification (`pg_notify`); delivered when the current transaction commits.
    public func notify(_ channel: String, payload: String = "") throws(PGError) {
        try execute("SELECT pg_notify(\(channel), \(payload))")
    }

    /// Blocks up to `timeout` seconds in `poll()` on `PQsocket` for notifications, then
    /// `PQconsumeInput` and drains `PQnotifies`. Returns what arrived (possibly empty;
    /// notifications already held are returned at once). Throws `connectionLost` when the
    /// socket is dead, e.g. after `pg_terminate_backend`.
    public func waitForNotifications(timeout: Double) throws(PGError) -> [PGNotification] {
        let conn = try openConnection()
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, timeout) * 1e9)
        try consumeInput(conn)
        while pending.isEmpty {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { break }
            let socket = PQsocket(conn)
            guard socket >= 0 else { throw lost(conn) }
            var fd = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            let millis = Int32(min((deadline - now + 999_999) / 1_000_000, UInt64(Int32.max)))
            let ready = poll(&fd, 1, millis)
            if ready < 0 {
                if errno == EINTR { continue }
                throw PGError(code: .connectionLost, message: "poll failed: \(String(cString: strerror(errno)))")
            }
            if ready > 0 { try consumeInput(conn) }
        }
        defer { pending.removeAll() }
        return pending
    }

    private func consumeInput(_ conn: OpaquePointer) throws(PGError) {
        if PQconsumeInput(conn) == 0 || PQstatus(conn) != CONNECTION_OK { throw lost(conn) }
        drainNotifications(conn)
    }

    private func lost(_ conn: OpaquePointer) -> PGError {
        PGError(code: .connectionLost, message: Self.errorMessage(conn))
    }

    /// `name` as a double-quoted SQL identifier.
    public static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

/// A notification received on a channel this connection listens to.
public struct PGNotification: Sendable, Equatable {
    public var channel: String
    public var payload: String
    /// The pid of the backend that sent it.
    public var backendPID: Int32

    /// A notification from its parts.
    public init(channel: String, payload: String, backendPID: Int32 = 0) {
        self.channel = channel
        self.payload = payload
        self.backendPID = backendPID
    }
}
