import CCurl
import Synchronization
import Foundation

/// One HTTP request: method, absolute URL, headers in order, optional body.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]?
    /// Send on a connection of its own, closed after the reply (see `Configuration.freshConnectionForPOST`).
    public var freshConnection = false

    /// A request; `body` nil sends none (an empty array sends `Content-Length: 0`).
    public init(method: String, url: String, headers: [(name: String, value: String)] = [], body: [UInt8]? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }

    /// The value of the first header named `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }
}

/// One HTTP response: the final status, its headers in order, and the body.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    /// A response, as the transport or a test builds it.
    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The value of the first header named `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// Every value of the headers named `name` (case-insensitive), in order.
    public func headers(named name: String) -> [String] {
        headers.filter { $0.name.caseInsensitiveCompare(name) == .orderedSame }.map(\.value)
    }
}

/// Transport failure. `requestMayHaveBeenSent` false only when we know nothing reached the
/// server (could not resolve/connect, connect timeout): then a retry is always safe.
public struct HTTPError: Error, CustomStringConvertible {
    /// What kind of transport failure; extensible.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case couldNotConnect, timedOut, connectionLost, invalidRequest, other
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        /// DNS resolution, TCP connect or TLS handshake failed: nothing was sent.
        public static let couldNotConnect = Code(.couldNotConnect)
        /// The connect or the whole request timed out.
        public static let timedOut = Code(.timedOut)
        /// The connection broke while sending or receiving.
        public static let connectionLost = Code(.connectionLost)
        /// The request itself was rejected by libcurl before sending (bad URL, bad option).
        public static let invalidRequest = Code(.invalidRequest)
        /// Any other libcurl failure.
        public static let other = Code(.other)
        public var description: String { base.rawValue }
    }

    public var code: Code
    /// The libcurl `CURLcode`.
    public var curlCode: Int
    /// libcurl's error text (never holds headers or bodies).
    public var message: String
    /// False only when nothing can have reached the server.
    public var requestMayHaveBeenSent: Bool

    /// An error from its parts.
    public init(code: Code, curlCode: Int, message: String, requestMayHaveBeenSent: Bool) {
        self.code = code
        self.curlCode = curlCode
        self.message = message
        self.requestMayHaveBeenSent = requestMayHaveBeenSent
    }

    public var description: String {
        "HTTPError(\(code), curl \(curlCode): \(message)\(requestMayHaveBeenSent ? "" : ", not sent"))"
    }
}

/// One libcurl easy handle with its keep-alive connection. NOT thread-safe: one lane owns it.
///
/// Create it on the thread (lane) that uses it. libcurl is initialised once per process on
/// first use; call `HTTPClient.globalInit()` from `main` before starting threads to be explicit.
public final class HTTPClient {
    /// The version this build reports in its `User-Agent`.
    public static let productVersion = "0.1.0"

    /// Timeouts and identity of the client.
    public struct Configuration: Sendable {
        /// Seconds allowed for DNS + TCP (+ TLS) connect.
        public var connectTimeout: Double = 10
        /// Seconds allowed for the whole request, connect included.
        public var requestTimeout: Double = 30
        /// `atlas-secrets/<version> (libcurl/<ver>)` by default.
        public var userAgent: String = HTTPClient.defaultUserAgent
        /// Open a new connection for every POST (default false). libcurl silently resends a request
        /// once on a fresh connection when a reused one dies before any response byte; for a POST
        /// that the server did process, that resend duplicates it. True closes that window at the
        /// cost of a connect (and TLS handshake) per POST.
        public var freshConnectionForPOST: Bool = false
        /// When set, an in-flight transfer is abandoned (as a lost connection) soon after it fires.
        public var abortSignal: AbortSignal?

        /// A configuration; every argument has the documented default.
        public init(
            connectTimeout: Double = 10, requestTimeout: Double = 30, userAgent: String = HTTPClient.defaultUserAgent,
            freshConnectionForPOST: Bool = false
        ) {
            self.connectTimeout = connectTimeout
            self.requestTimeout = requestTimeout
            self.userAgent = userAgent
            self.freshConnectionForPOST = freshConnectionForPOST
        }
    }

    /// `atlas-secrets/<version> (libcurl/<ver>)`.
    public static var defaultUserAgent: String {
        let full = String(cString: curl_version())  // "libcurl/7.88.1 OpenSSL/3.0.x zlib/…"
        let curl = full.split(separator: " ").first.map(String.init) ?? "libcurl"
        return "atlas-secrets/\(productVersion) (\(curl))"
    }

    /// Initialises libcurl once for the process (idempotent, thread-safe through Swift's lazy globals).
    public static func globalInit() { _ = curlGlobalInit }

    public let configuration: Configuration
    private let handle: UnsafeMutableRawPointer
    private let sink = ResponseSink()
    /// libcurl writes its error text here during `curl_easy_perform`; must outlive every transfer.
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)

    /// A client with its own easy handle; the connection opens on the first request.
    public init(configuration: Configuration = .init()) {
        HTTPClient.globalInit()
        self.configuration = configuration
        guard let h = curl_easy_init() else { fatalError("curl_easy_init failed (out of memory)") }
        self.handle = h
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    }

    deinit {
        curl_easy_cleanup(handle)
        errorBuffer.deallocate()
    }

    /// Sends `request` and waits for the whole response; reuses the kept-alive connection.
    ///
    /// Throws `HTTPError` for transport failures only; any HTTP status is a response.
    public func send(_ request: HTTPRequest) throws(HTTPError) -> HTTPResponse {
        curl_easy_reset(handle)  // keeps live connections, DNS and TLS session caches
        sink.reset()
        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        defer { curl_slist_free_all(headerList) }

        var setupFailure: CURLcode = CURLE_OK
        func set(_ result: CURLcode) { if setupFailure == CURLE_OK && result != CURLE_OK { setupFailure = result } }

        errorBuffer[0] = 0
        set(ccurl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorBuffer))
        set(ccurl_setopt_string(handle, CURLOPT_URL, request.url))
        set(ccurl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))  // threads: no SIGALRM for timeouts
        set(ccurl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Int(configuration.connectTimeout * 1000)))
        set(ccurl_setopt_long(handle, CURLOPT_TIMEOUT_MS, Int(configuration.requestTimeout * 1000)))
        set(ccurl_setopt_long(handle, CURLOPT_TCP_KEEPALIVE, 1))
        set(ccurl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0))
        set(ccurl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https"))
        set(ccurl_setopt_string(handle, CURLOPT_USERAGENT, configuration.userAgent))

        let method = request.method.uppercased()
        if request.freshConnection || (method == "POST" && configuration.freshConnectionForPOST) {
            // A connection of its own, closed after the reply: not left in the cache either.
            set(ccurl_setopt_long(handle, CURLOPT_FRESH_CONNECT, 1))
            set(ccurl_setopt_long(handle, CURLOPT_FORBID_REUSE, 1))
        }
        if let body = request.body {
            set(ccurl_setopt_long(handle, CURLOPT_POST, 1))
            set(ccurl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, body.count))
            // COPYPOSTFIELDS copies the bytes now, so the array need not outlive this call.
            if body.isEmpty {
                set(ccurl_setopt_string(handle, CURLOPT_COPYPOSTFIELDS, ""))
            } else {
                body.withUnsafeBytes { set(ccurl_setopt_pointer(handle, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress))) }
            }
            if method != "POST" { set(ccurl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, method)) }
        } else if method == "GET" {
            set(ccurl_setopt_long(handle, CURLOPT_HTTPGET, 1))
        } else if method == "HEAD" {
            set(ccurl_setopt_long(handle, CURLOPT_NOBODY, 1))
        } else {
            set(ccurl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, method))
        }

        for (name, value) in request.headers {
            // Bytes, not Characters: "\r\n" is one Character and would compare equal to neither.
            guard !name.isEmpty, !name.utf8.contains(where: { $0 == 13 || $0 == 10 || $0 == 58 || $0 == 0 }),
                  !value.utf8.contains(where: { $0 == 13 || $0 == 10 || $0 == 0 })
            else {
                throw HTTPError(code: .invalidRequest, curlCode: 0, message: "header \(name.debugDescription) is empty or holds a line break", requestMayHaveBeenSent: false)
            }
            // "Name;" is libcurl's spelling of a header with an empty value.
            headerList = curl_slist_append(headerList, value.isEmpty ? "\(name);" : "\(name): \(value)")
        }
        if request.header("Expect") == nil { headerList = curl_slist_append(headerList, "Expect:") }
        if request.body != nil, request.header("Content-Type") == nil {
            headerList = curl_slist_append(headerList, "Content-Type:")  // no form default
        }
        set(ccurl_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList))

        let sinkPointer = Unmanaged.passUnretained(sink).toOpaque()
        set(ccurl_setopt_callback(handle, CURLOPT_WRITEFUNCTION, curlWriteBody))
        set(ccurl_setopt_pointer(handle, CURLOPT_WRITEDATA, sinkPointer))
        set(ccurl_setopt_callback(handle, CURLOPT_HEADERFUNCTION, curlWriteHeader))
        set(ccurl_setopt_pointer(handle, CURLOPT_HEADERDATA, sinkPointer))

        if let abort = configuration.abortSignal {
            set(ccurl_setopt_long(handle, CURLOPT_NOPROGRESS, 0))
            set(ccurl_setopt_xferinfo(handle, curlAbortCheck))
            set(ccurl_setopt_pointer(handle, CURLOPT_XFERINFODATA, Unmanaged.passUnretained(abort).toOpaque()))
        }
        if setupFailure != CURLE_OK {
            throw HTTPError(code: .invalidRequest, curlCode: Int(setupFailure.rawValue), message: curlMessage(setupFailure), requestMayHaveBeenSent: false)
        }

        let result = withExtendedLifetime((sink, configuration.abortSignal)) { curl_easy_perform(handle) }
        if result != CURLE_OK { throw classify(result) }

        var status = 0
        _ = ccurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: sink.headers, body: sink.body)
    }

    private func curlMessage(_ code: CURLcode) -> String {
        let detail = String(cString: errorBuffer)
        return detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
    }

    /// Maps a failed transfer to an `HTTPError`, deciding conservatively whether bytes may have left.
    private func classify(_ result: CURLcode) -> HTTPError {
        var requestSize = 0
        _ = ccurl_getinfo_long(handle, CURLINFO_REQUEST_SIZE, &requestSize)
        var pretransfer = 0.0
        _ = ccurl_getinfo_double(handle, CURLINFO_PRETRANSFER_TIME, &pretransfer)
        let message = curlMessage(result)
        let raw = Int(result.rawValue)
        switch result {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_CONNECT,
             CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE,
             CURLE_SSL_CERTPROBLEM:
            return HTTPError(code: .couldNotConnect, curlCode: raw, message: message, requestMayHaveBeenSent: false)
        case CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT, CURLE_BAD_FUNCTION_ARGUMENT:
            return HTTPError(code: .invalidRequest, curlCode: raw, message: message, requestMayHaveBeenSent: false)
        case CURLE_OPERATION_TIMEDOUT:
            // Timed out before the transfer phase began and with no request byte written: a connect timeout.
            let notSent = requestSize == 0 && pretransfer == 0
            return HTTPError(code: .timedOut, curlCode: raw, message: message, requestMayHaveBeenSent: !notSent)
        case CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE, CURLE_HTTP2,
             CURLE_HTTP2_STREAM, CURLE_WRITE_ERROR, CURLE_ABORTED_BY_CALLBACK:
            return HTTPError(code: .connectionLost, curlCode: raw, message: message, requestMayHaveBeenSent: true)
        default:
            return HTTPError(code: .other, curlCode: raw, message: message, requestMayHaveBeenSent: true)
        }
    }
}

private let curlGlobalInit: Void = {
    let rc = ccurl_global_init_default()
    precondition(rc == CURLE_OK, "curl_global_init failed: \(rc)")
}()

/// Collects one response's headers and body; reached from libcurl's callbacks on the lane's thread.
private final class ResponseSink {
    var headers: [(name: String, value: String)] = []
    var body: [UInt8] = []

    func reset() {
        headers.removeAll(keepingCapacity: true)
        body.removeAll(keepingCapacity: true)
    }

    func headerLine(_ bytes: UnsafeRawBufferPointer) {
        var end = bytes.count
        while end > 0, bytes[end - 1] == 10 || bytes[end - 1] == 13 { end -= 1 }
        let line = String(decoding: bytes[0..<end], as: UTF8.self)
        if line.hasPrefix("HTTP/") {
            headers.removeAll()  // a new response (100 Continue, 401 then retry): keep only the last
            return
        }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = line[..<colon].trimmingCharacters(in: .whitespaces)
        let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        headers.append((name: name, value: value))
    }
}

private let curlWriteBody: ccurl_data_callback = { ptr, size, count, userdata in
    let total = size * count
    guard let userdata, let ptr else { return total }
    let sink = Unmanaged<ResponseSink>.fromOpaque(userdata).takeUnretainedValue()
    sink.body.append(contentsOf: UnsafeRawBufferPointer(start: ptr, count: total))
    return total
}

private let curlWriteHeader: ccurl_data_callback = { ptr, size, count, userdata in
    let total = size * count
    guard let userdata, let ptr else { return total }
    let sink = Unmanaged<ResponseSink>.fromOpaque(userdata).takeUnretainedValue()
    sink.headerLine(UnsafeRawBufferPointer(start: ptr, count: total))
    return total
}

/// A flag that abandons the in-flight transfers of every HTTPClient configured with it
/// (the worker sets it when the shutdown grace period is over). Thread-safe.
public final class AbortSignal: Sendable {
    private let flag = Atomic<Bool>(false)
    /// A signal not yet set.
    public init() {}
    /// Abandons transfers from now on.
    public func set() { flag.store(true, ordering: .relaxed) }
    /// Whether `set()` was called.
    public var isSet: Bool { flag.load(ordering: .relaxed) }
}

private let curlAbortCheck: ccurl_xferinfo_callback = { clientp, _, _, _, _ in
    guard let clientp else { return 0 }
    return Unmanaged<AbortSignal>.fromOpaque(clientp).takeUnretainedValue().isSet ? 1 : 0
}
