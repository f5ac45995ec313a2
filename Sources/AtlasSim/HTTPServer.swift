#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// One HTTP/1.1 request as the simulator's handler sees it.
public struct SimHTTPRequest: Sendable {
    /// The method, as sent (`GET`, `POST`, …).
    public var method: String
    /// The raw request-target, path and query (`/api/x?y=1`).
    public var target: String
    /// The path part of the target, still percent-encoded.
    public var path: String
    /// Query parameters, percent-decoded, in order.
    public var query: [(name: String, value: String)]
    /// Header fields in order; names as sent.
    public var headers: [(name: String, value: String)]
    /// The body (Content-Length bytes).
    public var body: [UInt8]

    /// Creates a request (tests build them to call the handler directly).
    public init(method: String, target: String, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.method = method
        self.target = target
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        self.path = String(parts.first ?? "")
        self.query = parts.count > 1 ? SimHTTPRequest.parseForm(String(parts[1])) : []
        self.headers = headers
        self.body = body
    }

    /// The first header field named `name` (case-insensitive), trimmed.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
            .trimmingCharacters(in: .whitespaces)
    }

    /// The first query parameter named `name`.
    public func queryValue(_ name: String) -> String? { query.first { $0.name == name }?.value }

    /// Parses `a=1&b=x%20y` (form or query encoding; `+` is a space).
    public static func parseForm(_ text: String) -> [(name: String, value: String)] {
        text.split(separator: "&").map { pair in
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode = { (s: Substring) in
                String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s)
            }
            return (decode(kv[0]), kv.count > 1 ? decode(kv[1]) : "")
        }
    }
}

/// One response; `dropConnection` closes the socket without answering.
public struct SimHTTPResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// Close the socket without sending anything (a lost response).
    public var dropConnection = false

    /// Creates a response.
    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A response that closes the connection without a byte.
    public static var dropped: SimHTTPResponse {
        var r = SimHTTPResponse(status: 0)
        r.dropConnection = true
        return r
    }

    /// The first header field named `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// The standard reason phrase for `status`.
    public static func reason(_ status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 200: "OK"
        case 201: "Created"
        case 204: "No Content"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 406: "Not Acceptable"
        case 409: "Conflict"
        case 411: "Length Required"
        case 413: "Content Too Large"
        case 415: "Unsupported Media Type"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: "Unknown"
        }
    }
}

/// The simulator's failure to start (bind, listen).
public struct SimulatorError: Error, CustomStringConvertible, Sendable {
    /// What failed; extensible.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String { case socket, bind, listen, badHost, io, badInput }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        public static let socket = Code(.socket)
        public static let bind = Code(.bind)
        public static let listen = Code(.listen)
        public static let badHost = Code(.badHost)
        public static let io = Code(.io)
        public static let badInput = Code(.badInput)
        public var description: String { base.rawValue }
    }
    public var code: Code
    public var message: String
    public var errno: Int32
    /// Creates an error.
    public init(_ code: Code, _ message: String, errno: Int32 = 0) {
        self.code = code
        self.message = message
        self.errno = errno
    }
    public var description: String {
        errno == 0 ? "\(code): \(message)" : "\(code): \(message): \(String(cString: strerror(errno)))"
    }
}

/// A small HTTP/1.1 server on POSIX sockets: one thread per connection, keep-alive,
/// Content-Length bodies, `Connection: close` honoured, loopback only.
///
/// Thread-safe. `stop()` closes the listener, shuts every open connection down and waits
/// (up to 5 s) for their threads to finish.
final class HTTPServer: Sendable {
    typealias Handler = @Sendable (SimHTTPRequest) -> SimHTTPResponse

    struct Limits: Sendable {
        var maxHeaderBytes = 32 * 1024
        var maxBodyBytes = 1024 * 1024
        var idleTimeoutSeconds = 60
    }

    private struct State: Sendable {
        var listenFD: Int32 = -1
        var stopping = false
        var connections: Set<Int32> = []
        var acceptRunning = false
        var connectionsAccepted = 0
    }

    private let handler: Handler
    private let limits: Limits
    private let state = Mutex(State())

    init(limits: Limits = Limits(), handler: @escaping Handler) {
        self.handler = handler
        self.limits = limits
    }

    /// Open connections right now (for leak checks).
    var openConnections: Int { state.withLock { $0.connections.count } }
    /// Connections accepted since start.
    var connectionsAccepted: Int { state.withLock { $0.connectionsAccepted } }

    /// Binds `host:port` (port 0 = ephemeral), starts accepting, and returns the bound port.
    func start(host: String, port: Int) throws(SimulatorError) -> Int {
        guard host == "127.0.0.1" || host == "localhost" else {
            throw SimulatorError(.badHost, "the simulator binds 127.0.0.1 only, not \(host)")
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SimulatorError(.socket, "socket()", errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            let e = errno
            close(fd)
            throw SimulatorError(.bind, "bind 127.0.0.1:\(port)", errno: e)
        }
        guard listen(fd, 512) == 0 else {
            let e = errno
            close(fd)
            throw SimulatorError(.listen, "listen", errno: e)
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        state.withLock {
            $0.listenFD = fd
            $0.acceptRunning = true
            $0.stopping = false
        }
        let thread = Thread { [self] in acceptLoop(fd) }
        thread.name = "atlas-sim accept"
        thread.start()
        return Int(UInt16(bigEndian: actual.sin_port))
    }

    /// Stops accepting, shuts down open connections and waits for their threads.
    func stop() {
        state.withLock {
            $0.stopping = true
            for fd in $0.connections { shutdown(fd, Int32(SHUT_RDWR)) }
        }
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            let done = state.withLock {
                for fd in $0.connections { shutdown(fd, Int32(SHUT_RDWR)) }
                return !$0.acceptRunning && $0.connections.isEmpty
            }
            if done { break }
            usleep(5_000)
        }
    }

    private func acceptLoop(_ listenFD: Int32) {
        defer {
            close(listenFD)
            state.withLock { $0.acceptRunning = false; $0.listenFD = -1 }
        }
        while true {
            if state.withLock({ $0.stopping }) { return }
            var pfd = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 100)
            if ready <= 0 { continue }
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                if errno == EMFILE || errno == ENFILE { usleep(10_000) }
                continue
            }
            let admitted = state.withLock {
                if $0.stopping { return false }
                $0.connections.insert(fd)
                $0.connectionsAccepted += 1
                return true
            }
            guard admitted else { close(fd); return }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            var timeout = timeval(tv_sec: limits.idleTimeoutSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let thread = Thread { [self] in
                serve(fd)
                state.withLock {
                    $0.connections.remove(fd)
                    close(fd)
                }
            }
            thread.stackSize = 512 * 1024
            thread.start()
        }
    }

