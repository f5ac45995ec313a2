/// An aligned text table for humans: a header row, columns padded, numbers right-aligned.
///
/// A column is right-aligned when every non-empty cell below the header looks like a number
/// (`42`, `-1.5`, `12%`, `3.2/s`, `1,024`), unless its alignment is set. Colour (a bold header)
/// only when `render(color: true)`; pass `Console.colorEnabled(fd: 1)`.
public struct Table: Sendable, Equatable {
    /// How a column's cells line up.
    public enum Alignment: Sendable, Equatable {
        case left, right
    }

    /// The header cells.
    public var headers: [String]
    /// Per-column alignment; nil entries are decided from the content.
    public var alignments: [Alignment?]
    /// The data rows (shorter rows are padded with empty cells).
    public private(set) var rows: [[String]] = []

    /// A table with these column headers; `alignments` forces some columns' alignment.
    public init(_ headers: [String], alignments: [Alignment?] = []) {
        self.headers = headers
        self.alignments = alignments + Array(repeating: nil, count: max(0, headers.count - alignments.count))
    }

    /// Adds a row of cells.
    public mutating func append(_ row: [String]) {
        rows.append(row)
    }

    /// The alignment each column gets.
    public var resolvedAlignments: [Alignment] {
        headers.indices.map { column in
            if let forced = alignments[column] { return forced }
            let cells = rows.compactMap { column < $0.count ? $0[column] : nil }.filter { !$0.isEmpty }
            return !cells.isEmpty && cells.allSatisfy(Self.looksNumeric) ? .right : .left
        }
    }

    /// The table as lines, each ending in `\n`, columns two spaces apart, no trailing blanks.
    public func render(color: Bool = false) -> String {
        let aligned = resolvedAlignments
        let cleaned = ([headers] + rows).map { row in headers.indices.map { $0 < row.count ? Self.singleLine(row[$0]) : "" } }
        var widths = headers.indices.map { column in cleaned.map { $0[column].count }.max() ?? 0 }
        if widths.isEmpty { widths = [] }
        var out = ""
        for (index, row) in cleaned.enumerated() {
            var line = ""
            for column in headers.indices {
                let cell = row[column]
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                let isLast = column == headers.count - 1
                let padded = aligned[column] == .right ? padding + cell : cell + (isLast ? "" : padding)
                line += (column == 0 ? "" : "  ") + padded
            }
            while line.last == " " { line.removeLast() }
            out += (index == 0 && color ? Style.bold(line) : line) + "\n"
        }
        return out
    }

    /// True for cells like `42`, `-1.5`, `12%`, `1,024`, `3.2/s`, `250ms`.
    static func looksNumeric(_ cell: String) -> Bool {
        var body = Substring(cell)
        for suffix in ["/s", "/min", "ms", "%", "s"] where body.hasSuffix(suffix) {
            body = body.dropLast(suffix.count)
            break
        }
        if body.first == "-" || body.first == "+" { body = body.dropFirst() }
        guard let first = body.first, first.isASCII, first.isNumber else { return false }
        return body.allSatisfy { ($0.isASCII && $0.isNumber) || $0 == "." || $0 == "," }
    }

    /// Line breaks and tabs in a cell would break the layout: shown as spaces.
    static func singleLine(_ cell: String) -> String {
        guard cell.contains(where: { $0.isNewline || $0 == "\t" }) else { return cell }
        return String(cell.map { $0.isNewline || $0 == "\t" ? " " : $0 })
    }
}

/// ANSI styles, applied only where the caller decided colour is enabled.
public enum Style {
    /// `text` in bold.
    public static func bold(_ text: String) -> String { "\u{1B}[1m\(text)\u{1B}[0m" }
    /// `text` in red (failures).
    public static func red(_ text: String) -> String { "\u{1B}[31m\(text)\u{1B}[0m" }
    /// `text` in green (successes).
    public static func green(_ text: String) -> String { "\u{1B}[32m\(text)\u{1B}[0m" }
    /// `text` in yellow (warnings, running).
    public static func yellow(_ text: String) -> String { "\u{1B}[33m\(text)\u{1B}[0m" }
    /// `text` dimmed.
    public static func dim(_ text: String) -> String { "\u{1B}[2m\(text)\u{1B}[0m" }

    /// The colour for a job state's name, when `enabled`.
    public static func state(_ state: JobState, enabled: Bool) -> String {
        guard enabled else { return state.rawValue }
        switch state {
        case .succeeded: return green(state.rawValue)
        case .failed: return red(state.rawValue)
        case .running: return yellow(state.rawValue)
        case .queued, .cancelled: return state.rawValue
        }
    }
}
