public import Foundation

/// A query with `$1…$n` placeholders and text-format binds, built by interpolation.
///
///     let q: PGQuery = "SELECT * FROM t WHERE id = \(id) AND owner = \(owner)"
///
/// Interpolated values become binds (see `StringInterpolation` for the types); `nil` becomes
/// SQL NULL. `\(raw: "...")` pastes SQL text verbatim and must be spelled out.
public struct PGQuery: ExpressibleByStringInterpolation, Sendable, CustomStringConvertible {
    /// The SQL text with `$n` placeholders.
    public var sql: String
    /// The bound values in text format, `nil` for NULL.
    public var binds: [String?]

    /// A query from SQL text and already-encoded binds.
    public init(sql: String, binds: [String?] = []) {
        self.sql = sql
        self.binds = binds
    }

    /// A query with no binds.
    public init(stringLiteral value: String) {
        self.init(sql: value)
    }

    /// A query built by interpolation.
    public init(stringInterpolation: StringInterpolation) {
        self.init(sql: stringInterpolation.sql, binds: stringInterpolation.binds)
    }

    /// The SQL text and the number of binds, never their values.
    public var description: String { "\(sql) [\(binds.count) binds]" }

    /// Collects SQL text and binds; each interpolated value becomes the next `$n`.
    public struct StringInterpolation: StringInterpolationProtocol, Sendable {
        var sql = ""
        var binds: [String?] = []

        /// Reserves room for the literal text.
        public init(literalCapacity: Int, interpolationCount: Int) {
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
            binds.reserveCapacity(interpolationCount)
        }

        /// Appends literal SQL.
        public mutating func appendLiteral(_ literal: String) { sql += literal }

        /// Pastes SQL text verbatim (identifiers, fragments): never user input.
        public mutating func appendInterpolation(raw text: String) { sql += text }

        /// Appends another query (a condition, a filter) with its binds, renumbering its `$n`
        /// placeholders after ours. Its SQL must not hold `$` outside placeholders.
        public mutating func appendInterpolation(_ fragment: PGQuery) {
            let offset = binds.count
            var out = ""
            var chars = fragment.sql.makeIterator()
            var pending: Character? = chars.next()
            while let c = pending {
                pending = chars.next()
                guard c == "$", let d = pending, d.isASCII, d.isNumber else {
                    out.append(c)
                    continue
                }
                var digits = ""
                while let d = pending, d.isASCII, d.isNumber {
                    digits.append(d)
                    pending = chars.next()
                }
                out += "$\(Int(digits)! + offset)"
            }
            sql += out
            binds += fragment.binds
        }

        /// Binds one encoded value (nil is NULL) as the next placeholder.
        public mutating func appendBind(_ text: String?) {
            binds.append(text)
            sql += "$\(binds.count)"
        }

        /// Binds a value of a `PGBindable` type (String, Int, Int64, Int32, Double, Bool, Date, UUID).
        public mutating func appendInterpolation<T: PGBindable>(_ value: T) { appendBind(value.pgText) }
        /// Binds an optional value; nil is SQL NULL.
        public mutating func appendInterpolation<T: PGBindable>(_ value: T?) { appendBind(value?.pgText) }

        /// Binds a `text[]` literal, every element quoted.
        public mutating func appendInterpolation(_ value: [String]) { appendBind(PGArray.literal(value)) }
        /// Binds a `text[]` literal or NULL.
        public mutating func appendInterpolation(_ value: [String]?) { appendBind(value.map(PGArray.literal)) }
        /// Binds a `text[]` literal whose nil elements are NULL.
        public mutating func appendInterpolation(_ value: [String?]) { appendBind(PGArray.literal(value)) }
        /// Binds a `bigint[]` literal.
        public mutating func appendInterpolation(_ value: [Int64]) { appendBind(PGArray.literal(value)) }
        /// Binds a `bigint[]` literal or NULL.
        public mutating func appendInterpolation(_ value: [Int64]?) { appendBind(value.map(PGArray.literal)) }
        /// Binds a `bigint[]` literal.
        public mutating func appendInterpolation(_ value: [Int]) { appendBind(PGArray.literal(value)) }
        /// Binds a `bigint[]` literal or NULL.
        public mutating func appendInterpolation(_ value: [Int]?) { appendBind(value.map(PGArray.literal)) }
        /// Binds `bytea` in hex form (`\x…`).
        public mutating func appendInterpolation(_ value: [UInt8]) { appendBind(PGBytea.literal(value)) }
        /// Binds `bytea` in hex form, or NULL.
        public mutating func appendInterpolation(_ value: [UInt8]?) { appendBind(value.map(PGBytea.literal)) }
    }
}

