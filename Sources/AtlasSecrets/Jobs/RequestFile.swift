/// One problem in a request file: where (file, line, CSV column or JSON field) and what.
public struct RequestFileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file's name as given (`-` is shown as `<stdin>`).
    public var file: String
    /// 1-based line number, or nil for a problem with the whole file.
    public var line: Int?
    /// The CSV column concerned, if any.
    public var column: String?
    /// The JSON field concerned, if any (its name also starts `message`).
    public var field: String?
    /// What is wrong, e.g. `"ten" is not an integer`.
    public var message: String

    /// A problem at `file:line`.
    public init(file: String, line: Int?, column: String? = nil, field: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        self.message = message
    }

    /// `jobs/x.csv:3: column secretExpiresAfterHours: "ten" is not an integer`.
    public var description: String {
        var out = file
        if let line { out += ":\(line)" }
        out += ": "
        if let column { out += "column \(column): " }
        return out + message
    }
}

/// Every problem found in one or more request files (exit 65); nothing was queued.
public struct RequestFileErrors: Error, Sendable, Equatable, CustomStringConvertible, ExitCodeProviding {
    /// The problems, in file and line order.
    public var errors: [RequestFileError]

    /// A list of problems.
    public init(_ errors: [RequestFileError]) { self.errors = errors }

    /// Always `.dataError` (65).
    public var exitCode: ExitCode { .dataError }

    /// One problem a line, then a count.
    public var description: String {
        let lines = errors.map(\.description).joined(separator: "\n")
        let badLines = Set(errors.compactMap { e in e.line.map { "\(e.file):\($0)" } }).count
        let files = Set(errors.filter { $0.line == nil }.map(\.file)).count
        var places: [String] = []
        if badLines > 0 { places.append("\(badLines) line\(badLines == 1 ? "" : "s")") }
        if files > 0 { places.append("\(files) file\(files == 1 ? "" : "s")") }
        return lines + "\n\(errors.count) problem\(errors.count == 1 ? "" : "s") in \(places.joined(separator: " and ")); nothing was queued."
    }
}

/// A valid request with where it came from.
public struct ParsedRequest: Sendable, Equatable {
    /// The request.
    public var request: JobRequest
    /// The file it came from.
    public var file: String
    /// Its 1-based line number (the first line of a multi-line CSV record).
    public var line: Int

    /// A request read from `file:line`.
    public init(request: JobRequest, file: String, line: Int) {
        self.request = request
        self.file = file
        self.line = line
    }
}

/// Reading request files: JSON Lines or CSV, every line validated, every problem reported.
public enum RequestFile {
    /// The two formats `enqueue` reads.
    public enum Format: String, Sendable, Equatable, CaseIterable {
        /// One JSON object a line (`.jsonl`, `.ndjson`, `.json`).
        case jsonLines
        /// RFC 4180 CSV with a header row (`.csv`).
        case csv
    }

    /// The column or field names of a request; the first three are required.
    public static let fieldNames = ["orgId", "clientId", "secretExpiresAfterHours", "idempotencyKey", "priority"]
    static let requiredFields = ["orgId", "clientId", "secretExpiresAfterHours"]
    /// The longest idempotency key accepted, in UTF-8 bytes.
    public static let maxIdempotencyKeyLength = 200
    /// The prefix of derived keys; explicit keys may not use it.
    public static let derivedKeyPrefix = "auto:"
    /// Priorities fit a PostgreSQL `integer`.
    public static let priorityRange = Int(Int32.min)...Int(Int32.max)

    /// The format named by the file's extension, or nil when the extension says nothing.
    public static func format(forName name: String) -> Format? {
        guard let dot = name.lastIndex(of: "."), !name[dot...].contains("/") else { return nil }
        switch name[name.index(after: dot)...].lowercased() {
        case "jsonl", "ndjson", "json": return .jsonLines
        case "csv": return .csv
        default: return nil
        }
    }

    /// The format by extension, else by the first non-blank character (`{` or `[`: JSON Lines).
    public static func detectFormat(name: String, bytes: [UInt8]) -> Format {
        if name != "-", let format = format(forName: name) { return format }
        let body = bytes.starts(with: bom) ? bytes.dropFirst(3) : bytes[...]
        let first = body.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
        return first == UInt8(ascii: "{") || first == UInt8(ascii: "[") ? .jsonLines : .csv
    }

