@testable import AtlasSecrets
import AtlasSim
import Foundation
import Testing

/// The parent of every end-to-end suite: they start processes and share 2 cores, so they run
/// one test at a time (`.serialized` applies to the nested suites declared in `EndToEnd*.swift`).
@Suite(.serialized) enum EndToEnd {}

/// A job as `list --json` / `show --json` print it (the fields tests read).
struct JobJSON: Decodable {
    struct Attempt: Decodable {
        var attempt: Int
        var owner: String
        var startedAt: String
        var finishedAt: String?
        var outcome: String
        var httpStatus: Int?
        var errorCode: String?
        var detail: String?
        var secretId: String?
    }
    var id: Int64
    var state: String
    var batch: String
    var orgId: String
    var clientId: String
    var attempts: Int
    var maxAttempts: Int
    var runAt: String
    var secretId: String?
    var secretCreatedAt: String?
    var maskedSecret: String?
    var lastErrorCode: String?
    var lastErrorDetail: String?
    var lastHttpStatus: Int?
    var needsReconcile: Bool
    var revokedSecrets: [[String: String]]
    var shortenedSecrets: [[String: String]]
    var history: [Attempt]?
}

/// `status --json`.
struct StatusJSON: Decodable {
    struct Counts: Decodable, Equatable {
        var queued: Int, running: Int, succeeded: Int, failed: Int, cancelled: Int
    }
    struct Org: Decodable {
        var orgId: String
        var counts: Counts
        var throttledUntil: String?
        var pausedReason: String?
    }
    struct ErrorCount: Decodable {
        var code: String
        var count: Int
    }
    var counts: Counts
    var orgs: [Org]
    var topErrors: [ErrorCount]

    func org(_ id: String) -> Org? { orgs.first { $0.orgId == id } }
}

/// Dates as the CLI's JSON prints them (ISO 8601, milliseconds).
func isoDate(_ text: String?) -> Date? {
    guard let text else { return nil }
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.date(from: text) ?? ISO8601DateFormatter().date(from: text)
}

extension ProcessOutput {
    /// Both streams, for failure messages.
    var both: String { "exit \(status)\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)" }
}

extension Harness {
    /// Runs `atlas-secrets` and requires exit 0; returns stdout.
    @discardableResult
    func ok(_ arguments: [String], stdin: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let out = try cli(arguments, stdin: stdin)
        try #require(out.status == 0, "atlas-secrets \(arguments.joined(separator: " ")): \(out.both)", sourceLocation: sourceLocation)
        return out.stdout
    }

    /// `worker --drain` in the foreground (JSON logs), with a short lease; requires exit 0.
    @discardableResult
    func drain(_ extra: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) throws -> ProcessOutput {
        let out = try cli(["worker", "--drain", "--log-format", "json", "--lease", "5"] + extra)
        try #require(out.status == 0, "worker --drain: \(out.both)", sourceLocation: sourceLocation)
        return out
    }

    /// `list --json` of every job (ordered by id).
    func listJobs(_ extra: [String] = []) throws -> [JobJSON] {
        let text = try ok(["list", "--json", "--limit", "100000"] + extra)
        return try JSONDecoder().decode([JobJSON].self, from: Data(text.utf8)).sorted { $0.id < $1.id }
    }

    /// `show JOB_ID --json`.
    func showJob(_ id: Int64) throws -> JobJSON {
        try JSONDecoder().decode(JobJSON.self, from: Data(try ok(["show", String(id), "--json"]).utf8))
    }

    /// `status --json`.
    func status(_ extra: [String] = []) throws -> StatusJSON {
        try JSONDecoder().decode(StatusJSON.self, from: Data(try ok(["status", "--json"] + extra).utf8))
    }

    /// Rows in secret_jobs.
    func jobCount() throws -> Int {
        let conn = try connect()
        defer { conn.close() }
        return try conn.query("SELECT count(*) AS n FROM secret_jobs").rows[0]["n"].int()
    }

    /// One SQL value as text (tests' own checks).
    func scalar(_ sql: String) throws -> String {
        let conn = try connect()
        defer { conn.close() }
        return try conn.query(PGQuery(sql: sql)).rows[0][index: 0].string()
    }

    /// Sets the simulator's fault rules (replacing the list).
    func faults(_ rules: String) throws {
        try control("POST", "/_sim/faults", #"{"rules": \#(rules)}"#)
    }

    /// A request file of arbitrary lines in the temp folder.
    func writeFile(_ name: String, _ text: String) throws -> String {
        let path = dir.appendingPathComponent(name).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The seeded accounts of org `o` (as `requestFile` takes them).
    func accounts(org o: Int) -> [(org: String, client: String)] {
        accounts.filter { $0.org == AtlasSimulator.orgId(index: o) }
    }
}

/// `pg_dump`: PG_BINDIR first, then PATH, then Debian's versioned folders (newest first).
func pgDumpPath() -> String? {
    var candidates: [String] = []
    if let dir = ProcessInfo.processInfo.environment["PG_BINDIR"], !dir.isEmpty { candidates.append(dir + "/pg_dump") }
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") { candidates.append("\(dir)/pg_dump") }
    let debian = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
    for v in debian.sorted(by: { (Int($0) ?? 0) > (Int($1) ?? 0) }) { candidates.append("/usr/lib/postgresql/\(v)/bin/pg_dump") }
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// Waits for `condition`, polling every 20 ms; requires it to hold within `timeout` seconds.
func waitFor(_ what: String, timeout: Double, sourceLocation: SourceLocation = #_sourceLocation, _ condition: () throws -> Bool) throws {
    let held = try eventually(timeout: timeout, condition)
    try #require(held, "timed out after \(timeout) s waiting for \(what)", sourceLocation: sourceLocation)
}
