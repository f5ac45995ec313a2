import AtlasSecrets
import Foundation
import Testing

/// Binds, result decoding, errors and transactions against the dev database, one schema per test.
@Suite final class PostgresQueryTests {
    let db: TestDatabase
    init() throws { db = try TestDatabase(prefix: "pgquery") }
    deinit { db.drop() }

    @Test func scalarBindsRoundTrip() throws {
        let c = try db.connect()
        let text = "héllo \"quoted\" back\\slash, comma; 'single' ✓"
        let row = try #require(
            try c.query(
                """
                SELECT \(text)::text AS s, \("")::text AS empty, \(Int.min)::bigint AS i, \(Int64.max)::bigint AS i64,
                       \(Int32(-42))::int AS i32, \(0.1)::float8 AS d, \(-2.5e-300)::float8 AS tiny,
                       \(true)::bool AS yes, \(false)::bool AS no
                """
            ).first)
        #expect(try row["s"].string() == text)
        #expect(try row["empty"].string() == "")
        #expect(row["empty"].isNull == false)
        #expect(try row["i"].int() == Int.min)
        #expect(try row["i64"].int64() == Int64.max)
        #expect(try row["i32"].int32() == -42)
        #expect(try row["d"].double() == 0.1)
        #expect(try row["tiny"].double() == -2.5e-300)
        #expect(try row["yes"].bool() == true)
        #expect(try row["no"].bool() == false)
    }

    @Test func interpolationBuildsPlaceholdersAndRawText() throws {
        let table = "jobs"
        let key = "idem-key-value"
        let q: PGQuery = "SELECT * FROM \(raw: table) WHERE key = \(key) AND n > \(3) OR note IS \(nil as String?)"
        #expect(q.sql == "SELECT * FROM jobs WHERE key = $1 AND n > $2 OR note IS $3")
        #expect(q.binds == ["idem-key-value", "3", nil])
        #expect(!"\(q)".contains(key))
        let plain: PGQuery = "SELECT 1"
        #expect(plain.binds.isEmpty)
    }

    @Test func specialDoublesRoundTrip() throws {
        let c = try db.connect()
        let row = try #require(
            try c.query("SELECT \(Double.infinity)::float8 AS inf, \(-Double.infinity)::float8 AS ninf, \(Double.nan)::float8 AS nan, \(1e300)::float8 AS big").first)
        #expect(try row["inf"].double() == .infinity)
        #expect(try row["ninf"].double() == -.infinity)
        #expect(try row["nan"].double().isNaN)
        #expect(try row["big"].double() == 1e300)
    }

    @Test func nullBindsAndNullResults() throws {
        let c = try db.connect()
        let none: String? = nil
        let noInt: Int? = nil
        let noDate: Date? = nil
        let noBytes: [UInt8]? = nil
        let someInt: Int? = 7
        let row = try #require(
            try c.query(
                "SELECT \(none)::text AS s, \(noInt)::bigint AS i, \(noDate)::timestamptz AS d, \(noBytes)::bytea AS b, \(someInt)::int AS seven"
            ).first)
        #expect(row["s"].isNull)
        #expect(try row["s"].optionalString() == nil)
        #expect(try row["i"].optionalInt() == nil)
        #expect(try row["d"].optionalDate() == nil)
        #expect(try row["b"].optionalBytes() == nil)
        #expect(try row["seven"].optionalInt() == 7)
        let error = #expect(throws: PGError.self) { try row["s"].string() }
        #expect(error?.code == .badValue)
        #expect(error?.message == "column \"s\": is NULL, expected text")
    }

    @Test func missingColumnIsNamed() throws {
        let c = try db.connect()
        let row = try #require(try c.query("SELECT 1 AS one").first)
        let error = #expect(throws: PGError.self) { try row["onee"].optionalInt() }
        #expect(error?.message == "column \"onee\": no such column in the result")
        #expect(try row[index: 0].int() == 1)
    }

    @Test func badConversionNamesColumnNotValue() throws {
        let c = try db.connect()
        let row = try #require(try c.query("SELECT 'sekrit-value' AS token").first)
        let error = #expect(throws: PGError.self) { try row["token"].int() }
        #expect(error?.code == .badValue)
        #expect(error?.column == "token")
        #expect(error.map { "\($0)".contains("token") } == true)
        #expect(error.map { "\($0)".contains("sekrit") } == false)
    }

    @Test func arraysWithQuotesCommasBackslashesAndNulls() throws {
        let c = try db.connect()
        let strings = ["plain", "with space", "comma,inside", "quote\"inside", "back\\slash", "{braces}", "NULL", "", " pad "]
        let row = try #require(
            try c.query(
                """
                SELECT \(strings)::text[] AS a, array_length(\(strings)::text[], 1) AS n,
                       (\(strings)::text[])[4] AS fourth, \([String]())::text[] AS empty,
                       \(["x", nil, "y"] as [String?])::text[] AS holes,
                       \([Int64(-1), 0, Int64.max])::bigint[] AS big, \([1, 2, 3])::int[] AS small
                """
            ).first)
        #expect(try row["a"].stringArray() == strings)
        #expect(try row["n"].int() == strings.count)
        #expect(try row["fourth"].string() == "quote\"inside")
        #expect(try row["empty"].stringArray() == [])
        #expect(try row["holes"].nullableStringArray() == ["x", nil, "y"])
        #expect(throws: PGError.self) { try row["holes"].stringArray() }
        #expect(try row["big"].int64Array() == [-1, 0, Int64.max])
        #expect(try row["small"].int64Array() == [1, 2, 3])
        // Server-built arrays (not our literal) parse too, including non-default lower bounds.
        let server = try #require(
            try c.query("SELECT ARRAY['a b', NULL, 'c\"d'] AS a, '[0:1]={x,y}'::text[] AS shifted").first)
        #expect(try server["a"].nullableStringArray() == ["a b", nil, "c\"d"])
        #expect(try server["shifted"].stringArray() == ["x", "y"])
    }

    @Test func byteaRoundTrip() throws {
        let c = try db.connect()
        let bytes = (0...255).map(UInt8.init)
        let row = try #require(
            try c.query("SELECT \(bytes)::bytea AS b, length(\(bytes)::bytea) AS n, \([UInt8]())::bytea AS e").first)
        #expect(try row["b"].bytes() == bytes)
        #expect(try row["n"].int() == 256)
        #expect(try row["e"].bytes() == [])
    }

    @Test func datesRoundTripToTheMicrosecond() throws {
        let c = try db.connect()
        try c.executeScript("CREATE TABLE stamps (at timestamptz NOT NULL)")
        let date = Date(timeIntervalSince1970: 1_796_320_311.123456)
        try c.execute("INSERT INTO stamps VALUES (\(date))")
        let row = try #require(
            try c.query("SELECT at, at::text AS t, extract(epoch FROM at)::text AS epoch FROM stamps").first)
        #expect(try row["t"].string() == "2026-12-03 17:51:51.123456+00")
        #expect(try row["epoch"].string() == "1796320311.123456")
        #expect(abs(try row["at"].date().timeIntervalSince1970 - 1_796_320_311.123456) < 1e-6)
        let before = Date(timeIntervalSince1970: -0.5)  // 1969-12-31 23:59:59.5
        #expect(try c.query("SELECT \(before)::timestamptz::text AS t").first?["t"].string() == "1969-12-31 23:59:59.5+00")
    }

    @Test func timestampTextInIsoForms() throws {
        let c = try db.connect()
        let row = try #require(
            try c.query(
                """
                SELECT '2026-12-03 17:51:51+05:30'::timestamptz AS tz, '2026-12-03'::date AS d,
                       '2026-12-03 17:51:51.5'::timestamp AS local, 'infinity'::timestamptz AS inf
                """
            ).first)
        #expect(try row["tz"].date().timeIntervalSince1970 == 1_796_300_511)  // session TimeZone is UTC
        #expect(try row["d"].date().timeIntervalSince1970 == 1_796_256_000)
        #expect(try row["local"].date().timeIntervalSince1970 == 1_796_320_311.5)
        #expect(try row["inf"].date() == .distantFuture)
        // Offsets as other sessions may print them.
        let offset = PGValue(column: "x", text: "2026-12-03 17:51:51.123456-08")
        #expect(abs(try offset.date().timeIntervalSince1970 - (1_796_320_311.123456 + 8 * 3600)) < 1e-6)
        let iso = PGValue(column: "x", text: "2026-12-03T17:51:51Z")
        #expect(try iso.date().timeIntervalSince1970 == 1_796_320_311)
        #expect(throws: PGError.self) { try PGValue(column: "x", text: "2026-13-03 00:00:00+00").date() }
    }

    @Test func checkViolationCarriesStateConstraintAndMessage() throws {
        let c = try db.connect()
        try c.executeScript(
            "CREATE TABLE jobs (org_id text NOT NULL CONSTRAINT org_id_is_hex CHECK (org_id ~ '^[0-9a-f]{24}$'))")
        let secret = "supersecret-bind-value"
        let error = #expect(throws: PGError.self) { try c.execute("INSERT INTO jobs VALUES (\(secret))") }
        #expect(error?.code == .queryFailed)
        #expect(error?.sqlState == .checkViolation)
        #expect(error?.constraint == "org_id_is_hex")
        #expect(error?.message == "new row for relation \"jobs\" violates check constraint \"org_id_is_hex\"")
        #expect(error?.isConnectionError == false)
        let description = error.map { "\($0)" } ?? ""
        #expect(description.contains("23514"))
        #expect(description.contains("org_id_is_hex"))
        #expect(!description.contains(secret))
        // The full row dump is only in debugDescription.
        #expect(error.map { String(reflecting: $0) }?.contains("Failing row contains (supersecret-bind-value)") == true)
        // The connection is still usable afterwards.
        #expect(try c.query("SELECT count(*) AS n FROM jobs").first?["n"].int() == 0)
    }

    @Test func raisedExceptionKeepsServerMessageAndHint() throws {
        let c = try db.connect()
        try c.executeScript(
            """
            CREATE FUNCTION check_org(org text) RETURNS void LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'org_id "%" is not 24 hex digits', org USING HINT = 'copy it from the Atlas UI';
            END $$;
            """)
        let error = #expect(throws: PGError.self) { try c.execute("SELECT check_org(\("xyz"))") }
        #expect(error?.sqlState == .raiseException)
        #expect(error?.message == "org_id \"xyz\" is not 24 hex digits")
        #expect(error?.hint == "copy it from the Atlas UI")
    }

    @Test func uniqueViolationAndAffectedRows() throws {
        let c = try db.connect()
        try c.executeScript("CREATE TABLE k (key text CONSTRAINT k_key PRIMARY KEY, n int)")
        #expect(try c.execute("INSERT INTO k VALUES (\("a"), 1), (\("b"), 2), (\("c"), 3)") == 3)
        let error = #expect(throws: PGError.self) { try c.execute("INSERT INTO k VALUES (\("a"), 9)") }
        #expect(error?.sqlState == .uniqueViolation)
        #expect(error?.constraint == "k_key")
        #expect(try c.execute("UPDATE k SET n = n + 1 WHERE n >= \(2)") == 2)
        let result = try c.query("DELETE FROM k WHERE key = ANY(\(["a", "b"])) RETURNING key")
        #expect(result.affectedRows == 2)
        #expect(try Set(result.rows.map { try $0["key"].string() }) == ["a", "b"])
    }

    @Test func unknownSQLStateRoundTrips() throws {
        let c = try db.connect()
        let error = #expect(throws: PGError.self) { try c.execute("SELECT 1/0") }
        #expect(error?.sqlState == SQLState("22012"))
        #expect(error?.sqlState?.raw == "22012")
        #expect(error?.message == "division by zero")
        let undefined = #expect(throws: PGError.self) { try c.execute("SELECT * FROM no_such_table") }
        #expect(undefined?.sqlState == .undefinedTable)
    }

    @Test func transactionCommitsAndRollsBack() throws {
        let c = try db.connect()
        try c.executeScript("CREATE TABLE tx (n int)")
        let value = try c.transaction { c in
            try c.execute("INSERT INTO tx VALUES (\(1))")
            return 42
        }
        #expect(value == 42)
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try c.transaction { c in
                try c.execute("INSERT INTO tx VALUES (\(2))")
                throw Boom()
            }
        }
        // A failed statement swallowed inside the body makes COMMIT a rollback: reported, not hidden.
        let error = #expect(throws: PGError.self) {
            try c.transaction { c in
                try c.execute("INSERT INTO tx VALUES (\(3))")
                _ = try? c.execute("SELECT 1/0")
            }
        }
        #expect(error?.message.contains("rolled back") == true)
        #expect(c.isInTransaction == false)
        #expect(try c.query("SELECT array_agg(n)::text AS ns FROM tx").first?["ns"].string() == "{1}")
    }

    @Test func scriptsRunSeveralStatements() throws {
        let c = try db.connect()
        try c.executeScript("CREATE TABLE s (n int); INSERT INTO s VALUES (1); INSERT INTO s VALUES (2);")
        #expect(try c.query("SELECT sum(n) AS total FROM s").first?["total"].int() == 3)
        let error = #expect(throws: PGError.self) { try c.executeScript("INSERT INTO s VALUES (3); SELECT nope;") }
        #expect(error?.sqlState == SQLState("42703"))
        // The failing script was one implicit transaction: the first insert is gone too.
        #expect(try c.query("SELECT count(*) AS n FROM s").first?["n"].int() == 2)
    }

    @Test func connectionFailureIsAConnectionError() throws {
        let error = #expect(throws: PGError.self) {
            try PGConnection(url: "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2")
        }
        #expect(error?.code == .connectionFailed)
        #expect(error?.isConnectionError == true)
        #expect(error?.message.contains("Connection refused") == true)
    }

    @Test func sessionSettingsAndSearchPath() throws {
        let c = try db.connect()
        let row = try #require(
            try c.query(
                "SELECT current_setting('DateStyle') AS ds, current_setting('TimeZone') AS tz, current_schema() AS schema, current_setting('application_name') AS app"
            ).first)
        #expect(try row["ds"].string().hasPrefix("ISO"))
        #expect(try row["tz"].string() == "UTC")
        #expect(try row["schema"].string() == db.schema)
        #expect(try row["app"].string() == "atlas-secrets-tests")
        #expect(c.backendPID > 0)
        c.close()
        #expect(c.isOpen == false)
        let error = #expect(throws: PGError.self) { try c.execute("SELECT 1") }
        #expect(error?.code == .connectionLost)
    }
}

@Suite struct PGQueryFragmentTests {
    @Test func fragmentsAreRenumberedAfterTheOuterBinds() {
        let inner: PGQuery = "a = \(1) AND b = \("x")"
        let outer: PGQuery = "SELECT \(0) WHERE \(inner) AND c = \(2)"
        #expect(outer.sql == "SELECT $1 WHERE a = $2 AND b = $3 AND c = $4")
        #expect(outer.binds == ["0", "1", "x", "2"])
    }
}
