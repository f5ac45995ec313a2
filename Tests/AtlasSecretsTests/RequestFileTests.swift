import Testing
@testable import AtlasSecrets

let org1 = "4888442a3354817a7320eb61"
let org2 = "5a0a1e7e0f2912c554080adc"
let client1 = "mdb_sa_id_4888442A3354817a7320eb61"
let client2 = "mdb_sa_id_65b8e5d1a1b2c3d4e5f60718"

/// The errors of parsing `text`, as the lines a user sees, or a recorded issue if it parsed.
func fileErrors(_ text: String, name: String, format: RequestFile.Format? = nil) -> [String] {
    fileErrors(Array(text.utf8), name: name, format: format)
}

func fileErrors(_ bytes: [UInt8], name: String, format: RequestFile.Format? = nil) -> [String] {
    do {
        let requests = try RequestFile.parse(bytes, name: name, format: format)
        Issue.record("expected errors, parsed \(requests.count) requests")
        return []
    } catch {
        return error.errors.map(\.description)
    }
}

@Suite struct RequestFileJSONLinesTests {
    @Test func validLinesWithOptionalFieldsAndBlankLines() throws {
        let text = """
            {"orgId": "\(org1)", "clientId": "\(client1)", "secretExpiresAfterHours": 720}

            {"orgId":"\(org2)","clientId":"\(client2)","secretExpiresAfterHours":8,"idempotencyKey":"rot-2026-12","priority":5}
            {"orgId": "\(org1)", "clientId": "\(client2)", "secretExpiresAfterHours": 8760, "idempotencyKey": null, "priority": -3}

            """
        let parsed = try RequestFile.parse(Array(text.utf8), name: "jobs/x.jsonl")
        #expect(parsed == [
            ParsedRequest(request: JobRequest(orgId: org1, clientId: client1, secretExpiresAfterHours: 720), file: "jobs/x.jsonl", line: 1),
            ParsedRequest(request: JobRequest(orgId: org2, clientId: client2, secretExpiresAfterHours: 8, idempotencyKey: "rot-2026-12", priority: 5), file: "jobs/x.jsonl", line: 3),
            ParsedRequest(request: JobRequest(orgId: org1, clientId: client2, secretExpiresAfterHours: 8760, priority: -3), file: "jobs/x.jsonl", line: 4),
        ])
    }

    @Test func everyBadLineIsReportedWithItsNumberAndField() {
        let text = """
            {"orgId": "\(org1)", "clientId": "\(client1)", "secretExpiresAfterHours": 720}
            {"orgId": "abc", "clientId": "\(client1)", "secretExpiresAfterHours": 720}
            {"orgId": "\(org1)", "clientId": "sa_1", "secretExpiresAfterHours": 4}
            {"orgId": "\(org1)", "clientId": "\(client1)", "secretExpiresAfterHours": "720"}
            {"orgId": "\(org1)", "clientId": "\(client1)", "secretExpiresAfterHours": 8.5}
            {"orgId": "\(org1)", "clientId": "\(client1)"}
            {"orgID": "\(org1)", "clientId": "\(client1)", "secretExpiresAfterHours": 720}
            {"orgId": "\(org1)", "clientId": "\(client1)", "secretExpiresAfterHours": 720, "priority": "high"}
            {"orgId": "\(org1)", "clientId": "\(client1)", "secretExpiresAfterHours": 720, "idempotencyKey": "auto:abc"}
            {"orgId": 42, "clientId": "\(client1)", "secretExpiresAfterHours": true}
            """
        #expect(fileErrors(text, name: "jobs/x.jsonl") == [
            #"jobs/x.jsonl:2: orgId "abc" is not 24 lowercase hex characters"#,
            #"jobs/x.jsonl:3: clientId "sa_1" is not mdb_sa_id_ followed by 24 hex characters"#,
            #"jobs/x.jsonl:3: secretExpiresAfterHours 4 is outside 8...8760 hours"#,
            #"jobs/x.jsonl:4: secretExpiresAfterHours must be a number, not the string "720""#,
            #"jobs/x.jsonl:5: secretExpiresAfterHours 8.5 is not an integer"#,
            #"jobs/x.jsonl:6: missing field secretExpiresAfterHours"#,
            #"jobs/x.jsonl:7: unknown field "orgID"; did you mean "orgId"?"#,
            #"jobs/x.jsonl:7: missing field orgId"#,
            #"jobs/x.jsonl:8: priority must be a number, not the string "high""#,
            #"jobs/x.jsonl:9: idempotencyKey "auto:abc" starts with "auto:", which is reserved for derived keys"#,
            #"jobs/x.jsonl:10: orgId must be a string, got 42"#,
            #"jobs/x.jsonl:10: secretExpiresAfterHours must be an integer, got true"#,
        ])
    }

    @Test func brokenJSONSaysWhereAndWhy() {
        let text = """
            {"orgId": "\(org1)", "clientId": "\(client1)", "secretExpiresAfterHours": 720,}
            {"orgId": "\(org1)" "clientId": "\(client1)"}
            {'orgId': 1}
            [{"orgId": "\(org1)"}]
            {"orgId": "\(org1)", "clientId": "\(client1)", "secretExpiresAfterHours": 720} x
            {"orgId": "\(org1)
            {"orgId": "\(org1)", "orgId": "\(org1)"}
            """
        #expect(fileErrors(text, name: "x.jsonl") == [
            "x.jsonl:1: broken JSON at column 120: trailing comma before '}'",
            "x.jsonl:2: broken JSON at column 38: expected ',' or '}', found '\"'",
            "x.jsonl:3: broken JSON at column 2: expected a field name in double quotes, found '''",
            "x.jsonl:4: broken JSON at column 1: a JSON array is not JSON Lines: write one object per line",
            "x.jsonl:5: broken JSON at column 121: unexpected text after the object",
            "x.jsonl:6: broken JSON at column 11: string is not closed (missing '\"')",
            "x.jsonl:7: broken JSON at column 39: field orgId appears twice",
        ])
    }

    @Test func jsonStringEscapesAreDecoded() throws {
        let text = #"{"orgId": "\#(org1)", "clientId": "\#(client1)", "secretExpiresAfterHours": 24, "idempotencyKey": "caf\u00e9 \ud83d\ude00 \"q\" \/"}"#
        let parsed = try RequestFile.parse(Array(text.utf8), name: "k.jsonl")
        #expect(parsed.first?.request.idempotencyKey == "café 😀 \"q\" /")
    }

    @Test func emptyFileAndBlankOnlyFile() {
        #expect(fileErrors("", name: "x.jsonl") == ["x.jsonl: file is empty (no requests)"])
        #expect(fileErrors("\n  \n\r\n", name: "x.jsonl") == ["x.jsonl: file is empty (no requests)"])
        #expect(fileErrors("", name: "-") == ["<stdin>: file is empty (no requests)"])
    }

    @Test func nonUTF8NamesLineAndByteOffset() {
        let good = Array(#"{"orgId": "\#(org1)", "clientId": "\#(client1)", "secretExpiresAfterHours": 720}"#.utf8) + [0x0A]
        var bytes = good
        bytes += Array(#"{"orgId": "x"#.utf8) + [0xFF] + Array("\"}\n".utf8)
        #expect(fileErrors(bytes, name: "x.jsonl") == ["x.jsonl:2: not valid UTF-8 (byte offset \(good.count + 12) in the file)"])
    }

    @Test func bomAndCRLFAreTolerated() throws {
        let text = "\u{FEFF}" + #"{"orgId": "\#(org1)", "clientId": "\#(client1)", "secretExpiresAfterHours": 720}"# + "\r\n"
            + #"{"orgId": "\#(org2)", "clientId": "\#(client2)", "secretExpiresAfterHours": 24}"# + "\r\n"
        let parsed = try RequestFile.parse(Array(text.utf8), name: "x.ndjson")
        #expect(parsed.map(\.request.orgId) == [org1, org2])
        #expect(parsed.map(\.line) == [1, 2])
    }

    @Test func duplicateKeyWithDifferentContentNamesBothLines() {
        let text = """
            {"orgId": "\(org1)", "clientId": "\(client1)", "secretExpiresAfterHours": 720, "idempotencyKey": "k1"}
            {"orgId": "\(org1)", "clientId": "\(client1)", "secretExpiresAfterHours": 720, "idempotencyKey": "k1"}
            {"orgId": "\(org1)", "clientId": "\(client1)", "secretExpiresAfterHours": 24, "idempotencyKey": "k1"}
            """
        #expect(fileErrors(text, name: "x.jsonl") == [#"x.jsonl:3: idempotencyKey "k1" is already used by line 1 with different content"#])
    }

    @Test func duplicateKeyAcrossFiles() {
        let a = #"{"orgId": "\#(org1)", "clientId": "\#(client1)", "secretExpiresAfterHours": 720, "idempotencyKey": "k1"}"#
        let b = #"{"orgId": "\#(org2)", "clientId": "\#(client1)", "secretExpiresAfterHours": 720, "idempotencyKey": "k1"}"#
        do {
            _ = try RequestFile.parse(files: [("a.jsonl", Array(a.utf8)), ("b.jsonl", Array(b.utf8))])
            Issue.record("expected an error")
        } catch {
            #expect(error.errors.map(\.description) == [#"b.jsonl:1: idempotencyKey "k1" is already used by a.jsonl:1 with different content"#])
            #expect(error.exitCode == .dataError)
        }
    }

    @Test func errorsOfSeveralFilesAreAllReported() {
        do {
            _ = try RequestFile.parse(files: [("a.jsonl", Array("{}".utf8)), ("b.csv", Array("orgId\n".utf8))])
            Issue.record("expected an error")
        } catch {
            #expect(error.errors.map(\.description) == [
                "a.jsonl:1: missing field orgId", "a.jsonl:1: missing field clientId", "a.jsonl:1: missing field secretExpiresAfterHours",
                "b.csv:1: header is missing column clientId (found: orgId)", "b.csv:1: header is missing column secretExpiresAfterHours (found: orgId)",
            ])
        }
    }
}

