/// A parsed command line: what to run, with typed options; `help` carries text to print (exit 0).
public enum Command: Sendable, Equatable {
    case migrate(MigrateOptions)
    case enqueue(EnqueueOptions)
    case worker(WorkerOptions)
    case status(StatusOptions)
    case list(ListOptions)
    case show(ShowOptions)
    case retry(RetryOptions)
    case cancel(CancelOptions)
    case reveal(RevealOptions)
    case keygen(KeygenOptions)
    /// Text for stdout (help or version); the program then exits 0.
    case help(String)
}

/// Turns `CommandLine.arguments.dropFirst()` into a `Command`, or a `UsageError` (exit 64).
public enum CommandLineParser {
    /// One subcommand: its declaration and how to build its `Command`.
    struct Entry: Sendable {
        let spec: CommandSpec
        let make: @Sendable (ParsedArguments) throws(UsageError) -> Command
    }

    static func entry<O: CommandOptions>(_ type: O.Type, _ wrap: @escaping @Sendable (O) -> Command) -> Entry {
        Entry(spec: O.spec) { (arguments: ParsedArguments) throws(UsageError) -> Command in
            let options = try O(arguments)
            try options.validate()
            return wrap(options)
        }
    }

    static let entries: [Entry] = [
        entry(MigrateOptions.self, Command.migrate),
        entry(EnqueueOptions.self, Command.enqueue),
        entry(WorkerOptions.self, Command.worker),
        entry(StatusOptions.self, Command.status),
        entry(ListOptions.self, Command.list),
        entry(ShowOptions.self, Command.show),
        entry(RetryOptions.self, Command.retry),
        entry(CancelOptions.self, Command.cancel),
        entry(RevealOptions.self, Command.reveal),
        entry(KeygenOptions.self, Command.keygen),
    ]

    /// The declarations of every subcommand, in the order the root help lists them.
    public static var commands: [CommandSpec] { entries.map(\.spec) }

    /// The root usage line.
    public static let rootUsage = "atlas-secrets <command> [options]"

    /// The root `--help` text: every command with its one-line summary.
    public static var rootHelp: String {
        var out = "OVERVIEW: Create MongoDB Atlas service-account secrets in bulk from a PostgreSQL queue.\n"
        out += "\nUSAGE: \(rootUsage)\n\nCOMMANDS:\n"
        out += HelpLayout.twoColumns(entries.map { ($0.spec.name, $0.spec.abstract) } + [("help", "Show help for a command.")])
        out += "\nOPTIONS:\n"
        out += HelpLayout.twoColumns([("--version", "Show the version."), ("-h, --help", "Show help information.")])
        out += "\nENVIRONMENT:\n"
        out += HelpLayout.twoColumns([
            ("DATABASE_URL", "libpq URI or conninfo (unset: libpq's PG* variables)."),
            ("MONGODB_ATLAS_BASE_URL", "Atlas, or atlas-sim's address (default https://cloud.mongodb.com)."),
            ("ATLAS_SECRETS_KEY_FILE", "The AES-256 key (keygen); worker and reveal need it."),
            ("ATLAS_SECRETS_CREDENTIALS_FILE", "Org id -> credential JSON, mode 0600 (or worker --credentials)."),
            ("MONGODB_ATLAS_CLIENT_ID/_SECRET", "Default credential: a service account."),
            ("MONGODB_ATLAS_PUBLIC/PRIVATE_API_KEY", "Default credential: an API key (Digest)."),
            ("ATLAS_SECRETS_LOG_LEVEL", "debug, info (default), warning, error."),
            ("ATLAS_SECRETS_TOKEN_LIVE_CAP", "Live OAuth tokens per service account, all workers (default 80)."),
            ("ATLAS_SECRETS_TOKEN_FETCHES_PER_MINUTE", "OAuth token requests per service account a minute, all workers (default 40)."),
        ])
        out += "\n  See 'atlas-secrets help <command>' for detailed help.\n"
        return out
    }

    /// The `--help` text of the command named `name`, or nil if there is none.
    public static func help(for name: String) -> String? {
        entries.first { $0.spec.name == name }?.spec.helpText
    }

    /// Parses the arguments after the program name.
    ///
    /// `--help`/`-h` anywhere before `--` gives that command's help; `help CMD` too; `--version`
    /// at the root gives `atlas-secrets <version>`. Throws `UsageError` for everything else wrong.
    public static func parse(_ arguments: [String]) throws(UsageError) -> Command {
        guard let first = arguments.first else {
            throw UsageError(message: "missing command", usage: rootUsage)
        }
        switch first {
        case "-h", "--help":
            return .help(rootHelp)
        case "--version":
            return .help("atlas-secrets \(atlasSecretsVersion)\n")
        case "help":
            let rest = arguments.dropFirst()
            guard let name = rest.first, name != "-h", name != "--help" else { return .help(rootHelp) }
            guard rest.count == 1 else {
                throw UsageError(message: "help takes one command name", usage: "atlas-secrets help <command>")
            }
            guard let text = help(for: name) else { throw unknownCommand(name) }
            return .help(text)
        default:
            break
        }
        guard let entry = entries.first(where: { $0.spec.name == first }) else {
            if first.hasPrefix("-") {
                let near = Suggestion.nearest(to: first, in: ["--help", "--version"])
                throw UsageError(message: "unknown option '\(first)'" + (near.map { "; did you mean '\($0)'?" } ?? ""), usage: rootUsage)
            }
            throw unknownCommand(first)
        }
        let rest = Array(arguments.dropFirst())
        let beforeSeparator = rest.prefix { $0 != "--" }
        if beforeSeparator.contains("--help") || beforeSeparator.contains("-h") {
            return .help(entry.spec.helpText)
        }
        return try entry.make(ParsedArguments(rest, spec: entry.spec))
    }

    static func unknownCommand(_ name: String) -> UsageError {
        let names = entries.map(\.spec.name) + ["help"]
        let near = Suggestion.nearest(to: name, in: names)
        return UsageError(message: "unknown command '\(name)'" + (near.map { "; did you mean '\($0)'?" } ?? ""), usage: rootUsage)
    }
}
