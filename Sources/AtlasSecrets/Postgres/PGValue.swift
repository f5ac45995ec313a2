public import Foundation

/// One value of a text-format result; throwing conversions name the column on failure
/// (never the value, which could be sensitive).
public struct PGValue: Sendable {
    /// The column's name in the result.
    public var column: String
    /// The text as PostgreSQL sent it, nil for SQL NULL.
    public var text: String?
    /// True for SQL NULL (from `PQgetisnull`, not from the text).
    public var isNull: Bool { text == nil }
    /// False when the row has no column of this name (every conversion then throws).
    public var exists: Bool

    /// A value of `column`; `text` nil is NULL.
    public init(column: String, text: String?, exists: Bool = true) {
        self.column = column
        self.text = text
        self.exists = exists
    }

    func failure(_ what: String) -> PGError {
        PGError(code: .badValue, message: "column \"\(column)\": \(what)", column: column)
    }

    /// The text, or a badValue error for a missing column or NULL.
    func nonNull(_ type: String) throws(PGError) -> String {
        guard exists else { throw failure("no such column in the result") }
        guard let text else { throw failure("is NULL, expected \(type)") }
        return text
    }

    func convert<T>(_ type: String, _ body: (String) -> T?) throws(PGError) -> T {
        let text = try nonNull(type)
        guard let value = body(text) else { throw failure("cannot read a value of \(text.utf8.count) bytes as \(type)") }
        return value
    }

    func optional<T>(_ body: (PGValue) throws(PGError) -> T) throws(PGError) -> T? {
        guard exists else { throw failure("no such column in the result") }
        return text == nil ? nil : try body(self)
    }

    /// The text.
    public func string() throws(PGError) -> String { try nonNull("text") }
    /// A decimal integer.
    public func int() throws(PGError) -> Int { try convert("Int") { Int($0) } }
    /// A decimal 64-bit integer.
    public func int64() throws(PGError) -> Int64 { try convert("Int64") { Int64($0) } }
    /// A decimal 32-bit integer.
    public func int32() throws(PGError) -> Int32 { try convert("Int32") { Int32($0) } }
    /// A float8/numeric value (`NaN`, `Infinity`, `-Infinity` included).
    public func double() throws(PGError) -> Double {
        try convert("Double") {
            switch $0 {
            case "NaN": .nan
            case "Infinity": .infinity
            case "-Infinity": -.infinity
            default: Double($0)
            }
        }
    }
    /// A boolean, `t`/`f` (also `true`/`false`).
    public func bool() throws(PGError) -> Bool {
        try convert("Bool") {
            switch $0 {
            case "t", "true": true
            case "f", "false": false
            default: nil
            }
        }
    }
    /// A timestamptz/timestamp/date in ISO DateStyle, e.g. `2026-12-03 17:51:51.123456+00`.
    public func date() throws(PGError) -> Date { try convert("timestamp") { PGTimestamp.parse($0) } }
    /// `bytea` in hex output form (`\x…`).
    public func bytes() throws(PGError) -> [UInt8] { try convert("bytea (hex)") { PGBytea.parse($0) } }
    /// A UUID.
    public func uuid() throws(PGError) -> UUID { try convert("uuid") { UUID(uuidString: $0) } }
    /// A one-dimensional `text[]` without NULL elements, e.g. `{a,"b c"}`.
    public func stringArray() throws(PGError) -> [String] {
        let elements = try nullableStringArray()
        var out = [String]()
        out.reserveCapacity(elements.count)
        for element in elements {
            guard let element else { throw failure("array has a NULL element, expected [String]") }
            out.append(element)
        }
        return out
    }
    /// A one-dimensional `text[]` whose NULL elements are nil, e.g. `{a,"b c",NULL}`.
    public func nullableStringArray() throws(PGError) -> [String?] { try convert("array") { PGArray.parse($0) } }
    /// A one-dimensional integer array without NULL elements.
    public func int64Array() throws(PGError) -> [Int64] {
        let elements = try stringArray()
        var out = [Int64]()
        for element in elements {
            guard let n = Int64(element) else { throw failure("array element is not an integer") }
            out.append(n)
        }
        return out
    }

    /// The text, or nil for NULL.
    public func optionalString() throws(PGError) -> String? { try optional { v throws(PGError) in try v.string() } }
    /// An Int, or nil for NULL.
    public func optionalInt() throws(PGError) -> Int? { try optional { v throws(PGError) in try v.int() } }
    /// An Int64, or nil for NULL.
    public func optionalInt64() throws(PGError) -> Int64? { try optional { v throws(PGError) in try v.int64() } }
    /// A Double, or nil for NULL.
    public func optionalDouble() throws(PGError) -> Double? { try optional { v throws(PGError) in try v.double() } }
    /// A Bool, or nil for NULL.
    public func optionalBool() throws(PGError) -> Bool? { try optional { v throws(PGError) in try v.bool() } }
    /// A Date, or nil for NULL.
    public func optionalDate() throws(PGError) -> Date? { try optional { v throws(PGError) in try v.date() } }
    /// Bytes, or nil for NULL.
    public func optionalBytes() throws(PGError) -> [UInt8]? { try optional { v throws(PGError) in try v.bytes() } }
    /// A string array, or nil for NULL.
    public func optionalStringArray() throws(PGError) -> [String]? {
        try optional { v throws(PGError) in try v.stringArray() }
    }
}

/// One row of a result; values by column name (the first column of that name).
public struct PGRow: Sendable {
    /// The result's column names, in order.
    public var columns: [String]
    /// The values in column order, nil for NULL.
    public var texts: [String?]

    /// A row from column names and text values.
    public init(columns: [String], texts: [String?]) {
        self.columns = columns
        self.texts = texts
    }

    /// The value of `column`; conversions throw if the result has no such column.
    public subscript(_ column: String) -> PGValue {
        guard let index = columns.firstIndex(of: column) else {
            return PGValue(column: column, text: nil, exists: false)
        }
        return PGValue(column: column, text: texts[index])
    }

    /// The value at a zero-based column position.
    public subscript(index index: Int) -> PGValue {
        guard columns.indices.contains(index) else {
            return PGValue(column: "#\(index)", text: nil, exists: false)
        }
        return PGValue(column: columns[index], text: texts[index])
    }
}

/// The outcome of one statement: its rows (text format) and affected-row count.
public struct PGResult: Sendable {
    /// Result rows (empty for commands without RETURNING).
    public var rows: [PGRow]
    /// `PQcmdTuples`: rows inserted/updated/deleted/selected; 0 when not applicable.
    public var affectedRows: Int
    /// The result's column names.
    public var columns: [String]
    /// The command tag, e.g. `UPDATE 3`.
    public var commandTag: String

    /// A result from its parts.
    public init(rows: [PGRow], affectedRows: Int, columns: [String] = [], commandTag: String = "") {
        self.rows = rows
        self.affectedRows = affectedRows
        self.columns = columns
        self.commandTag = commandTag
    }

    /// The first row, if any.
    public var first: PGRow? { rows.first }
}
