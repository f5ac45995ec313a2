#if canImport(Glibc)
import Glibc
#endif
import AtlasSecrets
import AtlasSim
import Foundation
import Testing

/// A minimal raw-socket HTTP/1.1 client for the simulator tests (keep-alive, Content-Length).
final class SimRawClient {
    struct Response {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]
        func header(_ name: String) -> String? {
            headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
        }
        var json: JSON? { JSON.parse(body) }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    struct Failure: Error, CustomStringConvertible { var description: String }

    private let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            throw Failure(description: "connect failed: \(errno)")
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Sends one request and reads one response; nil when the server closed without answering.
    func send(_ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8]? = nil) throws -> Response? {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (n, v) in headers { head += "\(n): \(v)\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        let bytes = Array(head.utf8) + (body ?? [])
        let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == bytes.count else { return nil }
        return try readResponse(noBody: method == "HEAD")
    }

    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 16384)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { return false }
        buffer.append(contentsOf: chunk[0..<n])
        return true
    }

    private func readResponse(noBody: Bool) throws -> Response? {
        let marker: [UInt8] = [13, 10, 13, 10]
        var end: Int?
        while end == nil {
            if buffer.count >= 4 {
                end = (0...(buffer.count - 4)).first { Array(buffer[$0..<($0 + 4)]) == marker }
            }
            if end == nil, !fill() { return nil }
        }
        let head = String(decoding: buffer[0..<end!], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = head[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw Failure(description: "bad status line \(head[0])") }
        let headers: [(String, String)] = head.dropFirst().compactMap { line in
            guard let c = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<c]), line[line.index(after: c)...].trimmingCharacters(in: .whitespaces))
        }
        buffer.removeFirst(end! + 4)
        let length = headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
        while buffer.count < length { if !fill() { throw Failure(description: "body cut short") } }
        let body = Array(buffer[0..<length])
        buffer.removeFirst(length)
        return Response(status: status, headers: headers, body: body)
    }
}

/// Shared helpers: a started simulator and authenticated calls.
struct SimHarness {
    static let accept = ("Accept", atlasMediaType)
    static let contentType = ("Content-Type", atlasMediaType)

    let sim: AtlasSimulator

    /// Starts a simulator on an ephemeral port with `orgs` seeded orgs of `accounts` accounts each.
    init(orgs: Int = 2, accounts: Int = 2, _ configure: (inout SimulatorConfiguration) -> Void = { _ in }) throws {
        var configuration = SimulatorConfiguration()
        configure(&configuration)
        sim = AtlasSimulator(configuration: configuration)
        sim.seed(orgs: orgs, accountsPerOrg: accounts)
        try sim.start()
    }

    func client() throws -> SimRawClient { try SimRawClient(port: sim.port) }

    /// The credential of seeded org `index`.
    func credential(_ index: Int) -> SimCredential {
        sim.credentials.first { $0.orgId == AtlasSimulator.orgId(index: index) }!.credential
    }

    /// Mints an OAuth token for seeded org `index` (an OAuth org).
    func token(_ index: Int, _ c: SimRawClient) throws -> String {
        guard case let .serviceAccount(id, secret) = credential(index) else { throw SimRawClient.Failure(description: "org \(index) is not OAuth") }
        let basic = Data("\(id):\(secret)".utf8).base64EncodedString()
        let r = try c.send("POST", "/api/oauth/token", headers: [("Authorization", "Basic \(basic)"),
            ("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")],
            body: Array("grant_type=client_credentials".utf8))
        guard let token = r?.json?["access_token"]?.stringValue else { throw SimRawClient.Failure(description: "no token: \(r?.text ?? "-")") }
        return token
    }

    /// An Atlas call with a Bearer token.
    func call(_ c: SimRawClient, _ token: String, _ method: String, _ path: String, json: String? = nil) throws -> SimRawClient.Response {
        var headers = [("Authorization", "Bearer \(token)"), SimHarness.accept]
        if json != nil { headers.append(SimHarness.contentType) }
        return try c.send(method, path, headers: headers, body: json.map { Array($0.utf8) })!
    }

    static func secretsPath(org: Int, account: Int) -> String {
        "/api/atlas/v2/orgs/\(AtlasSimulator.orgId(index: org))/serviceAccounts/\(AtlasSimulator.clientId(org: org, account: account))/secrets"
    }

    func stop() { sim.stop() }
}

@Suite struct SimClientTests {
    @Test func keepAliveServesManyRequestsOnOneConnectionAndCloseIsHonoured() throws {
        let h = try SimHarness()
        defer { h.stop() }
        let c = try h.client()
        for _ in 0..<5 {
            #expect(try c.send("GET", "/_sim/state")?.status == 200)
        }
        let last = try c.send("GET", "/_sim/state", headers: [("Connection", "close")])
        #expect(last?.header("Connection") == "close")
        #expect(try c.send("GET", "/_sim/state") == nil)
    }

    @Test func chunkedBodiesAndUnknownRoutesAnswerApiErrors() throws {
        let h = try SimHarness()
        defer { h.stop() }
        let chunked = try h.client().send("POST", "/api/oauth/token", headers: [("Transfer-Encoding", "chunked")])
        #expect(chunked?.status == 501)
        #expect(chunked?.json?["error"] == 501)
        let c = try h.client()
        let unknown = try c.send("GET", "/api/atlas/v2/groups")
        #expect(unknown?.status == 404)
        #expect(unknown?.json?["errorCode"] == "RESOURCE_NOT_FOUND")
        let method = try c.send("PUT", "/api/atlas/v2/orgs/\(AtlasSimulator.orgId(index: 0))/serviceAccounts")
        #expect(method?.status == 405)
        #expect(method?.header("Allow") == "GET, POST")
    }
}
