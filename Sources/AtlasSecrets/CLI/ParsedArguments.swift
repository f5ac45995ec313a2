/// The raw values of one command line, split by a `CommandSpec`, with typed, validating getters.
///
/// Getters throw `UsageError` naming the option and the bad value; they return nil when the
/// option was not given, so the options struct keeps its declared default.
public struct ParsedArguments: Sendable, Equatable {
    /// The declaration the arguments were split by.
    public let spec: CommandSpec
    /// Option name (without dashes) to its value, for options that take one.
    public private(set) var values: [String: String] = [:]
    /// Names of the flags that were given.
    public private(set) var flags: Set<String> = []
    /// The positional arguments, in order.
    public private(set) var positionals: [String] = []

    /// Splits `arguments` (those after the subcommand's name) by `spec`.
    ///
    /// Accepts `--name value`, `--name=value`, `--` (everything after is positional) and `-` as a
    /// positional. Throws on an unknown option (suggesting the nearest), a missing value, a value
    /// given to a flag, or an option given twice.
    public init(_ arguments: [String], spec: CommandSpec) throws(UsageError) {
        self.spec = spec
        var index = 0
        var onlyPositionals = false
        while index < arguments.count {
            let token = arguments[index]
            index += 1
            if onlyPositionals || token == "-" || !token.hasPrefix("-") || Self.isNegativeNumber(token) {
                positionals.append(token)
                continue
            }
            if token == "--" {
                onlyPositionals = true
                continue
            }
            guard token.hasPrefix("--") else { throw unknownOption(token) }
            let body = token.dropFirst(2)
            let name: String
            var inlineValue: String?
            if let equals = body.firstIndex(of: "=") {
                name = String(body[..<equals])
                inlineValue = String(body[body.index(after: equals)...])
            } else {
                name = String(body)
            }
            guard let option = spec.option(named: name) else { throw unknownOption("--" + name) }
            guard values[name] == nil, !flags.contains(name) else {
                throw error("option '--\(name)' is given more than once")
            }
            guard let valueName = option.valueName else {
                if inlineValue != nil { throw error("option '--\(name)' takes no value, got '\(token)'") }
                flags.insert(name)
                continue
            }
            if let inlineValue {
                values[name] = inlineValue
            } else if index < arguments.count, !arguments[index].hasPrefix("--") {
                values[name] = arguments[index]
                index += 1
            } else {
                throw error("option '--\(name)' needs a value (--\(name) \(valueName))")
            }
        }
    }

    static func isNegativeNumber(_ token: String) -> Bool {
        token.count > 1 && token.hasPrefix("-") && token.dropFirst().allSatisfy(\.isNumber)
    }

    /// A usage error for this command with `message`.
    public func error(_ message: String) -> UsageError {
        UsageError(message: message, usage: spec.usage, command: spec.name)
    }

    private func unknownOption(_ option: String) -> UsageError {
        let candidates = spec.options.map { "--" + $0.name } + ["--help"]
        if let near = Suggestion.nearest(to: option, in: candidates) {
            return error("unknown option '\(option)'; did you mean '\(near)'?")
        }
        return error("unknown option '\(option)'")
    }

    private func checkDeclared(_ name: String) {
        precondition(spec.option(named: name) != nil, "option --\(name) is not declared by \(spec.name)")
    }

    /// True when the flag `--name` was given.
    public func flag(_ name: String) -> Bool {
        checkDeclared(name)
        return flags.contains(name)
    }

    /// True when the option `--name` was given, with or without a value.
    public func isGiven(_ name: String) -> Bool {
        checkDeclared(name)
        return flags.contains(name) || values[name] != nil
    }

    /// The value of `--name`, or nil; an empty value is an error.
    public func string(_ name: String) throws(UsageError) -> String? {
        checkDeclared(name)
        guard let value = values[name] else { return nil }
        guard !value.isEmpty else { throw error("option '--\(name)' needs a non-empty value") }
        return value
    }

    /// The integer value of `--name`, which must lie in `range`, or nil.
    public func int(_ name: String, in range: ClosedRange<Int>) throws(UsageError) -> Int? {
        guard let text = try string(name) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw error("option '--\(name)' must be an integer in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
        }
        return value
    }

    /// The number of seconds in `--name` (`20`, `2.5`), which must lie in `range`, or nil.
    public func seconds(_ name: String, in range: ClosedRange<Double>) throws(UsageError) -> Double? {
        guard let text = try string(name) else { return nil }
        guard let value = Double(text), value.isFinite, range.contains(value) else {
            throw error("option '--\(name)' must be a number of seconds in \(Self.format(range.lowerBound))...\(Self.format(range.upperBound)), got '\(text)'")
        }
        return value
    }

    /// The value of `--name` as one of `E`'s raw values, or nil.
    public func choice<E: RawRepresentable & CaseIterable>(_ name: String, as type: E.Type) throws(UsageError) -> E? where E.RawValue == String {
        guard let text = try string(name) else { return nil }
        guard let value = E(rawValue: text) else {
            let allowed = E.allCases.map(\.rawValue).joined(separator: "|")
            throw error("option '--\(name)' must be one of \(allowed), got '\(text)'")
        }
        return value
    }

    /// The organization id in `--name`, checked against `AtlasIdentifier.isOrgId`, or nil.
    public func orgId(_ name: String) throws(UsageError) -> String? {
        guard let text = try string(name) else { return nil }
        guard AtlasIdentifier.isOrgId(text) else {
            throw error("option '--\(name)': '\(text)' is not an organization id (24 lowercase hex characters)")
        }
        return text
    }

    /// A batch name in `--name`: 1 to 200 characters, no control characters; or nil.
    public func batchName(_ name: String) throws(UsageError) -> String? {
        guard let text = try string(name) else { return nil }
        guard text.count <= 200, !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw error("option '--\(name)': a batch name has 1 to 200 characters and no control characters")
        }
        return text
    }

    /// The positional arguments parsed as job ids (positive integers); names the first bad one.
    public func jobIDs() throws(UsageError) -> [Int64] {
        var ids: [Int64] = []
        for text in positionals {
            guard let id = Int64(text), id > 0 else { throw error("job id '\(text)' is not a positive integer") }
            ids.append(id)
        }
        return ids
    }

    /// Throws when positional arguments were given to a command that takes none.
    public func expectNoPositionals() throws(UsageError) {
        if let first = positionals.first { throw error("unexpected argument '\(first)'") }
    }

    /// `20` rather than `20.0`; other values as Swift prints them.
    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}

/// "Did you mean" suggestions by edit distance.
enum Suggestion {
    /// The candidate closest to `word`, if it is close enough to be a plausible typo.
    static func nearest(to word: String, in candidates: [String]) -> String? {
        let scored = candidates.map { ($0, distance(word, $0)) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        let allowed = max(2, word.count / 3)
        if best.1 <= allowed { return best.0 }
        // A prefix typed in full (`--conc` for `--concurrency`) is also a good hint.
        if word.count >= 4, let prefixed = candidates.first(where: { $0.hasPrefix(word) }) { return prefixed }
        return nil
    }

    /// Levenshtein distance over characters.
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
