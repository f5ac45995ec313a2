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
