extension RequestFile {
    /// JSON Lines: one object a line; blank lines skipped; every line checked.
    static func parseJSONLines(_ bytes: [UInt8], file: String, errors: inout [RequestFileError]) -> [ParsedRequest] {
        var requests: [ParsedRequest] = []
        for line in lines(bytes) {
            if let bad = firstInvalidUTF8(line.bytes) {
                errors.append(RequestFileError(file: file, line: line.number, message: "not valid UTF-8 (byte offset \(line.offset + bad - line.bytes.startIndex) in the file)"))
                continue
            }
            if line.bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            let fields: [(String, JSONLineReader.Value)]
            do throws(JSONLineReader.Failure) {
                fields = try JSONLineReader.readObject(Array(line.bytes))
            } catch {
                errors.append(RequestFileError(file: file, line: line.number, message: "broken JSON at column \(error.column): \(error.reason)"))
                continue
            }
            var lineOK = true
            for (name, _) in fields where !fieldNames.contains(name) {
                lineOK = false
                let hint = suggestion(for: name).map { "; did you mean \"\($0)\"?" } ?? " (known: \(fieldNames.joined(separator: ", ")))"
                errors.append(RequestFileError(file: file, line: line.number, field: name, message: "unknown field \(quoted(name))\(hint)"))
            }
            let request = makeRequest(Dictionary(fields, uniquingKeysWith: { a, _ in a }), fromText: false) { field, problem in
                let message = switch problem {
                case .missing: "missing field \(field)"
                case .invalid(let detail): "\(field) \(detail)"
                }
                errors.append(RequestFileError(file: file, line: line.number, field: field, message: message))
            }
            if lineOK, let request { requests.append(ParsedRequest(request: request, file: file, line: line.number)) }
        }
        return requests
    }
}
