import CCrypto
import Foundation

/// Message digests through libcrypto's `EVP_Digest` (MD5 is deprecated as a direct call in OpenSSL 3).
public enum Hashing {
    /// The digest algorithms HTTP Digest authentication names.
    public enum Algorithm: String, Sendable, CaseIterable {
        case md5 = "MD5"
        case sha256 = "SHA-256"
    }

    /// The digest of `data`, as raw bytes.
    public static func digest(_ data: some Collection<UInt8>, _ algorithm: Algorithm) -> [UInt8] {
        let md: OpaquePointer? = switch algorithm {
        case .md5: EVP_md5()
        case .sha256: EVP_sha256()
        }
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let bytes = Array(data)
        let ok = bytes.withUnsafeBytes { input in
            out.withUnsafeMutableBufferPointer { output in
                EVP_Digest(input.baseAddress, input.count, output.baseAddress, &length, md, nil)
            }
        }
        precondition(ok == 1, "EVP_Digest failed")
        return Array(out.prefix(Int(length)))
    }

    /// The lowercase hex digest of the UTF-8 bytes of `text`.
    public static func hex(_ text: String, _ algorithm: Algorithm) -> String {
        hexString(digest(Array(text.utf8), algorithm))
    }

    /// Lowercase hex of `bytes`.
    public static func hexString(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `count` cryptographically random bytes from `RAND_bytes`.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let ok = out.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        precondition(ok == 1, "RAND_bytes failed")
        return out
    }
}
