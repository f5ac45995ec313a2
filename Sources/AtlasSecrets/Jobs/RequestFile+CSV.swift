extension RequestFile {
    /// One CSV cell: its bytes and whether it was quoted (quoted cells are not trimmed).
    struct CSVCell {
        var bytes: [UInt8]
        var quoted: Bool
        var text: String { String(decoding: bytes, as: UTF8.self) }
    }

    /// One CSV record: its first line, its cells, or the reason it could not be split.
    struct CSVRecord {
        var line: Int
        var cells: [CSVCell]
        /// (0-based cell index, reason) when the record is malformed.
        var problem: (cell: Int, reason: String)?
        var isBlank: Bool { problem == nil && cells.count == 1 && !cells[0].quoted && cells[0].bytes.isEmpty }
    }

    /// Splits RFC 4180 CSV into records: quoted cells may hold commas, doubled quotes and line
    /// breaks; CRLF and a UTF-8 BOM are tolerated; unquoted cells are trimmed of spaces and tabs.
    static func csvRecords(_ bytes: [UInt8]) -> [CSVRecord] {
        let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ","), newline: UInt8 = 0x0A, cr: UInt8 = 0x0D
        var records: [CSVRecord] = []
        var i = bytes.starts(with: bom) ? 3 : 0
        var line = 1
        let n = bytes.count
        while i < n {
            var record = CSVRecord(line: line, cells: [])
            recordLoop: while true {
                var cell = CSVCell(bytes: [], quoted: false)
                // Leading blanks before an opening quote are allowed.
                var j = i
                while j < n, bytes[j] == 0x20 || bytes[j] == 0x09 { j += 1 }
                if j < n, bytes[j] == quote {
                    cell.quoted = true
                    i = j + 1
                    var closed = false
                    while i < n {
                        let b = bytes[i]
                        if b == quote {
                            if i + 1 < n, bytes[i + 1] == quote { cell.bytes.append(quote); i += 2; continue }
                            i += 1
                            closed = true
                            break
                        }
                        if b == newline { line += 1 }
                        cell.bytes.append(b)
                        i += 1
                    }
                    if !closed {
                        record.cells.append(cell)
                        record.problem = (record.cells.count - 1, "quoted value is not closed (missing '\"')")
                        records.append(record)
                        return records
                    }
                    while i < n, bytes[i] == 0x20 || bytes[i] == 0x09 { i += 1 }
                    if i < n, bytes[i] != comma, bytes[i] != newline, !(bytes[i] == cr && (i + 1 == n || bytes[i + 1] == newline)) {
                        if record.problem == nil { record.problem = (record.cells.count, "text after a closing quote (write a quote inside quotes as \"\")") }
                        while i < n, bytes[i] != comma, bytes[i] != newline { i += 1 }
                    }
                } else {
                    let start = i
                    while i < n, bytes[i] != comma, bytes[i] != newline { i += 1 }
                    var value = bytes[start..<i]
                    if value.last == cr, i == n || bytes[i] == newline { value = value.dropLast() }
                    while let f = value.first, f == 0x20 || f == 0x09 { value = value.dropFirst() }
                    while let l = value.last, l == 0x20 || l == 0x09 { value = value.dropLast() }
                    if value.contains(quote), record.problem == nil {
                        record.problem = (record.cells.count, "a quote inside an unquoted value (quote the whole value and double the quote)")
                    }
                    cell.bytes = Array(value)
                }
                record.cells.append(cell)
                if i < n, bytes[i] == comma { i += 1; if i == n { record.cells.append(CSVCell(bytes: [], quoted: false)) }; continue recordLoop }
                if i < n, bytes[i] == newline { i += 1; line += 1 }
                break recordLoop
            }
            if !record.isBlank { records.append(record) }
        }
        return records
    }

    /// CSV with a header row naming the columns (`fieldNames`); every record checked.
    static func parseCSV(_ bytes: [UInt8], file: String, errors: inout [RequestFileError]) -> [ParsedRequest] {
        var badUTF8Lines = Set<Int>()
        for line in lines(bytes) {
            if let bad = firstInvalidUTF8(line.bytes) {
                badUTF8Lines.insert(line.number)
                errors.append(RequestFileError(file: file, line: line.number, message: "not valid UTF-8 (byte offset \(line.offset + bad - line.bytes.startIndex) in the file)"))
            }
        }
        var records = csvRecords(bytes)[...]
        guard let header = records.popFirst() else { return [] }
        let names = header.cells.map { $0.text }
        func headerError(_ message: String) {
            errors.append(RequestFileError(file: file, line: header.line, message: message))
        }
        if let problem = header.problem {
            headerError("header: \(problem.reason)")
            return []
        }
        let found = "(found: \(names.joined(separator: ",")))"
        var headerOK = true
        for (index, name) in names.enumerated() {
            if !fieldNames.contains(name) {
                headerOK = false
                let hint = suggestion(for: name).map { "; did you mean \($0)?" } ?? ""
                headerError(name.isEmpty ? "header has an empty column name in position \(index + 1) \(found)" : "header has unknown column \(name)\(hint) \(found)")
            } else if names[..<index].contains(name) {
                headerOK = false
                headerError("header names column \(name) twice \(found)")
            }
        }
        for required in requiredFields where !names.contains(required) {
            headerOK = false
            headerError("header is missing column \(required) \(found)")
        }
        guard headerOK else { return [] }

        var requests: [ParsedRequest] = []
        for record in records where !badUTF8Lines.contains(record.line) {
            func report(_ column: String?, _ message: String) {
                errors.append(RequestFileError(file: file, line: record.line, column: column, message: message))
            }
            if let problem = record.problem {
                report(problem.cell < names.count ? names[problem.cell] : nil, problem.reason)
                continue
            }
            guard record.cells.count == names.count else {
                report(nil, "expected \(names.count) values (\(names.joined(separator: ","))), found \(record.cells.count)")
                continue
            }
            var fields: [String: JSONLineReader.Value] = [:]
            for (name, cell) in zip(names, record.cells) {
                let text = cell.text
                fields[name] = text.isEmpty ? .null : .string(text)
            }
            let request = makeRequest(fields, fromText: true) { column, problem in
                switch problem {
                case .missing: report(column, "value is missing")
                case .invalid(let detail): report(column, detail)
                }
            }
            if let request { requests.append(ParsedRequest(request: request, file: file, line: record.line)) }
        }
        return requests
    }
}
