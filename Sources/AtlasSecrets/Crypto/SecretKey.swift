import Foundation

/// Why a key file could not be loaded or created; names the file, never shows key bytes.
public struct KeyFileError: Error, CustomStringConvertible {
    /// What is wrong; extensible.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable { case unreadable, insecure, malformed, alreadyExists, writeFailed }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        /// Missing or unreadable.
        public static let unreadable = Code(.unreadable)
        /// Group or other have a permission bit.
        public static let insecure = Code(.insecure)
        /// Not one line of 64 lowercase hex characters.
        public static let malformed = Code(.malformed)
        /// `generate` found a file already there.
        public static let alreadyExists = Code(.alreadyExists)
        /// `generate` could not write the file.
        public static let writeFailed = Code(.writeFailed)
        public var description: String { base.rawValue }
    }

    public var code: Code
    public var path: String
    public var message: String

    /// An error from its parts.
    public init(code: Code, path: String, message: String) {
        self.code = code
        self.path = path
        self.message = message
    }

    public var description: String { message }
}

/// A 32-byte AES-256 key with its id (first 16 hex chars of SHA-256 of the key bytes).
public struct SecretKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// First 16 hex characters of SHA-256 of the key bytes; stored beside each ciphertext.
    public let id: String
    let bytes: [UInt8]

    /// A key from 32 raw bytes; nil for any other length.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.bytes = bytes
        self.id = String(Hashing.hexString(Hashing.digest(bytes, .sha256)).prefix(16))
    }

    /// File format: one line, 64 lowercase hex chars. Refused when group/other have any permission
    /// (message names the file and says chmod 600), missing, wrong length, not hex: error naming the file.
    public static func load(path: String) throws(KeyFileError) -> SecretKey {
        let data: Data
        switch readPrivateFile(path) {
        case .success(let d): data = d
        case .failure(.unreadable(let reason)):
            throw KeyFileError(code: .unreadable, path: path, message: "key file \(path): \(reason)")
        case .failure(.insecure(let mode)):
            throw KeyFileError(
                code: .insecure, path: path,
                message: "key file \(path) is accessible by group or others (mode \(String(mode, radix: 8))): run chmod 600 \(path)")
        }
        var text = Array(data)
        if text.last == UInt8(ascii: "\n") { text.removeLast() }
        if text.last == UInt8(ascii: "\r") { text.removeLast() }
        let malformed = KeyFileError(code: .malformed, path: path, message: "key file \(path): expected one line of 64 lowercase hex characters (make one with `atlas-secrets keygen`)")
        guard text.count == 64 else { throw malformed }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        for i in stride(from: 0, to: 64, by: 2) {
            guard let hi = hexValue(text[i]), let lo = hexValue(text[i + 1]) else { throw malformed }
            bytes.append(hi << 4 | lo)
        }
        return SecretKey(bytes: bytes)!
    }

    /// Creates a new key file with mode 0600 (O_CREAT|O_EXCL: never overwrites an existing file).
    public static func generate(path: String) throws(KeyFileError) -> SecretKey {
        let key = SecretKey(bytes: Hashing.randomBytes(32))!
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            let err = errno
            if err == EEXIST {
                throw KeyFileError(code: .alreadyExists, path: path, message: "key file \(path) already exists: refusing to overwrite it")
            }
            throw KeyFileError(code: .writeFailed, path: path, message: "key file \(path): \(String(cString: strerror(err)))")
        }
        let line = Array((Hashing.hexString(key.bytes) + "\n").utf8)
        var ok = fchmod(fd, 0o600) == 0  // the umask can only remove bits, but be exact
        var written = 0
        while ok && written < line.count {
            let n = line.withUnsafeBytes { write(fd, $0.baseAddress! + written, line.count - written) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { ok = false } else { written += n }
        }
        if ok { ok = fsync(fd) == 0 }
        let reason = String(cString: strerror(errno))
        close(fd)
        guard ok else {
            unlink(path)  // we created it; a half-written key must not be used later
            throw KeyFileError(code: .writeFailed, path: path, message: "key file \(path): \(reason)")
        }
        return key
    }

    /// description shows only the id.
    public var description: String { "SecretKey(id: \(id))" }
    public var debugDescription: String { description }
    /// Mirror (and so `dump`) shows only the id.
    public var customMirror: Mirror { Mirror(self, children: ["id": id]) }
}

private func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
    default: nil
    }
}
