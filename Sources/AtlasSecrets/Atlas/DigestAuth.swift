import Foundation

/// One challenge from a `WWW-Authenticate` header: a scheme and its parameters.
public struct AuthChallenge: Sendable, Equatable {
    /// The auth scheme as sent (`Digest`, `Basic`, `Bearer` …).
    public var scheme: String
    /// Parameters with lowercased names; quoted values unquoted and unescaped.
    public var parameters: [String: String]

    /// A challenge from its parts.
    public init(scheme: String, parameters: [String: String]) {
        self.scheme = scheme
        self.parameters = parameters
    }

    /// Parses one or more `WWW-Authenticate` header values (RFC 9110 section 11.6.1 grammar):
    /// several challenges per value, quoted strings holding commas and escaped quotes, token68.
    public static func parse(_ headerValues: [String]) -> [AuthChallenge] {
        headerValues.flatMap(parseOne)
    }

    private static func parseOne(_ value: String) -> [AuthChallenge] {
        var scanner = Tokens(Array(value.utf8))
        var result: [AuthChallenge] = []
        while true {
            scanner.skip(whitespaceAndCommas: true)
            guard let scheme = scanner.token() else { break }
            var challenge = AuthChallenge(scheme: scheme, parameters: [:])
            // auth-params: name = (token | quoted-string), separated by commas; a token not
            // followed by "=" starts the next challenge.
            paramLoop: while true {
                scanner.skip(whitespaceAndCommas: true)
                let mark = scanner.position
                guard let name = scanner.token() else { break }
                scanner.skip(whitespaceAndCommas: false)
                guard scanner.consume(UInt8(ascii: "=")) else {
                    scanner.position = mark  // next challenge's scheme
                    break paramLoop
                }
                scanner.skip(whitespaceAndCommas: false)
                if scanner.peek == UInt8(ascii: "=") {  // token68 padding such as "abc=="
                    while scanner.consume(UInt8(ascii: "=")) {}
                    continue
                }
                let value = scanner.quotedString() ?? scanner.token() ?? ""
                challenge.parameters[name.lowercased()] = value
            }
            result.append(challenge)
        }
        return result
    }

    /// A tiny byte scanner for the header grammar.
    private struct Tokens {
        let bytes: [UInt8]
        var position = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }

        var peek: UInt8? { position < bytes.count ? bytes[position] : nil }

        mutating func consume(_ byte: UInt8) -> Bool {
            guard peek == byte else { return false }
            position += 1
            return true
        }

        mutating func skip(whitespaceAndCommas: Bool) {
            while let b = peek, b == 0x20 || b == 0x09 || (whitespaceAndCommas && b == UInt8(ascii: ",")) { position += 1 }
        }

        /// tchar per RFC 9110, plus "/" so token68 values (base64) read as one token.
        mutating func token() -> String? {
            let start = position
            while let b = peek, Tokens.isTokenChar(b) { position += 1 }
            return position > start ? String(decoding: bytes[start..<position], as: UTF8.self) : nil
        }

        mutating func quotedString() -> String? {
            guard consume(UInt8(ascii: "\"")) else { return nil }
            var out: [UInt8] = []
            while let b = peek {
                position += 1
                if b == UInt8(ascii: "\"") { break }
                if b == UInt8(ascii: "\\"), let next = peek {
                    out.append(next)
                    position += 1
                } else {
                    out.append(b)
                }
            }
            return String(decoding: out, as: UTF8.self)
        }

        static func isTokenChar(_ b: UInt8) -> Bool {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                return true
            default:
                return Array("!#$%&'*+-.^_`|~/".utf8).contains(b)
            }
        }
    }
}

