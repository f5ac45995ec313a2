/// A process exit status following sysexits(3), thrown or returned to end the program with it.
public struct ExitCode: Error, Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The status handed to `exit(3)`.
    public var rawValue: Int32

    /// An exit code with the given raw status.
    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// 0: everything worked.
    public static let success = ExitCode(0)
    /// 1: anything not covered by a more specific code.
    public static let failure = ExitCode(1)
    /// 64 (`EX_USAGE`): the command line was wrong.
    public static let usage = ExitCode(64)
    /// 65 (`EX_DATAERR`): the input data (a request file, a job id that does not exist) was wrong.
    public static let dataError = ExitCode(65)
    /// 69 (`EX_UNAVAILABLE`): a needed service (PostgreSQL, Atlas) could not be reached.
    public static let unavailable = ExitCode(69)

    /// `exit code 64`.
    public var description: String { "exit code \(rawValue)" }
}

/// An error that knows which exit code the program should end with when it reaches `main`.
public protocol ExitCodeProviding: Error {
    /// The exit status for this error.
    var exitCode: ExitCode { get }
}

extension ExitCode: ExitCodeProviding {
    /// Itself: throwing an `ExitCode` ends the program with it.
    public var exitCode: ExitCode { self }
}

extension ExitCode {
    /// The exit code for any error: its own when it provides one, otherwise `.failure`.
    public static func forError(_ error: any Error) -> ExitCode {
        (error as? any ExitCodeProviding)?.exitCode ?? .failure
    }
}
