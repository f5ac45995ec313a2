import Foundation
import Testing
@testable import AtlasSecrets

@Suite struct KeyFileTests {
    @Test func generateWritesMode0600AndLoadsBackTheSameKey() throws {
        let dir = ClientTestFiles.directory()
        defer { ClientTestFiles.remove(dir) }
        let path = dir + "/key"
        let key = try SecretKey.generate(path: path)
        #expect(ClientTestFiles.mode(path) == 0o600)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.count == 65 && text.hasSuffix("\n"))
        #expect(text.dropLast().allSatisfy { "0123456789abcdef".contains($0) })
        let loaded = try SecretKey.load(path: path)
        #expect(loaded.id == key.id)
        let sealed = SecretBox.seal("s3cret", key: key, associatedData: "atlas-secrets:job:1")
        #expect(try SecretBox.open(sealed, key: loaded, associatedData: "atlas-secrets:job:1") == "s3cret")
    }

    @Test func generateNeverOverwrites() throws {
        let dir = ClientTestFiles.directory()
        defer { ClientTestFiles.remove(dir) }
        let path = dir + "/key"
        let first = try SecretKey.generate(path: path)
        let error = #expect(throws: KeyFileError.self) { try SecretKey.generate(path: path) }
        #expect(error?.code == .alreadyExists)
        #expect(error?.description.contains(path) == true)
        #expect(try SecretKey.load(path: path).id == first.id)  // untouched
    }

    @Test func loadRefusesGroupOrOtherPermissions() {
        let dir = ClientTestFiles.directory()
        defer { ClientTestFiles.remove(dir) }
        let path = dir + "/key"
        let hex = String(repeating: "ab", count: 32)
        for mode in [0o644, 0o640, 0o604, 0o601] {
            ClientTestFiles.write(path, hex + "\n", mode: mode)
            let error = #expect(throws: KeyFileError.self) { try SecretKey.load(path: path) }
            #expect(error?.code == .insecure)
            #expect(error?.description.contains("chmod 600 \(path)") == true)
        }
        ClientTestFiles.write(path, hex + "\n", mode: 0o400)
        #expect((try? SecretKey.load(path: path)) != nil)
    }

    @Test func loadRefusesMissingShortAndNonHexFilesNamingThem() {
        let dir = ClientTestFiles.directory()
        defer { ClientTestFiles.remove(dir) }
        let missing = #expect(throws: KeyFileError.self) { try SecretKey.load(path: dir + "/nope") }
        #expect(missing?.code == .unreadable)
        #expect(missing?.description.contains(dir + "/nope") == true)
        for (name, text) in [
            ("short", String(repeating: "ab", count: 31) + "\n"),
            ("long", String(repeating: "ab", count: 33) + "\n"),
            ("nothex", String(repeating: "zz", count: 32) + "\n"),
            ("upper", String(repeating: "AB", count: 32) + "\n"),
            ("twolines", String(repeating: "ab", count: 32) + "\nxx\n"),
        ] {
            let path = dir + "/" + name
            ClientTestFiles.write(path, text, mode: 0o600)
            let error = #expect(throws: KeyFileError.self) { try SecretKey.load(path: path) }
            #expect(error?.code == .malformed, "\(name)")
            #expect(error?.description.contains(path) == true)
        }
    }
}
