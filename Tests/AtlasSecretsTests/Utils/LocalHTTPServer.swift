import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A request as the local test server received it.
struct RecordedRequest: Sendable {
    var method: String
    var target: String
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }
    var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// What the local test server does with one request.
enum ServerAction: Sendable {
    case respond(status: Int, headers: [(String, String)] = [], body: String = "", delay: Double = 0)
    /// Reads the request, then closes the connection without answering.
    case closeWithoutResponse
}

/// A tiny HTTP/1.1 server on 127.0.0.1 for transport tests: keep-alive, Content-Length bodies,
/// one thread per connection; every request is recorded and answered by `handler`.
final class LocalHTTPServer: Sendable {
    let port: Int
    private let listenFD: Int32
    private let handler: @Sendable (RecordedRequest, Int) -> ServerAction
    private let log = Mutex<[RecordedRequest]>([])
    private let connections = Atomic<Int>(0)
    private let stopped = Atomic<Bool>(false)
    private let counter = Atomic<Int>(0)
    private let record: Bool

    /// `handler(request, index)` with index counting requests from 0; `record` false keeps no log
    /// (long runs that measure the client's memory).
    init(record: Bool = true, handler: @escaping @Sendable (RecordedRequest, Int) -> ServerAction) {
        self.handler = handler
        self.record = record
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        precondition(bound == 0 && listen(fd, 64) == 0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.port = Int(UInt16(bigEndian: addr.sin_port))
        self.listenFD = fd
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }
    var requests: [RecordedRequest] { log.withLock { $0 } }
    /// TCP connections accepted so far.
    var connectionCount: Int { connections.load(ordering: .relaxed) }

    func stop() {
        stopped.store(true, ordering: .relaxed)
    }

    deinit { close(listenFD) }

    private func acceptLoop() {
        while !stopped.load(ordering: .relaxed) {
            var p = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 50) > 0 else { continue }
            let client = accept(listenFD, nil, nil)
            guard client >= 0 else { continue }
            connections.add(1, ordering: .relaxed)
            Thread.detachNewThread { [self] in serve(client) }
        }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        var buffer: [UInt8] = []
        while !stopped.load(ordering: .relaxed) {
            guard let request = readRequest(fd, &buffer) else { return }
            let index = counter.add(1, ordering: .relaxed).oldValue
            if record { log.withLock { $0.append(request) } }
            switch handler(request, index) {
            case .closeWithoutResponse:
                return
            case .respond(let status, let headers, let body, let delay):
                if delay > 0 { Thread.sleep(forTimeInterval: delay) }
                var head = "HTTP/1.1 \(status) Status\r\n"
                for (name, value) in headers { head += "\(name): \(value)\r\n" }
                if status != 204 && status != 304 { head += "Content-Length: \(body.utf8.count)\r\n" }
                head += "\r\n"
                let bytes = Array((head + (status == 204 ? "" : body)).utf8)
                var sent = 0
                while sent < bytes.count {
                    let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
                    if n <= 0 { return }
                    sent += n
                }
            }
        }
    }

    /// Reads one request (headers and Content-Length body); nil when the peer closed or we stop.
    private func readRequest(_ fd: Int32, _ buffer: inout [UInt8]) -> RecordedRequest? {
        let separator: [UInt8] = [13, 10, 13, 10]
        func fill() -> Bool {
            while true {
                if stopped.load(ordering: .relaxed) { return false }
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if poll(&p, 1, 50) <= 0 { continue }
                var chunk = [UInt8](repeating: 0, count: 65536)
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { return false }
                buffer += chunk[0..<n]
                return true
            }
        }
        var headerEnd: Int?
        while headerEnd == nil {
            if buffer.count >= 4 {
                headerEnd = (0...(buffer.count - 4)).first { Array(buffer[$0..<$0 + 4]) == separator }
            }
            if headerEnd == nil, !fill() { return nil }
        }
        let head = String(decoding: buffer[0..<headerEnd!], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        var headers: [(name: String, value: String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        let length = headers.first { $0.name.lowercased() == "content-length" }.flatMap { Int($0.value) } ?? 0
        let bodyStart = headerEnd! + 4
        while buffer.count < bodyStart + length { if !fill() { return nil } }
        let body = Array(buffer[bodyStart..<bodyStart + length])
        buffer.removeFirst(bodyStart + length)
        return RecordedRequest(
            method: requestLine.count > 0 ? String(requestLine[0]) : "",
            target: requestLine.count > 1 ? String(requestLine[1]) : "",
            headers: headers, body: body)
    }
}

/// A port on 127.0.0.1 with nothing listening (bound, then closed).
func closedLocalPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    close(fd)
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// Temporary files for the credentials and key-file tests.
enum ClientTestFiles {
    /// A new temporary directory; remove it with `remove`.
    static func directory() -> String {
        let path = NSTemporaryDirectory() + "atlas-secrets-client-tests-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Writes `text` to `path` with permission bits `mode` (set explicitly, whatever the umask).
    static func write(_ path: String, _ text: String, mode: Int) {
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        chmod(path, mode_t(mode))
    }

    static func remove(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

    /// The permission bits of `path`.
    static func mode(_ path: String) -> Int {
        var info = stat()
        guard stat(path, &info) == 0 else { return -1 }
        return Int(info.st_mode) & 0o777
    }
}