    private enum Parse {
        case need
        case request(SimHTTPRequest, keepAlive: Bool, consumed: Int)
        case reject(Int, String)
    }

    /// Serves one connection until it closes, errs, idles out or asks to close.
    private func serve(_ fd: Int32) {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        var continueSent = false
        while true {
            switch parse(buffer, fd: fd, continueSent: &continueSent) {
            case .need:
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { return }
                buffer.append(contentsOf: chunk[0..<n])
            case let .reject(status, message):
                // Even transport-level rejections answer with an ApiError body.
                let body: JSON = .object([
                    ("detail", .string(message)), ("error", .int(status)), ("errorCode", "INVALID_REQUEST"),
                    ("parameters", []), ("reason", .string(SimHTTPResponse.reason(status))),
                ])
                let r = SimHTTPResponse(status: status, headers: [("Content-Type", "application/json")], body: body.serialized())
                _ = write(r, to: fd, close: true)
                return
            case let .request(request, keepAlive, consumed):
                buffer.removeFirst(consumed)
                continueSent = false
                let response = handler(request)
                if response.dropConnection { return }
                let closing = !keepAlive || response.header("Connection")?.lowercased() == "close"
                if !write(response, to: fd, close: closing) || closing { return }
            }
        }
    }

    private static let headerEnd: [UInt8] = [13, 10, 13, 10]

    private func parse(_ buffer: [UInt8], fd: Int32, continueSent: inout Bool) -> Parse {
        guard let end = HTTPServer.find(HTTPServer.headerEnd, in: buffer) else {
            return buffer.count > limits.maxHeaderBytes ? .reject(431, "request header too large") : .need
        }
        if end > limits.maxHeaderBytes { return .reject(431, "request header too large") }
        guard let head = String(validating: buffer[0..<end], as: UTF8.self) else {
            return .reject(400, "request header is not UTF-8")
        }
        var lines = head.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ", omittingEmptySubsequences: false)
        guard requestLine.count == 3, requestLine[2].hasPrefix("HTTP/1."), requestLine[1].hasPrefix("/") else {
            return .reject(400, "malformed request line")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                return .reject(400, "malformed header line")
            }
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)))
        }
        func field(_ name: String) -> String? {
            headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
        }
        if field("Transfer-Encoding") != nil { return .reject(501, "only Content-Length bodies are supported") }
        var length = 0
        if let text = field("Content-Length") {
            guard let n = Int(text), n >= 0 else { return .reject(400, "bad Content-Length") }
            length = n
        }
        if length > limits.maxBodyBytes { return .reject(413, "body larger than \(limits.maxBodyBytes) bytes") }
        let bodyStart = end + 4
        if buffer.count < bodyStart + length {
            if !continueSent, field("Expect")?.lowercased() == "100-continue" {
                continueSent = true
                let line = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
                _ = HTTPServer.sendAll(line, fd)
            }
            return .need
        }
        let version = requestLine[2]
        let connection = field("Connection")?.lowercased() ?? ""
        let keepAlive = version == "HTTP/1.1" ? !connection.contains("close") : connection.contains("keep-alive")
        let request = SimHTTPRequest(
            method: String(requestLine[0]), target: String(requestLine[1]), headers: headers,
            body: Array(buffer[bodyStart..<(bodyStart + length)]))
        return .request(request, keepAlive: keepAlive, consumed: bodyStart + length)
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        return haystack.withUnsafeBufferPointer { h in
            var i = 0
            let last = h.count - needle.count
            while i <= last {
                if h[i] == needle[0] && h[i + 1] == needle[1] && h[i + 2] == needle[2] && h[i + 3] == needle[3] {
                    return i
                }
                i += 1
            }
            return nil
        }
    }

    private func write(_ response: SimHTTPResponse, to fd: Int32, close: Bool) -> Bool {
        var head = "HTTP/1.1 \(response.status) \(SimHTTPResponse.reason(response.status))\r\n"
        for (name, value) in response.headers where name.caseInsensitiveCompare("Connection") != .orderedSame {
            head += "\(name): \(value)\r\n"
        }
        if response.status != 204 && response.status >= 200 {
            head += "Content-Length: \(response.body.count)\r\n"
        }
        if close { head += "Connection: close\r\n" }
        head += "\r\n"
        var bytes = Array(head.utf8)
        if response.status != 204 { bytes.append(contentsOf: response.body) }
        return HTTPServer.sendAll(bytes, fd)
    }

    private static func sendAll(_ bytes: [UInt8], _ fd: Int32) -> Bool {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
    }
}
