import Foundation
import Testing
@testable import AtlasSecrets

/// The committed example files parse, and have the shape the demo and benchmarks rely on.
@Suite struct RequestFileExamplesTests {
    static let jobs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("jobs")

    func load(_ name: String) throws -> [ParsedRequest] {
        let bytes = try [UInt8](Data(contentsOf: Self.jobs.appendingPathComponent(name)))
        return try RequestFile.parse(bytes, name: "jobs/" + name)
    }

    @Test func smallJSONLinesAndCSVHoldTheSameRequests() throws {
        let jsonl = try load("example-small.jsonl")
        let csv = try load("example-small.csv")
        #expect(jsonl.count == 5)
        #expect(Set(jsonl.map(\.request.orgId)).count == 3)
        #expect(jsonl.map(\.request) == csv.map(\.request))
    }

    @Test func largeFileHasManyOrgsAndAtMostTwoRequestsPerAccount() throws {
        let requests = try load("example-large.jsonl").map(\.request)
        #expect(requests.count >= 520)
        #expect(Set(requests.map(\.orgId)).count >= 30)
        let perAccount = Dictionary(grouping: requests) { "\($0.orgId)/\($0.clientId)" }
        #expect(perAccount.values.allSatisfy { $0.count <= 2 })
        #expect(perAccount.values.contains { $0.count == 2 })
        #expect(Set(requests.map(\.secretExpiresAfterHours)).isSuperset(of: [24, 168, 720, 2160, 8760]))
        #expect(requests.contains { $0.priority != 0 })
        #expect(requests.contains { $0.idempotencyKey != nil })
        // Every request is a distinct job: no two share an effective key.
        #expect(Set(requests.map { $0.effectiveIdempotencyKey(batch: "example") }).count == requests.count)
    }
}

@Suite struct RequestFileLoadingTests {
    @Test func loadsPathsAndStandardInputAndReportsUnreadableFiles() throws {
        let small = RequestFileExamplesTests.jobs.appendingPathComponent("example-small.jsonl").path
        let stdin = Array("orgId,clientId,secretExpiresAfterHours\n\(org1),\(client1),8\n".utf8)
        let loaded = try RequestFile.load(paths: [small, "-"], readStandardInput: { stdin })
        #expect(loaded.count == 6)
        #expect(loaded.last?.file == "<stdin>")
        do {
            _ = try RequestFile.load(paths: ["/nonexistent/x.jsonl", small, "/tmp"], readStandardInput: { [] })
            Issue.record("expected errors")
        } catch {
            #expect(error.errors.map(\.description) == ["/nonexistent/x.jsonl: no such file", "/tmp: is a directory, not a request file"])
        }
    }

    @Test func largeInputParsesInReasonableTime() throws {
        var text = ""
        for i in 0..<20_000 {
            text += #"{"orgId": "\#(org1)", "clientId": "\#(client1)", "secretExpiresAfterHours": \#(8 + i % 8000), "priority": \#(i)}"# + "\n"
        }
        let clock = ContinuousClock()
        var count = 0
        let elapsed = try clock.measure { count = try RequestFile.parse(Array(text.utf8), name: "big.jsonl").count }
        #expect(count == 20_000)
        #expect(elapsed < .seconds(20), "20k lines took \(elapsed)")
        print("RequestFile: 20,000 JSON lines parsed in \(elapsed) (debug build)")
    }
}
