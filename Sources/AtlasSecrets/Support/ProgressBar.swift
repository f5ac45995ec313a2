import Foundation
import Synchronization

/// Progress on stderr: one redrawn line on a terminal (done/total, percent, rate, ETA), or
/// plain lines every `plainInterval` seconds otherwise.
///
/// Thread-safe: `advance` may be called from any thread; drawing goes through `Console.queue`,
/// so log lines written meanwhile appear above the bar. Call `finish()` at the end.
public final class ProgressBar: Sendable {
    /// How the progress is shown.
    public enum Mode: Sendable, Equatable {
        /// A redrawn bar when stderr is a terminal, else plain lines.
        case automatic
        /// A redrawn bar even when stderr is not a terminal (`--progress`).
        case bar
        /// Plain lines.
        case lines
        /// Nothing.
        case off
    }

    private struct State {
        var done = 0
        var total: Int
        var lastDraw: Double = -1
        var lastCounts: (done: Int, total: Int)?
    }

    private let state: Mutex<State>
    private let label: String
    private let useBar: Bool
    private let isOff: Bool
    private let start: Double
    private let barInterval: Double
    private let plainInterval: Double

    /// A progress display for `total` items (0 when not known yet).
    public init(total: Int, label: String = "jobs", mode: Mode = .automatic, plainInterval: Double = 10) {
        self.state = Mutex(State(total: total))
        self.label = label
        self.isOff = mode == .off
        self.useBar = mode == .bar || (mode == .automatic && Console.isTerminal(2))
        self.start = Self.now()
        self.barInterval = 0.1
        self.plainInterval = plainInterval
    }

    /// Counts `count` more items done and redraws if it is time.
    public func advance(by count: Int = 1) {
        update { $0.done += count }
    }

    /// Sets how many items are done (when the count comes from elsewhere, e.g. the database).
    public func setDone(_ done: Int) {
        update { $0.done = done }
    }

    /// Sets the total (when more work was found).
    public func setTotal(_ total: Int) {
        update { $0.total = total }
    }

    /// Draws the final state and ends the bar's line.
    public func finish() {
        guard !isOff else { return }
        let useBar = self.useBar
        let text: String? = state.withLock { s in
            // Plain lines: the last line already said this.
            if !useBar, let last = s.lastCounts, last == (s.done, s.total) { return nil }
            return Self.render(done: s.done, total: s.total, elapsed: Self.now() - start, label: label, width: useBar ? Console.terminalWidth() : nil)
        }
        guard let text else { return }
        Console.queue.async {
            if useBar {
                Console.setStatusLineOnQueue(nil)
                Console.writeAll(Array((text + "\n").utf8), to: 2)
            } else {
                Console.writeErrOnQueue(text + "\n")
            }
        }
    }

    private func update(_ change: (inout State) -> Void) {
        guard !isOff else { return }
        let now = Self.now()
        let interval = useBar ? barInterval : plainInterval
        let text: String? = state.withLock { s in
            change(&s)
            guard now - s.lastDraw >= interval || (s.total > 0 && s.done >= s.total) else { return nil }
            s.lastDraw = now
            s.lastCounts = (s.done, s.total)
            return Self.render(done: s.done, total: s.total, elapsed: now - start, label: label, width: self.useBar ? Console.terminalWidth() : nil)
        }
        guard let text else { return }
        let useBar = self.useBar
        Console.queue.async {
            if useBar { Console.setStatusLineOnQueue(text) } else { Console.writeErrOnQueue(text + "\n") }
        }
    }

    /// One progress line. With `width`, a bar filling it: `[=====>    ] 312/520  60%  41.2/s  ETA 0:05`;
    /// without, a plain line: `jobs 312/520 (60%) 41.2/s ETA 0:05`.
    public static func render(done: Int, total: Int, elapsed: Double, label: String = "jobs", width: Int? = nil) -> String {
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let rateText = formatRate(rate)
        let counts = total > 0 ? "\(done)/\(total)" : "\(done)"
        let percent = total > 0 ? min(100, done * 100 / total) : nil
        var eta: String?
        if total > 0, rate > 0, done < total { eta = formatDuration(Double(total - done) / rate) }
        guard let width else {
            var line = "\(label) \(counts)"
            if let percent { line += " (\(percent)%)" }
            line += " \(rateText)"
            if let eta { line += " ETA \(eta)" }
            return line
        }
        var tail = " \(counts)"
        if let percent { tail += "  \(String(repeating: " ", count: 3 - String(percent).count))\(percent)%" }
        tail += "  \(rateText)"
        if let eta { tail += "  ETA \(eta)" }
        let barWidth = max(10, width - 1 - tail.count - 2)
        let filled = total > 0 ? min(barWidth, done * barWidth / total) : 0
        var bar = String(repeating: "=", count: filled)
        if filled < barWidth {
            bar += total > 0 && filled > 0 ? ">" : " "
            bar += String(repeating: " ", count: barWidth - filled - 1)
        }
        return "[\(bar)]" + tail
    }

    /// `41.2/s`, `1234/s`.
    static func formatRate(_ rate: Double) -> String {
        rate >= 100 ? "\(Int(rate.rounded()))/s" : "\(Double(Int((rate * 10).rounded())) / 10)/s"
    }

    /// `0:05`, `12:30`, `1:02:03`.
    static func formatDuration(_ seconds: Double) -> String {
        let total = Int(seconds.rounded(.up))
        let h = total / 3600, m = (total % 3600) / 60, s = total % 60
        let ss = s < 10 ? "0\(s)" : "\(s)"
        if h > 0 { return "\(h):\(m < 10 ? "0\(m)" : "\(m)"):\(ss)" }
        return "\(m):\(ss)"
    }

    private static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
