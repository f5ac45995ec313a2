import Dispatch
public import Foundation

/// The format of log lines: `text` for humans, `json` (one object a line) for machines.
public enum LogFormat: String, Sendable, Equatable, CaseIterable {
    case text, json
}

/// Log levels, lowest first.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable, CustomStringConvertible {
    case debug, info, warning, error

    /// The name written in lines: `debug`, `info`, `warn`, `error`.
    public var description: String {
        switch self {
        case .debug: "debug"
        case .info: "info"
        case .warning: "warn"
        case .error: "error"
        }
    }

    /// Orders by severity.
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// Structured log lines to stderr (or a test sink), one serial queue for all threads.
///
/// `text`: `2026-12-03T17:51:51.123Z info  job.succeeded job=42 org=… attempt=1 ms=12`;
/// `json`: `{"ts":"…","level":"info","event":"job.succeeded","job":"42",…}`. Lines are formatted
/// on the caller's thread (the timestamp is the call's) and written in call order on
/// `Console.queue`. Callers must never pass secrets. Thread-safe; call `flush()` before exit.
public final class Logger: Sendable {
    /// Where formatted lines go; called on `Console.queue`, each line ending in `\n`.
    public struct Sink: Sendable {
        /// Receives one complete line.
        public let write: @Sendable (String) -> Void

        /// A sink calling `write` with each line.
        public init(_ write: @escaping @Sendable (String) -> Void) { self.write = write }

        /// Standard error, sharing the progress line logic of `Console`.
        public static let standardError = Sink { Console.writeErrOnQueue($0) }
    }

    /// The line format.
    public let format: LogFormat
    /// Lines below this level are dropped.
    public let minimumLevel: LogLevel
    private let sink: Sink
    private let clock: @Sendable () -> Date

    /// A logger writing `format` lines at `minimumLevel` and above to `sink`.
    public init(format: LogFormat = .text, minimumLevel: LogLevel = .info, sink: Sink = .standardError, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.format = format
        self.minimumLevel = minimumLevel
        self.sink = sink
        self.clock = clock
    }

    /// Logs `event` with ordered string `fields` at `level`.
    public func log(_ level: LogLevel, _ event: String, _ fields: KeyValuePairs<String, String> = [:]) {
        guard level >= minimumLevel else { return }
        let line = Self.format(format, date: clock(), level: level, event: event, fields: fields.map { ($0.key, $0.value) })
        let sink = self.sink
        Console.queue.async { sink.write(line) }
    }

    /// Logs `event` with fields built at run time, in their order.
    public func log(_ level: LogLevel, _ event: String, pairs: [(String, String)]) {
        guard level >= minimumLevel else { return }
        let line = Self.format(format, date: clock(), level: level, event: event, fields: pairs)
        let sink = self.sink
        Console.queue.async { sink.write(line) }
    }

    /// Logs at `debug`.
    public func debug(_ event: String, _ fields: KeyValuePairs<String, String> = [:]) { log(.debug, event, fields) }
    /// Logs at `info`.
    public func info(_ event: String, _ fields: KeyValuePairs<String, String> = [:]) { log(.info, event, fields) }
    /// Logs at `warning`.
    public func warning(_ event: String, _ fields: KeyValuePairs<String, String> = [:]) { log(.warning, event, fields) }
    /// Logs at `error`.
    public func error(_ event: String, _ fields: KeyValuePairs<String, String> = [:]) { log(.error, event, fields) }

    /// Waits until every line logged so far has been written.
    public func flush() { Console.queue.sync {} }

    /// One formatted line, ending in `\n`.
    public static func format(_ format: LogFormat, date: Date, level: LogLevel, event: String, fields: [(String, String)]) -> String {
        let timestamp = ISO8601.string(from: date)
        switch format {
        case .text:
            let levelName = level.description
            var line = timestamp + " " + levelName + String(repeating: " ", count: max(1, 6 - levelName.count)) + textValue(event)
            for (key, value) in fields {
                line += " " + textKey(key) + "=" + textValue(value)
            }
            return line + "\n"
        case .json:
            var line = "{\"ts\":\"\(timestamp)\",\"level\":\"\(level)\",\"event\":" + JSONOutput.quote(event)
            for (key, value) in fields {
                let name = ["ts", "level", "event"].contains(key) ? "_" + key : key
                line += "," + JSONOutput.quote(name) + ":" + JSONOutput.quote(value)
            }
            return line + "}\n"
        }
    }

    /// A key with anything but letters, digits, `_`, `.`, `-` replaced by `_`.
    static func textKey(_ key: String) -> String {
        let cleaned = String(key.unicodeScalars.map { scalar -> Character in
            isPlain(scalar) ? Character(scalar) : "_"
        })
        return cleaned.isEmpty ? "_" : cleaned
    }

    /// The value as is when it is plain, else double-quoted with `\"`, `\\`, `\n`, `\r`, `\t`, `\u{…}` escapes.
    static func textValue(_ value: String) -> String {
        if !value.isEmpty && value.unicodeScalars.allSatisfy({ isPlain($0) || $0 == ":" || $0 == "/" || $0 == "@" || $0 == "+" || $0 == "," }) {
            return value
        }
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F || scalar.properties.generalCategory == .control {
                    out += "\\u{" + String(scalar.value, radix: 16) + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    private static func isPlain(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "a"..."z", "A"..."Z", "0"..."9", "_", ".", "-": true
        default: false
        }
    }
}
