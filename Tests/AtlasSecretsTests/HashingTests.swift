import Testing
@testable import AtlasSecrets

@Suite struct HashingTests {
    @Test func knownVectors() {
        #expect(Hashing.hex("", .md5) == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(Hashing.hex("abc", .sha256) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Hashing.randomBytes(16).count == 16)
    }
}
