import CCrypto

/// Why a sealed secret could not be opened; never shows bytes.
public struct SecretBoxError: Error, CustomStringConvertible {
    /// What is wrong; extensible.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable { case tooShort, authenticationFailed, notUTF8 }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        /// Shorter than nonce + tag.
        public static let tooShort = Code(.tooShort)
        /// Tampered ciphertext, wrong key or wrong associated data.
        public static let authenticationFailed = Code(.authenticationFailed)
        /// Decrypted, but not UTF-8 text.
        public static let notUTF8 = Code(.notUTF8)
        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String

    /// An error from its parts.
    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// AES-256-GCM through libcrypto EVP: 12-byte random nonce, 16-byte tag, associated data binds the
/// ciphertext to its row (e.g. "atlas-secrets:job:<id>"). Output layout: nonce||ciphertext||tag.
public enum SecretBox {
    static let nonceSize = 12
    static let tagSize = 16

    /// Encrypts `plaintext` under `key` with a fresh random nonce.
    public static func seal(_ plaintext: String, key: SecretKey, associatedData: String) -> [UInt8] {
        let nonce = Hashing.randomBytes(nonceSize)
        let input = Array(plaintext.utf8)
        let aad = Array(associatedData.utf8)
        guard let ctx = EVP_CIPHER_CTX_new() else { fatalError("EVP_CIPHER_CTX_new failed") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        var ok = key.bytes.withUnsafeBufferPointer { k in
            nonce.withUnsafeBufferPointer { n in EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, k.baseAddress, n.baseAddress) }
        } == 1
        var outLength: Int32 = 0
        if ok, !aad.isEmpty {
            ok = aad.withUnsafeBufferPointer { EVP_EncryptUpdate(ctx, nil, &outLength, $0.baseAddress, Int32($0.count)) } == 1
        }
        var ciphertext = [UInt8](repeating: 0, count: input.count + 16)
        var produced = 0
        if ok, !input.isEmpty {
            ok = ciphertext.withUnsafeMutableBufferPointer { out in
                input.withUnsafeBufferPointer { EVP_EncryptUpdate(ctx, out.baseAddress, &outLength, $0.baseAddress, Int32($0.count)) }
            } == 1
            produced = Int(outLength)
        }
        if ok {
            ok = ciphertext.withUnsafeMutableBufferPointer { EVP_EncryptFinal_ex(ctx, $0.baseAddress! + produced, &outLength) } == 1
            produced += Int(outLength)
        }
        var tag = [UInt8](repeating: 0, count: tagSize)
        if ok {
            ok = tag.withUnsafeMutableBytes { EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(tagSize), $0.baseAddress) } == 1
        }
        precondition(ok, "AES-256-GCM encryption failed in libcrypto")
        return nonce + ciphertext.prefix(produced) + tag
    }

    /// Decrypts and authenticates; tampering, a wrong key or wrong associated data throw `.authenticationFailed`.
    public static func open(_ sealed: [UInt8], key: SecretKey, associatedData: String) throws(SecretBoxError) -> String {
        guard sealed.count >= nonceSize + tagSize else {
            throw SecretBoxError(code: .tooShort, message: "sealed secret is \(sealed.count) bytes, shorter than nonce and tag (\(nonceSize + tagSize))")
        }
        let nonce = Array(sealed.prefix(nonceSize))
        let ciphertext = Array(sealed.dropFirst(nonceSize).dropLast(tagSize))
        var tag = Array(sealed.suffix(tagSize))
        let aad = Array(associatedData.utf8)
        guard let ctx = EVP_CIPHER_CTX_new() else { fatalError("EVP_CIPHER_CTX_new failed") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        var ok = key.bytes.withUnsafeBufferPointer { k in
            nonce.withUnsafeBufferPointer { n in EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, k.baseAddress, n.baseAddress) }
        } == 1
        var outLength: Int32 = 0
        if ok, !aad.isEmpty {
            ok = aad.withUnsafeBufferPointer { EVP_DecryptUpdate(ctx, nil, &outLength, $0.baseAddress, Int32($0.count)) } == 1
        }
        var plaintext = [UInt8](repeating: 0, count: ciphertext.count + 16)
        var produced = 0
        if ok, !ciphertext.isEmpty {
            ok = plaintext.withUnsafeMutableBufferPointer { out in
                ciphertext.withUnsafeBufferPointer { EVP_DecryptUpdate(ctx, out.baseAddress, &outLength, $0.baseAddress, Int32($0.count)) }
            } == 1
            produced = Int(outLength)
        }
        // The tag must be set before the final call; a failed check shows only as a 0 return.
        if ok {
            ok = tag.withUnsafeMutableBytes { EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(tagSize), $0.baseAddress) } == 1
        }
        if ok {
            ok = plaintext.withUnsafeMutableBufferPointer { EVP_DecryptFinal_ex(ctx, $0.baseAddress! + produced, &outLength) } == 1
            produced += Int(outLength)
        }
        guard ok else {
            ERR_clear_error()
            throw SecretBoxError(code: .authenticationFailed, message: "sealed secret failed authentication: wrong key, wrong row, or tampered data")
        }
        guard let text = String(validating: plaintext.prefix(produced), as: UTF8.self) else {
            throw SecretBoxError(code: .notUTF8, message: "decrypted secret is not UTF-8 text")
        }
        return text
    }
}

/// The mask stored when Atlas's 201 has no maskedSecretValue: keeps only the `mdb_sa_sk_` prefix and
/// the last 4 characters, e.g. "mdb_sa_sk_…wxyz"; a value without the prefix gives "…wxyz".
/// Values too short to hide most of them (under 12 characters after the prefix) show no tail.
public func maskSecret(_ secret: String) -> String {
    let prefix = "mdb_sa_sk_"
    let hasPrefix = secret.hasPrefix(prefix)
    let rest = hasPrefix ? secret.dropFirst(prefix.count) : Substring(secret)
    let tail = rest.count >= 12 ? String(rest.suffix(4)) : ""
    return (hasPrefix ? prefix : "") + "…" + tail
}
