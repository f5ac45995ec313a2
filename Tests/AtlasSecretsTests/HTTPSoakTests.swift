import Foundation
import Testing
@testable import AtlasSecrets

/// Memory stays flat over many requests on one lane (URLSession here grows ~150 B per request).
/// Slow and sensitive to other suites allocating in parallel, so opt-in:
/// `ATLAS_SECRETS_SOAK=1 swift test --filter HTTPSoakTests`.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["ATLAS_SECRETS_SOAK"] == "1"))
struct HTTPSoakTests {
    static func residentKB() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }

    @Test func residentMemoryIsFlatOverTwentyThousandCreates() throws {
        let server = LocalHTTPServer(record: false) { request, _ in
            request.target == "/api/oauth/token"
                ? .respond(status: 200, body: #"{"access_token":"t","expires_in":3600}"#)
                : .respond(status: 201, body: AtlasClientTests.created)
        }
        defer { server.stop() }
        let client = AtlasClient(baseURL: server.baseURL, tokens: TokenProvider(baseURL: server.baseURL), http: HTTPClient())
        func create() throws {
            _ = try client.createSecret(
                orgId: AtlasClientTests.orgId, clientId: AtlasClientTests.clientId, expiresAfterHours: 8, credential: AtlasClientTests.serviceAccount)
        }
        for _ in 0..<5_000 { try create() }  // warm-up: allocator pools, caches
        let before = Self.residentKB()
        for _ in 0..<20_000 { try create() }
        let grown = Self.residentKB() - before
        #expect(grown < 1_024, "RSS grew \(grown) KB over 20,000 requests")  // URLSession: ~2,900 KB
        #expect(server.connectionCount == 1)
    }
}