@Suite struct RequestFileFormatTests {
    @Test func formatByExtensionThenBySniffing() {
        #expect(RequestFile.detectFormat(name: "a.jsonl", bytes: Array("orgId".utf8)) == .jsonLines)
        #expect(RequestFile.detectFormat(name: "a.NDJSON", bytes: []) == .jsonLines)
        #expect(RequestFile.detectFormat(name: "a.json", bytes: []) == .jsonLines)
        #expect(RequestFile.detectFormat(name: "a.csv", bytes: Array("{".utf8)) == .csv)
        #expect(RequestFile.detectFormat(name: "-", bytes: Array("\u{FEFF}\n  {\"a\":1}".utf8)) == .jsonLines)
        #expect(RequestFile.detectFormat(name: "-", bytes: Array("orgId,clientId".utf8)) == .csv)
        #expect(RequestFile.detectFormat(name: "requests.txt", bytes: Array("{".utf8)) == .jsonLines)
        #expect(RequestFile.detectFormat(name: "dir.v2/requests", bytes: Array("orgId".utf8)) == .csv)
    }

    @Test func derivedKeyIsStableAndDependsOnEveryField() {
        let request = JobRequest(orgId: org1, clientId: client1, secretExpiresAfterHours: 720)
        let key = request.effectiveIdempotencyKey(batch: "nightly")
        #expect(key.hasPrefix("auto:"))
        #expect(key.count == 5 + 32)
        #expect(key == JobRequest(orgId: org1, clientId: client1, secretExpiresAfterHours: 720).effectiveIdempotencyKey(batch: "nightly"))
        // A fixed value, so a change of the derivation (which would re-run old files) cannot pass unnoticed.
        #expect(key == "auto:" + Hashing.hex("atlas-secrets.request.v1\n7:nightly\n24:\(org1)\n34:\(client1)\n3:720\n1:0", .sha256).prefix(32))
        var others: Set<String> = [key]
        others.insert(request.effectiveIdempotencyKey(batch: "nightly2"))
        others.insert(JobRequest(orgId: org2, clientId: client1, secretExpiresAfterHours: 720).effectiveIdempotencyKey(batch: "nightly"))
        others.insert(JobRequest(orgId: org1, clientId: client2, secretExpiresAfterHours: 720).effectiveIdempotencyKey(batch: "nightly"))
        others.insert(JobRequest(orgId: org1, clientId: client1, secretExpiresAfterHours: 72).effectiveIdempotencyKey(batch: "nightly"))
        others.insert(JobRequest(orgId: org1, clientId: client1, secretExpiresAfterHours: 720, priority: 1).effectiveIdempotencyKey(batch: "nightly"))
        #expect(others.count == 6)
        #expect(JobRequest(orgId: org1, clientId: client1, secretExpiresAfterHours: 720, idempotencyKey: "mine").effectiveIdempotencyKey(batch: "b") == "mine")
    }