    /// All requests of one file, or every problem found in it.
    ///
    /// `name` is used in messages (`-` shows as `<stdin>`); `format` nil means detect it.
    /// Checks every line: ids, hours in `JobRequest.expiryHoursRange`, unknown fields, UTF-8,
    /// and explicit idempotency keys reused with different content.
    public static func parse(_ bytes: [UInt8], name: String, format: Format? = nil) throws(RequestFileErrors) -> [ParsedRequest] {
        let shownName = name == "-" ? "<stdin>" : name
        let chosen = format ?? detectFormat(name: name, bytes: bytes)
        var errors: [RequestFileError] = []
        var requests: [ParsedRequest]
        switch chosen {
        case .jsonLines: requests = parseJSONLines(bytes, file: shownName, errors: &errors)
        case .csv: requests = parseCSV(bytes, file: shownName, errors: &errors)
        }
        errors += duplicateKeyErrors(requests)
        if errors.isEmpty && requests.isEmpty {
            errors.append(RequestFileError(file: shownName, line: nil, message: "file is empty (no requests)"))
        }
        guard errors.isEmpty else {
            requests = []
            throw RequestFileErrors(errors.sorted { ($0.line ?? 0) < ($1.line ?? 0) })
        }
        return requests
    }

    /// All requests of several files, in order, or every problem in all of them (including an
    /// explicit idempotency key reused across files with different content).
    public static func parse(files: [(name: String, bytes: [UInt8])]) throws(RequestFileErrors) -> [ParsedRequest] {
        var all: [ParsedRequest] = []
        var errors: [RequestFileError] = []
        for file in files {
            do throws(RequestFileErrors) {
                all += try parse(file.bytes, name: file.name)
            } catch {
                errors += error.errors
            }
        }
        if errors.isEmpty { errors = duplicateKeyErrors(all) }
        guard errors.isEmpty else { throw RequestFileErrors(errors) }
        return all
    }

    /// Problems for explicit idempotency keys used again with a different org, client, hours or priority.
    public static func duplicateKeyErrors(_ requests: [ParsedRequest]) -> [RequestFileError] {
        var firstUse: [String: ParsedRequest] = [:]
        var errors: [RequestFileError] = []
        for parsed in requests {
            guard let key = parsed.request.idempotencyKey else { continue }
            guard let earlier = firstUse[key] else { firstUse[key] = parsed; continue }
            var a = earlier.request, b = parsed.request
            a.idempotencyKey = nil
            b.idempotencyKey = nil
            guard a != b else { continue }
            let place = earlier.file == parsed.file ? "line \(earlier.line)" : "\(earlier.file):\(earlier.line)"
            errors.append(RequestFileError(
                file: parsed.file, line: parsed.line, field: "idempotencyKey",
                message: "idempotencyKey \(quoted(key)) is already used by \(place) with different content"
            ))
        }
        return errors
    }

    // MARK: - Shared by both formats

    static let bom: [UInt8] = [0xEF, 0xBB, 0xBF]

    /// A problem with one field of one request.
    enum FieldProblem {
        case missing
        case invalid(String)
    }

