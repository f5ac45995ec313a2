import Dispatch
public import Foundation

/// A failure that ends a command with a message and an exit code (sysexits).
public struct CommandFailure: Error, CustomStringConvertible, ExitCodeProviding {
    public var message: String
    public var exitCode: ExitCode
    public init(_ message: String, _ exitCode: ExitCode = .failure) {
        self.message = message
        self.exitCode = exitCode
    }
    public var description: String { message }
}

/// The `atlas-secrets` program: parses the command line and runs the command.
public enum CLI {
    /// Runs the program with `arguments` (without argv[0]) and exits with the command's status.
    public static func main(_ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment) -> Never {
        signal(SIGPIPE, SIG_IGN)
        do {
            let command = try CommandLineParser.parse(arguments)
            let context = Context(environment: environment)
            try context.run(command)
            Console.exit(.success)
        } catch let error as UsageError {
            Console.err(error.description)
            Console.exit(.usage)
        } catch {
            Console.err("atlas-secrets: \(error)")
            Console.exit(ExitCode.forError(error))
        }
    }

    /// What every command reads from the environment.
    struct Context {
        let environment: [String: String]

        var databaseURL: String? { environment["DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 } }

        var baseURL: String { environment["MONGODB_ATLAS_BASE_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? "https://cloud.mongodb.com" }

        var color: Bool { Console.colorEnabled(fd: 1, environment: environment) }

        func run(_ command: Command) throws {
            switch command {
            case .help(let text): Console.out(text, terminator: "")
            case .migrate(let o): try migrate(o)
            case .enqueue(let o): try enqueue(o)
            case .worker(let o): try worker(o)
            case .status(let o): try status(o)
            case .list(let o): try list(o)
            case .show(let o): try show(o)
            case .retry(let o): try retry(o)
            case .cancel(let o): try cancel(o)
            case .reveal(let o): try reveal(o)
            case .keygen(let o): try keygen(o)
            }
        }

        /// A connection, or exit 69 naming the problem.
        func connect() throws -> PGConnection {
            do {
                return try PGConnection(url: databaseURL, applicationName: "atlas-secrets cli")
            } catch {
                throw CommandFailure("cannot connect to PostgreSQL (DATABASE_URL\(databaseURL == nil ? " unset: using libpq's PG* variables" : "")): \(error.message)", .unavailable)
            }
        }

        /// Runs `body`, turning a missing schema into a clear message.
        func withDatabase<T>(_ body: (PGConnection) throws -> T) throws -> T {
            let conn = try connect()
            defer { conn.close() }
            do {
                return try body(conn)
            } catch let error as PGError where error.sqlState == .undefinedTable {
                throw CommandFailure("the database has no atlas-secrets tables: run `atlas-secrets migrate` first (\(error.message))", .unavailable)
            }
        }

        /// The key from ATLAS_SECRETS_KEY_FILE; `forReading`: to decrypt what a worker stored.
        func key(forReading: Bool = false) throws -> SecretKey {
            guard let path = environment["ATLAS_SECRETS_KEY_FILE"], !path.isEmpty else {
                throw CommandFailure(forReading
                    ? "ATLAS_SECRETS_KEY_FILE is not set: point it at the key file the worker used to encrypt the secrets"
                    : "ATLAS_SECRETS_KEY_FILE is not set: secrets are stored encrypted and need a key (create one with `atlas-secrets keygen PATH`)", .usage)
            }
            do {
                return try SecretKey.load(path: path)
            } catch {
                throw CommandFailure("ATLAS_SECRETS_KEY_FILE: \(error)", .dataError)
            }
        }

        func json<T: Encodable>(_ value: T) throws {
            let data = try JSONOutput.encoder(pretty: true).encode(value)
            Console.out(String(decoding: data, as: UTF8.self))
        }
    }
}
