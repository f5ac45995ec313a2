/// A strict JSON reader for one line holding one object, with messages that say where it broke.
///
/// Foundation's parsers accept trailing commas and report only "not valid JSON"; request
/// files deserve better. Nested arrays and objects are checked and kept only as their kind.
struct JSONLineReader {
    /// A value of the top-level object.
    enum Value: Equatable {
        case string(String)
        /// An integer that fits in `Int`.
        case integer(Int)
        /// Any other number, as written.
        case number(String)
        case bool(Bool)
        case null
        case array
        case object

        /// How an error message names the value: `"abc"`, `8.5`, `true`, `an array`.
        var shown: String {
            switch self {
            case .string(let s): RequestFile.quoted(s)
            case .integer(let i): String(i)
            case .number(let n): n
            case .bool(let b): String(b)
            case .null: "null"
            case .array: "an array"
            case .object: "an object"
            }
        }
    }

    /// Where and why the line is not valid JSON.
    struct Failure: Error, Equatable {
        /// 1-based character column.
        var column: Int
        var reason: String
    }

    private let bytes: [UInt8]
    private var index = 0
    private var depth = 0

    private init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The fields of the one object on the line, in order; throws on anything else.
    static func readObject(_ bytes: [UInt8]) throws(Failure) -> [(String, Value)] {
        var reader = JSONLineReader(bytes)
        reader.skipSpace()
        guard reader.index < bytes.count else { throw Failure(column: 1, reason: "empty line") }
        if bytes[reader.index] == UInt8(ascii: "[") {
            throw reader.fail("a JSON array is not JSON Lines: write one object per line")
        }
        guard bytes[reader.index] == UInt8(ascii: "{") else { throw reader.fail("expected an object starting with '{'") }
        let fields = try reader.objectFields()
        reader.skipSpace()
        if reader.index < bytes.count { throw reader.fail("unexpected text after the object") }
        return fields
    }

    private func fail(_ reason: String) -> Failure {
        // Column in characters: count the UTF-8 lead bytes before `index`.
        let column = bytes[..<min(index, bytes.count)].reduce(1) { $1 & 0xC0 == 0x80 ? $0 : $0 + 1 }
        return Failure(column: column, reason: reason)
    }

    private mutating func skipSpace() {
        while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
    }

    private mutating func expect(_ byte: UInt8, _ what: String) throws(Failure) {
        skipSpace()
        guard index < bytes.count else { throw fail("line ends where \(what) was expected") }
        guard bytes[index] == byte else { throw fail("expected \(what), found \(found())") }
        index += 1
    }

    private func found() -> String {
        guard index < bytes.count else { return "the end of the line" }
        let scalarEnd = bytes[index...].dropFirst().firstIndex { $0 & 0xC0 != 0x80 } ?? bytes.count
        return "'" + String(decoding: bytes[index..<scalarEnd], as: UTF8.self) + "'"
    }

