import Foundation

/// Applies `NNN_name.sql` files from a directory, in numeric order, each once.
///
/// Each file runs in its own transaction (with `PQexec`, so a file may hold many statements),
/// under a session advisory lock scoped to the current schema (so workers starting together do
/// not race), and is recorded in `atlas_secrets_migrations(version, name, checksum, applied_at)`
/// in the connection's current schema. Hidden files and `*.md` files are ignored; any other file
/// whose name is not `NNN_name.sql` (3+ digits, name of letters, digits, `_`, `-`) is an error.
public struct Migrator: Sendable {
    /// The directory holding the migration files.
    public let directory: String

    /// A migrator for the files in `directory`.
    public init(directory: String) { self.directory = directory }

    /// One migration file.
    public struct Migration: Sendable, Equatable {
        public var version: Int
        public var name: String
        public var path: String
        public var sql: String
        /// SHA-256 of the file's text, lowercase hex.
        public var checksum: String
        /// The file name, e.g. `001_jobs.sql`.
        public var fileName: String { (path as NSString).lastPathComponent }
    }

    /// The advisory lock class id (first key of `pg_advisory_lock(int, int)`); the second key is
    /// the hash of the current schema.
    public static let lockClassID: Int32 = 0x4154_4c53  // "ATLS"

    /// The migrations found in the directory, sorted by version.
    /// Throws `MigrationError` for a bad file name, an unreadable file or a duplicate version.
    public func migrations() throws -> [Migration] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw MigrationError(code: .unreadable, file: directory, message: "cannot list the migrations directory")
        }
        var found: [Int: Migration] = [:]
        for name in names.sorted() where !name.hasPrefix(".") && !name.hasSuffix(".md") {
            guard let (version, label) = Self.parse(fileName: name) else {
                throw MigrationError(
                    code: .badFileName, file: name,
                    message: "file name must be NNN_name.sql (3+ digits, then letters, digits, _ or -)")
            }
            let path = (directory as NSString).appendingPathComponent(name)
            guard let data = FileManager.default.contents(atPath: path),
                let sql = String(data: data, encoding: .utf8)
            else {
                throw MigrationError(code: .unreadable, file: name, message: "cannot read the file as UTF-8 text")
            }
            if let other = found[version] {
                throw MigrationError(
                    code: .duplicateVersion, file: name,
                    message: "version \(version) is also used by \(other.fileName)")
            }
            found[version] = Migration(
                version: version, name: label, path: path, sql: sql, checksum: Hashing.hex(sql, .sha256))
        }
        return found.values.sorted { $0.version < $1.version }
    }

    /// `(version, name)` of `NNN_name.sql`, or nil.
    static func parse(fileName: String) -> (Int, String)? {
        guard fileName.hasSuffix(".sql") else { return nil }
        let stem = fileName.dropLast(4)
        guard let underscore = stem.firstIndex(of: "_") else { return nil }
        let digits = stem[..<underscore]
        let label = stem[stem.index(after: underscore)...]
        guard digits.count >= 3, digits.count <= 9, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber),
            let version = Int(digits), !label.isEmpty,
            label.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") })
        else { return nil }
        return (version, String(label))
    }

    /// Applies pending migrations and returns those applied by this call (empty when up to date).
    /// Refuses (before applying anything) when an applied file's checksum changed.
    /// Throws `MigrationError` (wrapping the `PGError` when a file's SQL fails) or `PGError`.
    public func migrate(_ connection: PGConnection) throws -> [Migration] {
        let files = try migrations()
        let lockKey = "\(Self.lockClassID), hashtext(coalesce(current_schema(), ''))"
        try connection.execute("SELECT pg_advisory_lock(\(raw: lockKey))")
        defer { if connection.isOpen { _ = try? connection.execute("SELECT pg_advisory_unlock(\(raw: lockKey))") } }

        try connection.executeScript(
            """
            CREATE TABLE IF NOT EXISTS atlas_secrets_migrations (
                version int PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """)
        var applied: [Int: String] = [:]
        for row in try connection.query("SELECT version, checksum FROM atlas_secrets_migrations").rows {
            applied[try row["version"].int()] = try row["checksum"].string()
        }
        for file in files {
            if let checksum = applied[file.version], checksum != file.checksum {
                throw MigrationError(
                    code: .checksumMismatch, file: file.fileName,
                    message: "changed since it was applied (checksum \(checksum.prefix(12))…, now \(file.checksum.prefix(12))…);"
                        + " add a new migration instead of editing an applied one")
            }
        }
        var done: [Migration] = []
        for file in files where applied[file.version] == nil {
            do {
                try connection.transaction { c in
                    try c.executeScript(file.sql)
                    try c.execute(
                        "INSERT INTO atlas_secrets_migrations (version, name, checksum) VALUES (\(file.version), \(file.name), \(file.checksum))"
                    )
                }
            } catch let error as PGError {
                throw MigrationError(code: .failed, file: file.fileName, message: error.description, underlying: error)
            }
            done.append(file)
        }
        return done
    }

    /// Highest applied version (0 when the table does not exist).
    public func appliedVersion(_ connection: PGConnection) throws -> Int {
        let row = try connection.query(
            """
            SELECT CASE WHEN to_regclass(quote_ident(current_schema()) || '.atlas_secrets_migrations') IS NULL THEN NULL
                   ELSE current_schema() END AS schema
            """
        ).first
        guard let schema = try row?["schema"].optionalString() else { return 0 }
        let table = "\(PGConnection.quoteIdentifier(schema)).atlas_secrets_migrations"
        return try connection.query("SELECT coalesce(max(version), 0) AS v FROM \(raw: table)").first?["v"].int() ?? 0
    }
}

/// A migration that cannot be read, named or applied; `file` names the file.
public struct MigrationError: Error, CustomStringConvertible {
    /// What went wrong; extensible.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable { case badFileName, duplicateVersion, checksumMismatch, unreadable, failed }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        /// The file name is not `NNN_name.sql`.
        public static let badFileName = Code(.badFileName)
        /// Two files share one version number.
        public static let duplicateVersion = Code(.duplicateVersion)
        /// An applied file was edited afterwards.
        public static let checksumMismatch = Code(.checksumMismatch)
        /// The directory or file cannot be read.
        public static let unreadable = Code(.unreadable)
        /// The file's SQL failed; see `underlying`.
        public static let failed = Code(.failed)
        /// The code's name.
        public var description: String { base.rawValue }
    }

    public var code: Code
    /// The file (or directory) concerned.
    public var file: String
    public var message: String
    /// The database error when `code == .failed`.
    public var underlying: PGError?

    /// An error about `file`.
    public init(code: Code, file: String, message: String, underlying: PGError? = nil) {
        self.code = code
        self.file = file
        self.message = message
        self.underlying = underlying
    }

    /// `migration FILE: message`.
    public var description: String { "migration \(file): \(message)" }
}
