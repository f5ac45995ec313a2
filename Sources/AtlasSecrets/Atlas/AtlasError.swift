import Foundation

/// A failed Atlas call. `description`: status, errorCode, detail — never a token, secret or
/// Authorization header.
public struct AtlasError: Error, CustomStringConvertible, CustomDebugStringConvertible {
    /// What went wrong; extensible.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case api, rateLimited, authentication, transport, invalidResponse
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        /// Atlas answered with an error status (an `ApiError` when the body parsed).
        public static let api = Code(.api)
        /// 429, or a 400 whose errorCode contains `RATE_LIMITED`: postpone, do not spend an attempt.
        public static let rateLimited = Code(.rateLimited)
        /// The token endpoint refused the credential, or the API answered 401/403 after a retry.
        public static let authentication = Code(.authentication)
        /// The request failed below HTTP; see `transport`.
        public static let transport = Code(.transport)
        /// The body could not be parsed or lacked a required field; `message` names it.
        public static let invalidResponse = Code(.invalidResponse)
        public var description: String { base.rawValue }
    }

    public var code: Code
    public var httpStatus: Int?
    /// Atlas's error body (or the OAuth error mapped onto it), `errorCode` and `detail` kept verbatim.
    public var apiError: ApiError?
    /// Seconds to wait, from `Retry-After` (delta-seconds or HTTP-date).
    public var retryAfter: Double?
    public var rateLimitLimit: Int?
    public var rateLimitRemaining: Int?
    public var transport: HTTPError?
    /// True when the call may have taken effect at Atlas without us seeing the answer: 5xx,
    /// timeout or connection lost after sending, an unreadable 201. False for 4xx, 429, connect failures.
    public var isAmbiguous: Bool
    /// Which call failed, e.g. `POST /api/atlas/v2/orgs/{orgId}/serviceAccounts/{clientId}/secrets`.
    public var operation: String
    /// Extra context (the missing field of an invalid response …); never a secret.
    public var message: String
    /// The first bytes of an unparseable error body, for `debugDescription` only.
    public var bodySnippet: String?
    /// The token ledger refused a token fetch before any request (Atlas's limits for the
    /// credential, across all workers): nothing was sent, and `message` says why.
    public var refusedByTokenLedger = false

    /// An error from its parts; `isAmbiguous` defaults from the status and transport error.
    public init(
        code: Code, operation: String, message: String = "", httpStatus: Int? = nil, apiError: ApiError? = nil,
        retryAfter: Double? = nil, rateLimitLimit: Int? = nil, rateLimitRemaining: Int? = nil,
        transport: HTTPError? = nil, isAmbiguous: Bool? = nil, bodySnippet: String? = nil
    ) {
        self.code = code
        self.operation = operation
        self.message = message
        self.httpStatus = httpStatus
        self.apiError = apiError
        self.retryAfter = retryAfter
        self.rateLimitLimit = rateLimitLimit
        self.rateLimitRemaining = rateLimitRemaining
        self.transport = transport
        self.bodySnippet = bodySnippet
        self.isAmbiguous = isAmbiguous ?? AtlasError.defaultAmbiguity(status: httpStatus, transport: transport)
    }

    /// 5xx, or a transport failure after bytes may have left.
    public static func defaultAmbiguity(status: Int?, transport: HTTPError?) -> Bool {
        if let transport { return transport.requestMayHaveBeenSent }
        if let status { return status >= 500 }
        return false
    }

    public var description: String {
        var parts = ["\(code)"]
        if let httpStatus { parts.append("HTTP \(httpStatus)") }
        if let apiError {
            parts.append(apiError.errorCode)
            if let detail = apiError.detail { parts.append(detail) }
        }
        if let transport { parts.append("\(transport.code): \(transport.message)") }
        if !message.isEmpty { parts.append(message) }
        if let retryAfter { parts.append("retry after \(retryAfter)s") }
        if isAmbiguous { parts.append("outcome unknown") }
        return "Atlas error (\(operation)): " + parts.joined(separator: ", ")
    }

    public var debugDescription: String {
        var text = description
        if let reason = apiError?.reason { text += " reason=\(reason)" }
        if let fields = apiError?.badRequestDetail?.fields, !fields.isEmpty {
            text += " fields=" + fields.map { "\($0.field ?? "?"): \($0.description ?? "")" }.joined(separator: "; ")
        }
        if let rateLimitLimit { text += " RateLimit-Limit=\(rateLimitLimit)" }
        if let rateLimitRemaining { text += " RateLimit-Remaining=\(rateLimitRemaining)" }
        if let bodySnippet { text += " body=\(bodySnippet)" }
        return text
    }
}

/// `Retry-After` as seconds from now: delta-seconds or an HTTP-date (IMF-fixdate, RFC 850, asctime);
/// nil when absent or unreadable, never negative.
public func parseRetryAfter(_ value: String?) -> Double? { parseRetryAfter(value, now: Date()) }

/// The longest wait a Retry-After is taken for: an hour. A larger value (a misconfigured proxy, a
/// date years ahead) would otherwise hold an organization's jobs back for that long.
let maxRetryAfter = 3600.0

func parseRetryAfter(_ value: String?, now: Date) -> Double? {
    guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
    if let seconds = Double(value), seconds.isFinite { return min(max(0, seconds), maxRetryAfter) }
    for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = format
        if let date = formatter.date(from: value) { return min(max(0, date.timeIntervalSince(now)), maxRetryAfter) }
    }
    return nil
}