/// A Swift value that binds as one PostgreSQL text-format parameter.
public protocol PGBindable: Sendable {
    /// The value in PostgreSQL's text input format.
    var pgText: String { get }
}

extension String: PGBindable {
    /// The string itself.
    public var pgText: String { self }
}

extension Int: PGBindable {
    /// Decimal digits.
    public var pgText: String { String(self) }
}

extension Int64: PGBindable {
    /// Decimal digits.
    public var pgText: String { String(self) }
}

extension Int32: PGBindable {
    /// Decimal digits.
    public var pgText: String { String(self) }
}

extension Double: PGBindable {
    /// Shortest round-tripping form; `Infinity`, `-Infinity`, `NaN` as PostgreSQL spells them.
    public var pgText: String {
        if isNaN { return "NaN" }
        if isInfinite { return self < 0 ? "-Infinity" : "Infinity" }
        return String(self)
    }
}

extension Bool: PGBindable {
    /// `t` or `f`.
    public var pgText: String { self ? "t" : "f" }
}

extension Date: PGBindable {
    /// ISO-8601 UTC with microseconds, e.g. `2026-12-03T17:51:51.123456Z` (castable to timestamptz).
    public var pgText: String { PGTimestamp.format(self) }
}

extension UUID: PGBindable {
    /// The canonical lowercase form.
    public var pgText: String { uuidString.lowercased() }
}

/// Array literals in PostgreSQL's text format, and their parsing.
enum PGArray {
    static func quote(_ element: String) -> String {
        var out = "\""
        for ch in element.unicodeScalars {
            if ch == "\"" || ch == "\\" { out += "\\" }
            out.unicodeScalars.append(ch)
        }
        return out + "\""
    }

    static func literal(_ elements: [String]) -> String {
        "{" + elements.map(quote).joined(separator: ",") + "}"
    }

    static func literal(_ elements: [String?]) -> String {
        "{" + elements.map { $0.map(quote) ?? "NULL" }.joined(separator: ",") + "}"
    }

    static func literal(_ elements: [some BinaryInteger]) -> String {
        "{" + elements.map { String($0) }.joined(separator: ",") + "}"
    }

    /// Parses a one-dimensional array's text output, e.g. `{a,"b c",NULL}`; nil on malformed input.
    static func parse(_ text: String) -> [String?]? {
        var scalars = Substring(text).unicodeScalars[...]
        // Non-default bounds are printed as a prefix: `[0:1]={…}`.
        if scalars.first == "[" {
            guard let eq = scalars.firstIndex(of: "=") else { return nil }
            scalars = scalars[scalars.index(after: eq)...]
        }
        guard scalars.first == "{", scalars.last == "}" else { return nil }
        scalars = scalars.dropFirst().dropLast()
        var result: [String?] = []
        if scalars.isEmpty { return result }
        var i = scalars.startIndex
        while true {
            guard i < scalars.endIndex else { return nil }
            if scalars[i] == "{" { return nil }  // multi-dimensional: not supported
            if scalars[i] == "\"" {
                var element = String.UnicodeScalarView()
                i = scalars.index(after: i)
                var closed = false
                while i < scalars.endIndex {
                    let c = scalars[i]
                    if c == "\\" {
                        i = scalars.index(after: i)
                        guard i < scalars.endIndex else { return nil }
                        element.append(scalars[i])
                    } else if c == "\"" {
                        closed = true
                        i = scalars.index(after: i)
                        break
                    } else {
                        element.append(c)
                    }
                    i = scalars.index(after: i)
                }
                guard closed else { return nil }
                result.append(String(element))
            } else {
                var element = String.UnicodeScalarView()
                while i < scalars.endIndex, scalars[i] != "," {
                    if scalars[i] == "\\" {
                        i = scalars.index(after: i)
                        guard i < scalars.endIndex else { return nil }
                    }
                    element.append(scalars[i])
                    i = scalars.index(after: i)
                }
                let word = String(element)
                result.append(word.uppercased() == "NULL" ? nil : word.trimmingCharacters(in: .whitespaces))
            }
            if i == scalars.endIndex { return result }
            guard scalars[i] == "," else { return nil }
            i = scalars.index(after: i)
        }
    }
}

/// `bytea` in hex form.
enum PGBytea {
    static func literal(_ bytes: [UInt8]) -> String { "\\x" + Hashing.hexString(bytes) }

    /// Parses `\x…` hex output; nil on malformed input.
    static func parse(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count >= 2, utf8[0] == UInt8(ascii: "\\"), utf8[1] == UInt8(ascii: "x"), utf8.count % 2 == 0 else {
            return nil
        }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2 - 1)
        var i = 2
        while i < utf8.count {
            guard let hi = nibble(utf8[i]), let lo = nibble(utf8[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
