import Testing
@testable import AtlasSecrets

@Suite struct SecretBoxTests {
    static let key = SecretKey(bytes: Array(0..<32))!
    static let otherKey = SecretKey(bytes: Array(repeating: 7, count: 32))!
    static let secret = "mdb_sa_sk_0123456789abcdefghijklmnopqrstuvwxyz"

    @Test func roundTripAndLayout() throws {
        let sealed = SecretBox.seal(Self.secret, key: Self.key, associatedData: "atlas-secrets:job:42")
        #expect(sealed.count == 12 + Self.secret.utf8.count + 16)
        #expect(!String(decoding: sealed, as: UTF8.self).contains("mdb_sa_sk_"))
        #expect(try SecretBox.open(sealed, key: Self.key, associatedData: "atlas-secrets:job:42") == Self.secret)
        // A fresh nonce every time: the same plaintext never seals to the same bytes.
        #expect(SecretBox.seal(Self.secret, key: Self.key, associatedData: "a") != SecretBox.seal(Self.secret, key: Self.key, associatedData: "a"))
    }

    @Test func emptyPlaintextAndEmptyAssociatedData() throws {
        let sealed = SecretBox.seal("", key: Self.key, associatedData: "")
        #expect(sealed.count == 28)
        #expect(try SecretBox.open(sealed, key: Self.key, associatedData: "") == "")
        #expect(throws: SecretBoxError.self) { try SecretBox.open(sealed, key: Self.key, associatedData: "x") }
    }

    @Test func knownAnswerFromIndependentImplementation() throws {
        // AES-256-GCM, key 00..1f, nonce 00..0b, AD "ad", plaintext "hello", computed with
        // Python's `cryptography` AESGCM (ciphertext||tag): proves the layout is standard GCM.
        let nonce: [UInt8] = Array(0..<12)
        let body = hexBytes("2f67ba77aa38215d6806453a27a3336e1274817eb9")
        #expect(try SecretBox.open(nonce + body, key: Self.key, associatedData: "ad") == "hello")
    }

    @Test func tamperingWrongKeyWrongAssociatedDataAreRefused() {
        let sealed = SecretBox.seal(Self.secret, key: Self.key, associatedData: "atlas-secrets:job:1")
        for index in [0, 12, sealed.count - 1] {  // nonce, ciphertext, tag
            var bad = sealed
            bad[index] ^= 0x01
            let error = #expect(throws: SecretBoxError.self) { try SecretBox.open(bad, key: Self.key, associatedData: "atlas-secrets:job:1") }
            #expect(error?.code == .authenticationFailed)
        }
        let wrongKey = #expect(throws: SecretBoxError.self) { try SecretBox.open(sealed, key: Self.otherKey, associatedData: "atlas-secrets:job:1") }
        #expect(wrongKey?.code == .authenticationFailed)
        let wrongRow = #expect(throws: SecretBoxError.self) { try SecretBox.open(sealed, key: Self.key, associatedData: "atlas-secrets:job:2") }
        #expect(wrongRow?.code == .authenticationFailed)
        #expect(wrongRow?.description.contains("mdb_sa_sk_") == false)
        let short = #expect(throws: SecretBoxError.self) { try SecretBox.open(Array(sealed.prefix(27)), key: Self.key, associatedData: "atlas-secrets:job:1") }
        #expect(short?.code == .tooShort)
    }

    @Test func maskKeepsPrefixAndLastFour() {
        #expect(maskSecret("mdb_sa_sk_abcdefghijklmnopqrstwxyz") == "mdb_sa_sk_…wxyz")
        #expect(maskSecret("0123456789abcdefwxyz") == "…wxyz")
        #expect(maskSecret("mdb_sa_sk_short") == "mdb_sa_sk_…")  // too short to show a tail
        #expect(maskSecret("") == "…")
    }

    @Test func keyIdIsSHA256PrefixAndDescriptionHidesBytes() {
        #expect(Self.key.id == String(Hashing.hexString(Hashing.digest(Array(0..<32), .sha256)).prefix(16)))
        #expect(Self.key.id.count == 16)
        #expect("\(Self.key)" == "SecretKey(id: \(Self.key.id))")
        var dumped = ""
        dump(Self.key, to: &dumped)
        #expect(!dumped.contains("bytes"))
        #expect(SecretKey(bytes: [1, 2, 3]) == nil)
    }
}

func hexBytes(_ hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var chars = Array(hex.utf8)
    while chars.count >= 2 {
        out.append(UInt8(String(decoding: chars.prefix(2), as: UTF8.self), radix: 16)!)
        chars.removeFirst(2)
    }
    return out
}
