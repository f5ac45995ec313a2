/// A PostgreSQL SQLSTATE, e.g. "23505"; codes without a named constant still round-trip.
public struct SQLState: Sendable, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The five-character code as the server sent it.
    public let raw: String

    /// Wraps a five-character code.
    public init(_ raw: String) { self.raw = raw }

    /// Wraps a code written as a literal.
    public init(stringLiteral value: String) { self.raw = value }

    public static let uniqueViolation: SQLState = "23505"
    public static let invalidSQLStatementName: SQLState = "26000"
    public static let checkViolation: SQLState = "23514"
    public static let notNullViolation: SQLState = "23502"
    public static let foreignKeyViolation: SQLState = "23503"
    public static let raiseException: SQLState = "P0001"
    public static let serializationFailure: SQLState = "40001"
    public static let deadlockDetected: SQLState = "40P01"
    public static let adminShutdown: SQLState = "57P01"
    public static let crashShutdown: SQLState = "57P02"
    public static let cannotConnectNow: SQLState = "57P03"
    public static let tooManyConnections: SQLState = "53300"
    public static let queryCanceled: SQLState = "57014"
    public static let undefinedTable: SQLState = "42P01"

    /// The two-character class, e.g. "23" for integrity constraint violations.
    public var errorClass: String { String(raw.prefix(2)) }

    /// Class 08 (connection exception), 57P01-03, 53300: worth reconnecting and retrying.
    public var isConnectionProblem: Bool {
        errorClass == "08" || self == .adminShutdown || self == .crashShutdown
            || self == .cannotConnectNow || self == .tooManyConnections
    }

    /// The code itself.
    public var description: String { raw }
}
