import Testing
@testable import AtlasSecrets

@Suite struct RequestFileCSVTests {
    @Test func validCSVWithOptionalColumns() throws {
        let text = """
            orgId,clientId,secretExpiresAfterHours,idempotencyKey,priority
            \(org1),\(client1),720,,
            \(org2), \(client2) ,24,"key, with ""quotes\"\"",3
            """
        let parsed = try RequestFile.parse(Array(text.utf8), name: "jobs/x.csv")
        #expect(parsed == [
            ParsedRequest(request: JobRequest(orgId: org1, clientId: client1, secretExpiresAfterHours: 720), file: "jobs/x.csv", line: 2),
            ParsedRequest(request: JobRequest(orgId: org2, clientId: client2, secretExpiresAfterHours: 24, idempotencyKey: "key, with \"quotes\"", priority: 3), file: "jobs/x.csv", line: 3),
        ])
    }

    @Test func columnsInAnyOrderBOMAndCRLF() throws {
        let text = "\u{FEFF}secretExpiresAfterHours,clientId,orgId\r\n168,\(client1),\(org1)\r\n\r\n8760,\(client2),\(org2)\r\n"
        let parsed = try RequestFile.parse(Array(text.utf8), name: "x.csv")
        #expect(parsed.map(\.request) == [
            JobRequest(orgId: org1, clientId: client1, secretExpiresAfterHours: 168),
            JobRequest(orgId: org2, clientId: client2, secretExpiresAfterHours: 8760),
        ])
        #expect(parsed.map(\.line) == [2, 4])
    }

    @Test func quotedLineBreakKeepsLineNumbersRight() throws {
        let text = "orgId,clientId,secretExpiresAfterHours,idempotencyKey\n\(org1),\(client1),720,\"two\nlines\"\n\(org2),\(client2),ten,\n"
        #expect(fileErrors(text, name: "x.csv") == [
            #"x.csv:2: column idempotencyKey: "two\nlines" contains a control character"#,
            #"x.csv:4: column secretExpiresAfterHours: "ten" is not an integer"#,
        ])
    }

    @Test func everyBadRowNamesLineAndColumn() {
        let text = """
            orgId,clientId,secretExpiresAfterHours
            \(org1),\(client1),720
            abc,\(client1),720
            \(org1),\(client1),ten
            \(org1),\(client1),9000
            \(org1),,720
            \(org1),\(client1),720,extra
            \(org1),"\(client1)"x,720
            \(org1),cli"ent,720
            """
        #expect(fileErrors(text, name: "jobs/x.csv") == [
            #"jobs/x.csv:3: column orgId: "abc" is not 24 lowercase hex characters"#,
            #"jobs/x.csv:4: column secretExpiresAfterHours: "ten" is not an integer"#,
            #"jobs/x.csv:5: column secretExpiresAfterHours: 9000 is outside 8...8760 hours"#,
            #"jobs/x.csv:6: column clientId: value is missing"#,
            #"jobs/x.csv:7: expected 3 values (orgId,clientId,secretExpiresAfterHours), found 4"#,
            #"jobs/x.csv:8: column clientId: text after a closing quote (write a quote inside quotes as "")"#,
            #"jobs/x.csv:9: column clientId: a quote inside an unquoted value (quote the whole value and double the quote)"#,
        ])
    }

    @Test func headerProblems() {
        #expect(fileErrors("org,clientId,secretExpiresAfterHours\n", name: "x.csv") == [
            "x.csv:1: header has unknown column org; did you mean orgId? (found: org,clientId,secretExpiresAfterHours)",
            "x.csv:1: header is missing column orgId (found: org,clientId,secretExpiresAfterHours)",
        ])
        #expect(fileErrors("orgid,clientId,secretExpiresAfterHours,priority,priority\n", name: "x.csv") == [
            "x.csv:1: header has unknown column orgid; did you mean orgId? (found: orgid,clientId,secretExpiresAfterHours,priority,priority)",
            "x.csv:1: header names column priority twice (found: orgid,clientId,secretExpiresAfterHours,priority,priority)",
            "x.csv:1: header is missing column orgId (found: orgid,clientId,secretExpiresAfterHours,priority,priority)",
        ])
        #expect(fileErrors("orgId,clientId\n\(org1),\(client1)\n", name: "x.csv") == [
            "x.csv:1: header is missing column secretExpiresAfterHours (found: orgId,clientId)",
        ])
    }

    @Test func emptyAndHeaderOnly() {
        #expect(fileErrors("", name: "x.csv") == ["x.csv: file is empty (no requests)"])
        #expect(fileErrors("\u{FEFF}", name: "x.csv") == ["x.csv: file is empty (no requests)"])
        #expect(fileErrors("orgId,clientId,secretExpiresAfterHours\r\n", name: "x.csv") == ["x.csv: file is empty (no requests)"])
    }

    @Test func unclosedQuoteNamesTheLineItStarts() {
        let text = "orgId,clientId,secretExpiresAfterHours\n\(org1),\(client1),720\n\(org1),\"\(client1),720\n\(org1),\(client1),720\n"
        #expect(fileErrors(text, name: "x.csv") == [#"x.csv:3: column clientId: quoted value is not closed (missing '"')"#])
    }

    @Test func nonUTF8InCSV() {
        var bytes = Array("orgId,clientId,secretExpiresAfterHours\n".utf8)
        let offset = bytes.count + 3
        bytes += Array("abc".utf8) + [0xC3, 0x28] + Array(",\(client1),720\n".utf8)
        bytes += Array("\(org1),\(client1),720\n".utf8)
        #expect(fileErrors(bytes, name: "x.csv") == ["x.csv:2: not valid UTF-8 (byte offset \(offset) in the file)"])
    }

    @Test func stdinSniffedAsCSV() throws {
        let parsed = try RequestFile.parse(Array("orgId,clientId,secretExpiresAfterHours\n\(org1),\(client1),8\n".utf8), name: "-")
        #expect(parsed == [ParsedRequest(request: JobRequest(orgId: org1, clientId: client1, secretExpiresAfterHours: 8), file: "<stdin>", line: 2)])
    }
}