    private mutating func objectFields() throws(Failure) -> [(String, Value)] {
        try expect(UInt8(ascii: "{"), "'{'")
        depth += 1
        defer { depth -= 1 }
        guard depth <= 32 else { throw fail("nested too deeply") }
        var fields: [(String, Value)] = []
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return fields }
        while true {
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                throw fail(index < bytes.count && bytes[index] == UInt8(ascii: "}") ? "trailing comma before '}'" : "expected a field name in double quotes, found \(found())")
            }
            let keyStart = index
            let key = try string()
            if fields.contains(where: { $0.0 == key }) {
                index = keyStart
                throw fail("field \(key) appears twice")
            }
            try expect(UInt8(ascii: ":"), "':' after field name \(RequestFile.quoted(key))")
            fields.append((key, try value()))
            skipSpace()
            guard index < bytes.count else { throw fail("line ends inside the object (missing '}')") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "}") { index += 1; return fields }
            throw fail("expected ',' or '}', found \(found())")
        }
    }

    private mutating func arrayValue() throws(Failure) {
        try expect(UInt8(ascii: "["), "'['")
        depth += 1
        defer { depth -= 1 }
        guard depth <= 32 else { throw fail("nested too deeply") }
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return }
        while true {
            _ = try value()
            skipSpace()
            guard index < bytes.count else { throw fail("line ends inside an array (missing ']')") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") { throw fail("trailing comma before ']'") }
                continue
            }
            if bytes[index] == UInt8(ascii: "]") { index += 1; return }
            throw fail("expected ',' or ']', found \(found())")
        }
    }

    private mutating func value() throws(Failure) -> Value {
        skipSpace()
        guard index < bytes.count else { throw fail("line ends where a value was expected") }
        switch bytes[index] {
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "{"): _ = try objectFields(); return .object
        case UInt8(ascii: "["): try arrayValue(); return .array
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default:
            for (word, result) in [("true", Value.bool(true)), ("false", .bool(false)), ("null", .null)] {
                let w = Array(word.utf8)
                if bytes.count - index >= w.count, Array(bytes[index..<index + w.count]) == w {
                    index += w.count
                    return result
                }
            }
            throw fail(bytes[index] == UInt8(ascii: "'") ? "strings need double quotes, found \(found())" : "expected a value, found \(found())")
        }
    }

    private mutating func number() throws(Failure) -> Value {
        let start = index
        func digits(_ reader: inout JSONLineReader) -> Int {
            let from = reader.index
            while reader.index < reader.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(reader.bytes[reader.index]) { reader.index += 1 }
            return reader.index - from
        }
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        let intStart = index
        let intDigits = digits(&self)
        guard intDigits > 0 else { throw fail("expected digits in a number") }
        if intDigits > 1 && bytes[intStart] == UInt8(ascii: "0") { index = intStart; throw fail("numbers must not have leading zeros") }
        var isInteger = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            isInteger = false
            guard digits(&self) > 0 else { throw fail("expected digits after '.'") }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            isInteger = false
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digits(&self) > 0 else { throw fail("expected digits in the exponent") }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        if isInteger, let value = Int(text) { return .integer(value) }
        return .number(text)
    }

    private mutating func string() throws(Failure) -> String {
        let open = index
        index += 1  // the opening quote
        var scalars = String.UnicodeScalarView()
        var runStart = index
        func flushRun(_ reader: JSONLineReader, _ end: Int) {
            scalars.append(contentsOf: String(decoding: reader.bytes[runStart..<end], as: UTF8.self).unicodeScalars)
        }
        while true {
            guard index < bytes.count else { index = open; throw fail("string is not closed (missing '\"')") }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                flushRun(self, index)
                index += 1
                return String(scalars)
            }
            if byte < 0x20 { throw fail("control character in a string (escape it)") }
            if byte != UInt8(ascii: "\\") { index += 1; continue }
            flushRun(self, index)
            index += 1
            guard index < bytes.count else { throw fail("string ends inside an escape") }
            let escaped = bytes[index]
            index += 1
            switch escaped {
            case UInt8(ascii: "\""): scalars.append("\"")
            case UInt8(ascii: "\\"): scalars.append("\\")
            case UInt8(ascii: "/"): scalars.append("/")
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                var code = try hex4()
                if (0xD800...0xDBFF).contains(code) {
                    guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                        throw fail("lone surrogate \\u\(String(code, radix: 16)) in a string")
                    }
                    index += 2
                    let low = try hex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw fail("invalid surrogate pair in a string") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(code) {
                    throw fail("lone surrogate \\u\(String(code, radix: 16)) in a string")
                }
                scalars.append(Unicode.Scalar(code)!)
            default:
                index -= 2
                throw fail("invalid escape '\\\(String(decoding: [escaped], as: UTF8.self))' in a string")
            }
            runStart = index
        }
    }

    private mutating func hex4() throws(Failure) -> UInt32 {
        guard bytes.count - index >= 4 else { throw fail("\\u needs 4 hex digits") }
        var code: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[index]
            let digit: UInt32
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(b - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(b - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(b - UInt8(ascii: "A") + 10)
            default: throw fail("\\u needs 4 hex digits")
            }
            code = code << 4 | digit
            index += 1
        }
        return code
    }
}
