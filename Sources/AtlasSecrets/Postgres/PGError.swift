/// An error from libpq or the server.
///
/// `description` holds the message, SQLSTATE, constraint, hint and detail (a "Failing row
/// contains …" detail, which dumps a whole row, is shortened there) and never bind values;
/// `debugDescription` adds the full detail and the statement text.
public struct PGError: Error, CustomStringConvertible, CustomDebugStringConvertible {
    /// What kind of failure this is; extensible, compare with the static constants.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case connectionFailed, connectionLost, queryFailed, badValue, poolClosed, unsupported
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// Could not open a connection (server down, bad URL, authentication, timeout).
        public static let connectionFailed = Code(.connectionFailed)
        /// The connection broke or was closed: reconnect.
        public static let connectionLost = Code(.connectionLost)
        /// The server rejected a statement; see `sqlState` and `message`.
        public static let queryFailed = Code(.queryFailed)
        /// A result value could not be converted to the requested type.
        public static let badValue = Code(.badValue)
        /// The pool was closed.
        public static let poolClosed = Code(.poolClosed)
        /// A statement produced something this wrapper does not handle (e.g. COPY).
        public static let unsupported = Code(.unsupported)

        /// The code's name, e.g. `queryFailed`.
        public var description: String { base.rawValue }
    }

    public var code: Code
    public var sqlState: SQLState?
    /// The server's primary message (verbatim) or libpq's message.
    public var message: String
    public var detail: String?
    public var hint: String?
    public var constraint: String?
    /// The column named by the server (constraint errors) or by a value conversion.
    public var column: String?
    /// The statement text (with `$n` placeholders, never the bound values); only in `debugDescription`.
    public var query: String?

    /// Builds an error; the fields after `message` are optional context.
    public init(
        code: Code, message: String, sqlState: SQLState? = nil, detail: String? = nil,
        hint: String? = nil, constraint: String? = nil, column: String? = nil, query: String? = nil
    ) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
        self.hint = hint
        self.constraint = constraint
        self.column = column
        self.query = query
    }

    /// True when reconnecting and retrying could help (connection lost/failed, isConnectionProblem).
    public var isConnectionError: Bool {
        code == .connectionFailed || code == .connectionLost || (sqlState?.isConnectionProblem ?? false)
    }

    /// Message, SQLSTATE, constraint, hint and detail (a row dump in the detail is elided).
    public var description: String {
        var text = "PostgreSQL \(code): \(message)"
        if let sqlState { text += " (SQLSTATE \(sqlState))" }
        if let constraint { text += ", constraint \"\(constraint)\"" }
        if let detail {
            text += detail.hasPrefix("Failing row contains") ? "; detail: Failing row contains (…)" : "; detail: \(detail)"
        }
        if let hint { text += "; hint: \(hint)" }
        return text
    }

    /// Everything in `description`, the full detail and the statement text (no bind values).
    public var debugDescription: String {
        var text = "PGError(code: \(code), sqlState: \(sqlState?.raw ?? "-"), message: \(message)"
        if let detail { text += ", detail: \(detail)" }
        if let hint { text += ", hint: \(hint)" }
        if let constraint { text += ", constraint: \(constraint)" }
        if let column { text += ", column: \(column)" }
        if let query { text += ", query: \(query)" }
        return text + ")"
    }
}