/// HTTP Digest authentication (RFC 7616), computed by hand: libcurl's and URLSession's are not used
/// so that the challenge can be cached per lane and the body resent by us.
public struct DigestChallenge: Sendable, Equatable {
    /// The hash named by `algorithm` (default MD5) and whether it is a `-sess` variant.
    public var algorithm: Hashing.Algorithm
    public var isSession: Bool
    public var realm: String
    public var nonce: String
    public var opaque: String?
    /// True when the server offered `qop=auth`; false means the RFC 2069 form without qop.
    public var qopAuth: Bool
    /// True when the server said the nonce was stale (credentials were right).
    public var stale: Bool

    /// The strongest usable Digest challenge among `challenges` (SHA-256 before MD5), or nil.
    /// Challenges asking only for `auth-int`, `userhash=true` or an unknown algorithm are skipped.
    public static func select(from challenges: [AuthChallenge]) -> DigestChallenge? {
        let usable = challenges.compactMap(DigestChallenge.init(challenge:))
        return usable.first { $0.algorithm == .sha256 } ?? usable.first
    }

    /// Reads a `Digest` challenge; nil when it is another scheme or unusable.
    public init?(challenge: AuthChallenge) {
        guard challenge.scheme.caseInsensitiveCompare("Digest") == .orderedSame,
              let realm = challenge.parameters["realm"], let nonce = challenge.parameters["nonce"]
        else { return nil }
        var name = (challenge.parameters["algorithm"] ?? "MD5").uppercased()
        isSession = name.hasSuffix("-SESS")
        if isSession { name.removeLast(5) }
        guard let algorithm = Hashing.Algorithm(rawValue: name) else { return nil }
        if challenge.parameters["userhash"]?.lowercased() == "true" { return nil }
        if let qop = challenge.parameters["qop"] {
            let options = qop.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard options.contains("auth") else { return nil }
            qopAuth = true
        } else {
            qopAuth = false
        }
        self.algorithm = algorithm
        self.realm = realm
        self.nonce = nonce
        self.opaque = challenge.parameters["opaque"]
        self.stale = challenge.parameters["stale"]?.lowercased() == "true"
    }

    /// The `response` value: RFC 7616 section 3.4.1 (and RFC 2069 without qop).
    public func response(username: String, password: String, method: String, uri: String, nc: Int, cnonce: String) -> String {
        func h(_ s: String) -> String { Hashing.hex(s, algorithm) }
        var ha1 = h("\(username):\(realm):\(password)")
        if isSession { ha1 = h("\(ha1):\(nonce):\(cnonce)") }
        let ha2 = h("\(method):\(uri)")
        if qopAuth {
            return h("\(ha1):\(nonce):\(DigestChallenge.ncString(nc)):\(cnonce):auth:\(ha2)")
        }
        return h("\(ha1):\(nonce):\(ha2)")
    }

    /// The full `Authorization` header value for one request.
    public func authorization(username: String, password: String, method: String, uri: String, nc: Int, cnonce: String) -> String {
        let response = response(username: username, password: password, method: method, uri: uri, nc: nc, cnonce: cnonce)
        let algorithmName = algorithm.rawValue + (isSession ? "-sess" : "")
        var parts = [
            "username=\(Self.quote(username))", "realm=\(Self.quote(realm))", "nonce=\(Self.quote(nonce))",
            "uri=\(Self.quote(uri))", "algorithm=\(algorithmName)", "response=\(Self.quote(response))",
        ]
        if let opaque { parts.append("opaque=\(Self.quote(opaque))") }
        if qopAuth { parts += ["qop=auth", "nc=\(Self.ncString(nc))", "cnonce=\(Self.quote(cnonce))"] }
        return "Digest " + parts.joined(separator: ", ")
    }

    /// A fresh client nonce: 16 random bytes as hex.
    public static func makeCnonce() -> String { Hashing.hexString(Hashing.randomBytes(16)) }

    static func ncString(_ nc: Int) -> String {
        let hex = String(nc, radix: 16)
        return String(repeating: "0", count: max(0, 8 - hex.count)) + hex
    }

    static func quote(_ s: String) -> String {
        "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
