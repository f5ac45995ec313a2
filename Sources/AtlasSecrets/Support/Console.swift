public import Dispatch
public import Foundation

/// Results to stdout and messages to stderr, through one serial queue shared with `Logger` and
/// `ProgressBar`, so lines from concurrent threads never interleave.
///
/// Thread-safe. Writes are asynchronous: call `flush()` before the process exits.
public enum Console {
    /// The one queue every console write goes through.
    public static let queue = DispatchQueue(label: "atlas-secrets.console")

    /// Writes `text` and `terminator` to stdout (asynchronously, in call order).
    public static func out(_ text: String, terminator: String = "\n") {
        let bytes = Array((text + terminator).utf8)
        queue.async { writeAll(bytes, to: 1) }
    }

    /// Writes `text` and `terminator` to stderr, clearing and redrawing an active progress line around it.
    public static func err(_ text: String, terminator: String = "\n") {
        let line = text + terminator
        queue.async { writeErrOnQueue(line) }
    }

    /// Waits until every queued write is done, then flushes C stdio buffers (`fflush(nil)`).
    public static func flush() {
        queue.sync {}
        fflush(nil)
    }

    /// Flushes, then ends the process with `code`.
    public static func exit(_ code: ExitCode) -> Never {
        flush()
        Foundation.exit(code.rawValue)
    }

    /// True when `fd` is a terminal.
    public static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// True when colour may be used on `fd`: a terminal, `NO_COLOR` unset or empty, `TERM` not `dumb`.
    public static func colorEnabled(fd: Int32, environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        guard isTerminal(fd) else { return false }
        if let noColor = environment["NO_COLOR"], !noColor.isEmpty { return false }
        return environment["TERM"] != "dumb"
    }

    /// The width of the terminal on stderr: `COLUMNS` when set, else 80.
    public static func terminalWidth(environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        if let text = environment["COLUMNS"], let columns = Int(text), columns >= 20 { return columns }
        return 80
    }

    // MARK: - State touched only on `queue`

    /// The progress line currently drawn on stderr (a TTY), or nil.
    final class StatusLine: @unchecked Sendable {  // mutated only on Console.queue
        var text: String?
    }
    static let statusLine = StatusLine()

    /// On `queue`: writes a stderr line, keeping the progress line (if any) below it.
    static func writeErrOnQueue(_ line: String) {
        dispatchPrecondition(condition: .onQueue(queue))
        if let status = statusLine.text {
            writeAll(Array(("\r\u{1B}[K" + line + status).utf8), to: 2)
        } else {
            writeAll(Array(line.utf8), to: 2)
        }
    }

    /// On `queue`: draws (or, with nil, erases) the progress line on stderr.
    static func setStatusLineOnQueue(_ text: String?) {
        dispatchPrecondition(condition: .onQueue(queue))
        if let text {
            writeAll(Array(("\r\u{1B}[K" + text).utf8), to: 2)
        } else if statusLine.text != nil {
            writeAll(Array("\r\u{1B}[K".utf8), to: 2)
        }
        statusLine.text = text
    }

    /// Writes every byte to `fd`, retrying on EINTR and short writes; gives up on other errors.
    static func writeAll(_ bytes: [UInt8], to fd: Int32) {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n > 0 {
                    offset += n
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
    }
}
