/// A wrong command line: what is wrong and the usage line of the command (exit 64).
public struct UsageError: Error, Sendable, Equatable, CustomStringConvertible, ExitCodeProviding {
    /// What is wrong, e.g. `unknown option '--concurency'; did you mean '--concurrency'?`.
    public var message: String
    /// The usage line(s) of the command concerned, e.g. `atlas-secrets show JOB_ID [--json]`.
    public var usage: String
    /// The command concerned (`"worker"`), or nil for the root command.
    public var command: String?

    /// A usage error with its message, the command's usage line and the command's name.
    public init(message: String, usage: String, command: String? = nil) {
        self.message = message
        self.usage = usage
        self.command = command
    }

    /// Always `.usage` (64).
    public var exitCode: ExitCode { .usage }

    /// Three lines for stderr: the error, the usage, where to find help.
    public var description: String {
        let helpCommand = command.map { "atlas-secrets \($0) --help" } ?? "atlas-secrets --help"
        return "Error: \(message)\nUsage: \(usage)\n  See '\(helpCommand)' for more information."
    }
}
