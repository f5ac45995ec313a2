import AtlasSecrets
import Foundation

/// A clean schema in the database named by DATABASE_URL (default
/// postgresql://postgres@127.0.0.1:25499/postgres).
///
/// `url` is a libpq URI (or conninfo) whose `options` set search_path to that schema, so every
/// connection made with it, including child processes given the URL, lands in it.
/// `drop()` removes the schema; it is safe to call more than once.
final class TestDatabase: Sendable {
    /// The database without the schema option.
    let baseURL: String
    /// The schema's name: prefix, `_`, 12 random hex digits.
    let schema: String
    /// `baseURL` plus `options=-csearch_path=<schema>`.
    let url: String

    /// Creates a fresh schema named `prefix_<random>`.
    init(prefix: String = "t") throws {
        let base = ProcessInfo.processInfo.environment["DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
            ?? "postgresql://postgres@127.0.0.1:25499/postgres"
        baseURL = base
        schema = "\(prefix)_\(Hashing.hexString(Hashing.randomBytes(6)))".lowercased()
        url = Self.url(base, searchPath: schema)
        let admin = try PGConnection(url: base, applicationName: "atlas-secrets-tests")
        defer { admin.close() }
        try admin.executeScript("CREATE SCHEMA \(PGConnection.quoteIdentifier(schema))")
    }

    /// `base` with a search_path option appended (URI query parameter or conninfo keyword).
    static func url(_ base: String, searchPath schema: String) -> String {
        if base.hasPrefix("postgresql://") || base.hasPrefix("postgres://") {
            let separator = base.contains("?") ? "&" : "?"
            return base + separator + "options=-csearch_path%3D" + schema
        }
        return base + " options='-csearch_path=\(schema)'"
    }

    /// A new connection whose search_path is the schema.
    func connect() throws -> PGConnection {
        try PGConnection(url: url, applicationName: "atlas-secrets-tests")
    }

    /// Drops the schema and everything in it; errors are ignored.
    func drop() {
        guard let admin = try? PGConnection(url: baseURL, applicationName: "atlas-secrets-tests") else { return }
        defer { admin.close() }
        try? admin.executeScript("DROP SCHEMA IF EXISTS \(PGConnection.quoteIdentifier(schema)) CASCADE")
    }
}

/// Runs `body(0..<count)` on `count` dedicated threads and waits for all of them.
///
/// Use this, not Dispatch's global queue, for blocking work in tests: Swift Testing runs tests
/// on the same small pool, so blocked global-queue blocks can run one at a time or not at all.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let done = DispatchGroup()
    for index in 0..<count {
        done.enter()
        let thread = Thread {
            body(index)
            done.leave()
        }
        thread.start()
    }
    done.wait()
}

/// Runs `body` on a new dedicated thread after `delay` seconds; returns at once.
func onThread(after delay: Double, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread {
        Thread.sleep(forTimeInterval: delay)
        body()
    }
    thread.start()
}