    @Test func reparsingTheSameFileDerivesTheSameKeys() throws {
        let text = """
            {"orgId": "\(org1)", "clientId": "\(client1)", "secretExpiresAfterHours": 720}
            {"orgId": "\(org2)", "clientId": "\(client2)", "secretExpiresAfterHours": 24}
            """
        let first = try RequestFile.parse(Array(text.utf8), name: "x.jsonl").map { $0.request.effectiveIdempotencyKey(batch: "b") }
        let again = try RequestFile.parse(Array(text.utf8), name: "x.jsonl").map { $0.request.effectiveIdempotencyKey(batch: "b") }
        #expect(first == again)
        #expect(Set(first).count == 2)
    }

    @Test func errorDescriptionListsEveryProblemAndCounts() {
        let errors = RequestFileErrors([
            RequestFileError(file: "a.csv", line: 2, column: "orgId", message: "value is missing"),
            RequestFileError(file: "a.csv", line: 2, column: "clientId", message: "value is missing"),
            RequestFileError(file: "a.csv", line: 5, message: "expected 3 values"),
        ])
        #expect(errors.description == "a.csv:2: column orgId: value is missing\na.csv:2: column clientId: value is missing\na.csv:5: expected 3 values\n3 problems in 2 lines; nothing was queued.")
    }
}
