import AtlasSecrets
import Foundation
import Synchronization
import Testing

/// The migrator against the dev database, with migration files in a temporary directory.
@Suite final class PostgresMigratorTests {
    let db: TestDatabase
    let directory: String

    init() throws {
        db = try TestDatabase(prefix: "pgmigrate")
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try write("001_create.sql", "CREATE TABLE items (id int PRIMARY KEY);\nCREATE TABLE log (file text);\nINSERT INTO log VALUES ('001');\n")
        try write("002_column.sql", "ALTER TABLE items ADD COLUMN note text;\nINSERT INTO log VALUES ('002');\n")
        try write(
            "010_function.sql",
            """
            CREATE FUNCTION add_item(n int) RETURNS int LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO items (id, note) VALUES (n, 'from function; with semicolon');
                RETURN n;
            END $$;
            INSERT INTO log VALUES ('010');
            """)
        try write("README.md", "Not a migration; ignored.")
    }

    deinit {
        db.drop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: (directory as NSString).appendingPathComponent(name), atomically: true, encoding: .utf8)
    }

    @Test func listsFilesInNumericOrderWithChecksums() throws {
        let migrations = try Migrator(directory: directory).migrations()
        #expect(migrations.map(\.version) == [1, 2, 10])
        #expect(migrations.map(\.name) == ["create", "column", "function"])
        #expect(migrations[1].checksum == Hashing.hex(migrations[1].sql, .sha256))
        #expect(migrations[1].checksum.count == 64)
    }

    @Test func appliesInOrderOnceThenIsANoOp() throws {
        let c = try db.connect()
        let migrator = Migrator(directory: directory)
        #expect(try migrator.appliedVersion(c) == 0)
        #expect(try migrator.migrate(c).map(\.version) == [1, 2, 10])
        #expect(try migrator.appliedVersion(c) == 10)
        #expect(try c.query("SELECT string_agg(file, ',') AS files FROM log").first?["files"].string() == "001,002,010")
        #expect(try c.query("SELECT add_item(\(5)) AS n").first?["n"].int() == 5)
        #expect(try migrator.migrate(c).isEmpty)
        #expect(try c.query("SELECT count(*) AS n FROM log").first?["n"].int() == 3)
        let recorded = try c.query("SELECT version, name, checksum, applied_at FROM atlas_secrets_migrations ORDER BY version")
        #expect(try recorded.rows.map { try $0["name"].string() } == ["create", "column", "function"])
        #expect(try recorded.rows[0]["checksum"].string() == migrator.migrations()[0].checksum)
        #expect(abs(try recorded.rows[0]["applied_at"].date().timeIntervalSinceNow) < 60)
        // A new file is picked up by the next run.
        try write("011_more.sql", "INSERT INTO log VALUES ('011');")
        #expect(try migrator.migrate(c).map(\.fileName) == ["011_more.sql"])
    }

    @Test func refusesAChangedChecksumNamingTheFile() throws {
        let c = try db.connect()
        let migrator = Migrator(directory: directory)
        _ = try migrator.migrate(c)
        try write("002_column.sql", "ALTER TABLE items ADD COLUMN note text; -- edited\n")
        try write("020_later.sql", "INSERT INTO log VALUES ('020');")
        let error = #expect(throws: MigrationError.self) { try migrator.migrate(c) }
        #expect(error?.code == .checksumMismatch)
        #expect(error?.file == "002_column.sql")
        #expect(error.map { "\($0)" }?.hasPrefix("migration 002_column.sql: changed since it was applied") == true)
        // Nothing else was applied.
        #expect(try migrator.appliedVersion(c) == 10)
    }

    @Test func failedFileRollsBackAndNamesTheFile() throws {
        let c = try db.connect()
        try write("003_broken.sql", "CREATE TABLE half (n int);\nSELECT no_such_column FROM items;\n")
        let error = #expect(throws: MigrationError.self) { try Migrator(directory: directory).migrate(c) }
        #expect(error?.code == .failed)
        #expect(error?.file == "003_broken.sql")
        #expect(error?.underlying?.sqlState == SQLState("42703"))
        #expect(error?.message.contains("column \"no_such_column\" does not exist") == true)
        #expect(try Migrator(directory: directory).appliedVersion(c) == 2)
        #expect(try c.query("SELECT to_regclass('half') IS NULL AS gone").first?["gone"].bool() == true)
        // The advisory lock was released: another session can take it at once.
        let other = try db.connect()
        let locked = try other.query(
            "SELECT pg_try_advisory_lock(\(Migrator.lockClassID), hashtext(current_schema())) AS ok").first
        #expect(try locked?["ok"].bool() == true)
    }

    @Test func badFileNameIsAnErrorNamingTheFile() throws {
        try write("2_short.sql", "SELECT 1;")
        let error = #expect(throws: MigrationError.self) { try Migrator(directory: directory).migrations() }
        #expect(error?.code == .badFileName)
        #expect(error?.file == "2_short.sql")
        #expect(error.map { "\($0)" }?.contains("2_short.sql") == true)
        for bad in ["abc_x.sql", "004-dash.sql", "005_.sql", "006_x.txt"] {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try "SELECT 1;".write(toFile: dir + "/" + bad, atomically: true, encoding: .utf8)
            let e = #expect(throws: MigrationError.self) { try Migrator(directory: dir).migrations() }
            #expect(e?.file == bad)
        }
    }

    @Test func twoFilesWithOneNumberIsAnError() throws {
        try write("002_other.sql", "SELECT 1;")
        let error = #expect(throws: MigrationError.self) { try Migrator(directory: directory).migrations() }
        #expect(error?.code == .duplicateVersion)
        #expect(error.map { "\($0)" }?.contains("002_column.sql") == true)
        #expect(error.map { "\($0)" }?.contains("002_other.sql") == true)
    }

    @Test func concurrentMigratorsApplyEachFileExactlyOnce() throws {
        try write("001_create.sql", "SELECT pg_sleep(0.3);\nCREATE TABLE items (id int PRIMARY KEY);\nCREATE TABLE log (file text);\nINSERT INTO log VALUES ('001');\n")
        let applied = Mutex<[[Int]]>([])
        let failures = Mutex<[String]>([])
        let url = db.url
        let directory = directory
        onThreads(4) { _ in
            do {
                let c = try PGConnection(url: url)
                let versions = try Migrator(directory: directory).migrate(c).map(\.version)
                applied.withLock { $0.append(versions) }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        #expect(failures.withLock { $0 } == [])
        let runs = applied.withLock { $0 }
        #expect(runs.count == 4)
        #expect(runs.flatMap { $0 }.sorted() == [1, 2, 10])
        #expect(runs.filter { !$0.isEmpty } == [[1, 2, 10]])
        let c = try db.connect()
        #expect(try c.query("SELECT string_agg(file, ',' ORDER BY file) AS files FROM log").first?["files"].string() == "001,002,010")
    }
}