    /// A request from field values, or nil after reporting each problem through `report`.
    ///
    /// `fromText`: values come from CSV cells, so integers may be written as strings.
    static func makeRequest(_ fields: [String: JSONLineReader.Value], fromText: Bool, report: (String, FieldProblem) -> Void) -> JobRequest? {
        var ok = true
        func problem(_ field: String, _ p: FieldProblem) { ok = false; report(field, p) }

        func string(_ field: String) -> String? {
            switch fields[field] ?? .null {
            case .null: return nil
            case .string(let s): return s
            case let other: problem(field, .invalid("must be a string, got \(other.shown)")); return nil
            }
        }
        func integer(_ field: String) -> Int? {
            switch fields[field] ?? .null {
            case .null: return nil
            case .integer(let i): return i
            case .string(let s) where fromText:
                if let i = Int(s) { return i }
                problem(field, .invalid("\(quoted(s)) is not an integer"))
            case .string(let s): problem(field, .invalid("must be a number, not the string \(quoted(s))"))
            case .number(let n): problem(field, .invalid("\(n) is not an integer"))
            case let other: problem(field, .invalid("must be an integer, got \(other.shown)"))
            }
            return nil
        }

        let orgId = string("orgId")
        if let orgId, !AtlasIdentifier.isOrgId(orgId) {
            problem("orgId", .invalid("\(quoted(orgId)) is not 24 lowercase hex characters"))
        } else if orgId == nil, fields["orgId"] ?? .null == .null {
            problem("orgId", .missing)
        }
        let clientId = string("clientId")
        if let clientId, !AtlasIdentifier.isClientId(clientId) {
            problem("clientId", .invalid("\(quoted(clientId)) is not mdb_sa_id_ followed by 24 hex characters"))
        } else if clientId == nil, fields["clientId"] ?? .null == .null {
            problem("clientId", .missing)
        }
        let hours = integer("secretExpiresAfterHours")
        let range = JobRequest.expiryHoursRange
        if let hours, !range.contains(hours) {
            problem("secretExpiresAfterHours", .invalid("\(hours) is outside \(range.lowerBound)...\(range.upperBound) hours"))
        } else if hours == nil, fields["secretExpiresAfterHours"] ?? .null == .null {
            problem("secretExpiresAfterHours", .missing)
        }
        var key = string("idempotencyKey")
        if let k = key {
            if k.isEmpty {
                if fromText { key = nil } else { problem("idempotencyKey", .invalid("must not be empty (leave it out to derive one)")) }
            } else if k.utf8.count > maxIdempotencyKeyLength {
                problem("idempotencyKey", .invalid("is longer than \(maxIdempotencyKeyLength) bytes"))
            } else if k.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                problem("idempotencyKey", .invalid("\(quoted(k)) contains a control character"))
            } else if k.hasPrefix(derivedKeyPrefix) {
                problem("idempotencyKey", .invalid("\(quoted(k)) starts with \"\(derivedKeyPrefix)\", which is reserved for derived keys"))
            }
        }
        let priority = integer("priority")
        if let priority, !priorityRange.contains(priority) {
            problem("priority", .invalid("\(priority) is outside \(priorityRange.lowerBound)...\(priorityRange.upperBound)"))
        }
        guard ok, let orgId, let clientId, let hours else { return nil }
        return JobRequest(orgId: orgId, clientId: clientId, secretExpiresAfterHours: hours, idempotencyKey: key, priority: priority ?? 0)
    }

    /// `text` in double quotes with JSON escapes, cut to 60 characters: safe to show in a message.
    static func quoted(_ text: String) -> String {
        text.count > 60 ? JSONOutput.quote(String(text.prefix(60))) + "…" : JSONOutput.quote(text)
    }

    /// The field name closest to `name`, for "did you mean".
    static func suggestion(for name: String) -> String? {
        Suggestion.nearest(to: name.lowercased(), in: fieldNames.map { $0.lowercased() })
            .flatMap { lower in fieldNames.first { $0.lowercased() == lower } }
    }

    /// Lines of `bytes` (without BOM, `\n`, trailing `\r`), each with its number and its offset in the file.
    static func lines(_ bytes: [UInt8]) -> [(number: Int, offset: Int, bytes: ArraySlice<UInt8>)] {
        var result: [(Int, Int, ArraySlice<UInt8>)] = []
        var start = bytes.starts(with: bom) ? 3 : 0
        var number = 1
        while start <= bytes.count {
            let end = bytes[start...].firstIndex(of: 0x0A) ?? bytes.count
            var line = bytes[start..<end]
            if line.last == 0x0D { line = line.dropLast() }
            if end < bytes.count || !line.isEmpty { result.append((number, start, line)) }
            number += 1
            start = end + 1
        }
        return result
    }

    /// The index of the first byte that is not valid UTF-8, or nil when all of it is valid.
    static func firstInvalidUTF8(_ bytes: ArraySlice<UInt8>) -> Int? {
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            let length: Int
            var minimum: UInt32 = 0
            switch b {
            case 0x00...0x7F: i += 1; continue
            case 0xC2...0xDF: length = 2; minimum = 0x80
            case 0xE0...0xEF: length = 3; minimum = 0x800
            case 0xF0...0xF4: length = 4; minimum = 0x10000
            default: return i
            }
            guard bytes.endIndex - i >= length else { return i }
            var code = UInt32(b) & (0xFF >> (length + 1))
            for k in 1..<length {
                let c = bytes[i + k]
                guard c & 0xC0 == 0x80 else { return i }
                code = code << 6 | UInt32(c & 0x3F)
            }
            guard code >= minimum, code <= 0x10FFFF, !(0xD800...0xDFFF).contains(code) else { return i }
            i += length
        }
        return nil
    }
}

extension JobRequest {
    /// The key used when the line has none: `auto:` + first 32 hex of SHA-256 over batch, orgId,
    /// clientId, hours, priority (each length-prefixed, so no two inputs collide by shifting text).
    /// Same line + same batch = same key. An explicit key is returned as is.
    public func effectiveIdempotencyKey(batch: String) -> String {
        if let idempotencyKey { return idempotencyKey }
        let parts = [batch, orgId, clientId, String(secretExpiresAfterHours), String(priority)]
        let material = "atlas-secrets.request.v1" + parts.map { "\n\($0.utf8.count):\($0)" }.joined()
        return RequestFile.derivedKeyPrefix + Hashing.hex(material, .sha256).prefix(32)
    }
}
