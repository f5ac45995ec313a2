/// One `--name` option of a command, declared once: parsing and `--help` both read it.
public struct OptionSpec: Sendable, Equatable {
    /// The long name without dashes, e.g. `concurrency`.
    public var name: String
    /// The value's placeholder (`N`, `FILE`), or nil for a flag that takes no value.
    public var valueName: String?
    /// One line for `--help`.
    public var help: String
    /// The default shown in `--help`, or nil when there is none.
    public var defaultValue: String?

    /// An option that takes a value: `--name VALUE` or `--name=VALUE`.
    public static func value(_ name: String, _ valueName: String, _ help: String, default defaultValue: String? = nil) -> OptionSpec {
        OptionSpec(name: name, valueName: valueName, help: help, defaultValue: defaultValue)
    }

    /// A flag that takes no value: `--name`.
    public static func flag(_ name: String, _ help: String) -> OptionSpec {
        OptionSpec(name: name, valueName: nil, help: help, defaultValue: nil)
    }

    /// `--name` or `--name VALUE`, as the usage line shows it.
    public var synopsis: String {
        valueName.map { "--\(name) \($0)" } ?? "--\(name)"
    }
}

/// A positional argument of a command, declared once.
public struct ArgumentSpec: Sendable, Equatable {
    /// The placeholder, e.g. `JOB_ID`.
    public var name: String
    /// One line for `--help`.
    public var help: String
    /// True when the argument may be given several times (`JOB_ID…`).
    public var repeating: Bool

    /// A positional argument; `repeating` when it takes a list.
    public init(_ name: String, _ help: String, repeating: Bool = false) {
        self.name = name
        self.help = help
        self.repeating = repeating
    }
}

/// The declaration of one subcommand: its name, summary, options and arguments.
public struct CommandSpec: Sendable, Equatable {
    /// The subcommand's name, e.g. `worker`.
    public var name: String
    /// The one-line summary the root help lists.
    public var abstract: String
    /// A longer explanation shown by `--help`, or empty.
    public var discussion: String
    /// The positional arguments, in order.
    public var arguments: [ArgumentSpec]
    /// The `--` options, in the order `--help` shows them.
    public var options: [OptionSpec]
    /// Usage lines written by hand when the command has several forms; nil to generate one.
    public var usageForms: [String]?

    /// A command declaration.
    public init(
        name: String, abstract: String, discussion: String = "", arguments: [ArgumentSpec] = [],
        options: [OptionSpec] = [], usageForms: [String]? = nil
    ) {
        self.name = name
        self.abstract = abstract
        self.discussion = discussion
        self.arguments = arguments
        self.options = options
        self.usageForms = usageForms
    }

    /// The option named `name` (without dashes), if the command has one.
    public func option(named name: String) -> OptionSpec? {
        options.first { $0.name == name }
    }

    /// The usage line(s), e.g. `atlas-secrets show JOB_ID [--json]`; several forms, and lines
    /// wrapped at 80 columns, continue on lines indented to follow a 7-character `Usage: ` prefix.
    public var usage: String {
        let forms: [[String]] = usageForms.map { $0.map { [$0] } } ?? [
            arguments.map { $0.repeating ? "\($0.name)…" : $0.name } + options.map { "[\($0.synopsis)]" }
        ]
        return forms.map { HelpLayout.wrapUsage(command: name, parts: $0) }.joined(separator: "\n       ")
    }

    /// The full `--help` text: overview, usage, arguments, options with defaults.
    public var helpText: String {
        var out = "OVERVIEW: \(abstract)\n"
        if !discussion.isEmpty { out += "\n" + HelpLayout.wrap(discussion, indent: 0) + "\n" }
        out += "\nUSAGE: " + usage + "\n"
        if !arguments.isEmpty {
            out += "\nARGUMENTS:\n"
            out += HelpLayout.twoColumns(arguments.map { ($0.repeating ? "<\($0.name)>…" : "<\($0.name)>", $0.help) })
        }
        var rows = options.map { option -> (String, String) in
            let help = option.defaultValue.map { "\(option.help) (default: \($0))" } ?? option.help
            return (option.synopsis, help)
        }
        rows.append(("-h, --help", "Show help information."))
        out += "\nOPTIONS:\n" + HelpLayout.twoColumns(rows)
        return out
    }
}

/// Column layout for help texts.
enum HelpLayout {
    static let width = 80

    /// Rows of `  left   right`, the right column wrapped and aligned.
    static func twoColumns(_ rows: [(String, String)]) -> String {
        let leftWidth = min(28, (rows.map { $0.0.count }.max() ?? 0) + 2)
        var out = ""
        for (left, right) in rows {
            let indent = 2 + leftWidth
            let wrapped = wrap(right, indent: indent)
            if left.count + 2 > leftWidth {
                out += "  \(left)\n" + String(repeating: " ", count: indent) + wrapped + "\n"
            } else {
                out += "  " + left + String(repeating: " ", count: leftWidth - left.count) + wrapped + "\n"
            }
        }
        return out
    }

    /// `atlas-secrets NAME part part…` wrapped between parts after a 7-column prefix.
    static func wrapUsage(command: String, parts: [String]) -> String {
        let head = "atlas-secrets \(command)"
        let indent = 7 + head.count + 1
        var lines: [String] = []
        var line = head
        var column = 7 + head.count
        for part in parts {
            if column + 1 + part.count > width && line != head && !line.isEmpty {
                lines.append(line)
                line = part
                column = indent + part.count
            } else {
                line += line.isEmpty ? part : " " + part
                column += 1 + part.count
            }
        }
        lines.append(line)
        return lines.joined(separator: "\n" + String(repeating: " ", count: indent))
    }

    /// `text` wrapped at word boundaries; continuation lines indented by `indent` spaces.
    static func wrap(_ text: String, indent: Int, firstIndent: Int? = nil, width: Int = HelpLayout.width) -> String {
        var lines: [String] = []
        var line = ""
        var lineStart = firstIndent ?? indent
        for word in text.split(separator: " ", omittingEmptySubsequences: true) {
            if !line.isEmpty && lineStart + line.count + 1 + word.count > width {
                lines.append(line)
                line = ""
                lineStart = indent
            }
            line += line.isEmpty ? String(word) : " " + word
        }
        lines.append(line)
        return lines.joined(separator: "\n" + String(repeating: " ", count: indent))
    }
}
