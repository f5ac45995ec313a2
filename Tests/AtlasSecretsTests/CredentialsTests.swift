import Foundation
import Testing
@testable import AtlasSecrets

@Suite struct CredentialsTests {
    static let org1 = "5f1a2b3c4d5e6f7a8b9c0d1e"
    static let org2 = "6a1a2b3c4d5e6f7a8b9c0d1f"
    static let clientId = "mdb_sa_id_5f1a2b3c4d5e6f7a8b9c0d1e"

    @Test func environmentGivesTheDefault() throws {
        let sa = try CredentialStore.load(
            environment: ["MONGODB_ATLAS_CLIENT_ID": Self.clientId, "MONGODB_ATLAS_CLIENT_SECRET": "mdb_sa_sk_top"], file: nil)
        #expect(sa.credential(forOrg: Self.org1) == .serviceAccount(clientId: Self.clientId, clientSecret: "mdb_sa_sk_top"))
        let key = try CredentialStore.load(
            environment: ["MONGODB_ATLAS_PUBLIC_API_KEY": "abcdefgh", "MONGODB_ATLAS_PRIVATE_API_KEY": "priv-uuid"], file: nil)
        #expect(key.credential(forOrg: Self.org2) == .apiKey(publicKey: "abcdefgh", privateKey: "priv-uuid"))
        let none = try CredentialStore.load(environment: [:], file: nil)
        #expect(none.isEmpty && none.credential(forOrg: Self.org1) == nil)
    }

    @Test func halfAPairNamesTheMissingVariable() {
        let e1 = #expect(throws: CredentialError.self) {
            try CredentialStore.load(environment: ["MONGODB_ATLAS_CLIENT_ID": Self.clientId], file: nil)
        }
        #expect(e1?.description.contains("MONGODB_ATLAS_CLIENT_SECRET") == true)
        let e2 = #expect(throws: CredentialError.self) {
            try CredentialStore.load(environment: ["MONGODB_ATLAS_PRIVATE_API_KEY": "x", "MONGODB_ATLAS_PUBLIC_API_KEY": ""], file: nil)
        }
        #expect(e2?.description.contains("MONGODB_ATLAS_PUBLIC_API_KEY is not") == true)
        #expect(e2?.code == .incompleteEnvironment)
        let both = #expect(throws: CredentialError.self) {
            try CredentialStore.load(environment: [
                "MONGODB_ATLAS_CLIENT_ID": Self.clientId, "MONGODB_ATLAS_CLIENT_SECRET": "TOPSECRET",
                "MONGODB_ATLAS_PUBLIC_API_KEY": "abcdefgh", "MONGODB_ATLAS_PRIVATE_API_KEY": "TOPSECRET",
            ], file: nil)
        }
        #expect(both?.code == .conflictingEnvironment)
        #expect(both?.description.contains("TOPSECRET") == false)
    }

    @Test func fileEntriesOverrideTheDefaultPerOrg() throws {
        let dir = ClientTestFiles.directory()
        defer { ClientTestFiles.remove(dir) }
        let path = dir + "/creds.json"
        ClientTestFiles.write(path, """
            { "orgs": {
                "\(Self.org1)": { "clientId": "\(Self.clientId)", "clientSecret": "mdb_sa_sk_one" },
                "\(Self.org2)": { "publicKey": "abcdefgh", "privateKey": "0d7e-uuid" } } }
            """, mode: 0o600)
        let store = try CredentialStore.load(
            environment: ["MONGODB_ATLAS_PUBLIC_API_KEY": "dflt", "MONGODB_ATLAS_PRIVATE_API_KEY": "dflt-priv", "ATLAS_SECRETS_CREDENTIALS_FILE": path],
            file: nil)
        #expect(store.credential(forOrg: Self.org1) == .serviceAccount(clientId: Self.clientId, clientSecret: "mdb_sa_sk_one"))
        #expect(store.credential(forOrg: Self.org2) == .apiKey(publicKey: "abcdefgh", privateKey: "0d7e-uuid"))
        #expect(store.credential(forOrg: "aaaaaaaaaaaaaaaaaaaaaaaa") == .apiKey(publicKey: "dflt", privateKey: "dflt-priv"))
        // --credentials wins over the environment variable.
        let other = dir + "/other.json"
        ClientTestFiles.write(other, #"{"orgs": {}}"#, mode: 0o600)
        #expect(try CredentialStore.load(environment: ["ATLAS_SECRETS_CREDENTIALS_FILE": path], file: other).isEmpty)
    }

    @Test func fileReadableByOthersIsRefusedWithChmodAdvice() {
        let dir = ClientTestFiles.directory()
        defer { ClientTestFiles.remove(dir) }
        let path = dir + "/creds.json"
        ClientTestFiles.write(path, #"{"orgs": {}}"#, mode: 0o644)
        let error = #expect(throws: CredentialError.self) { try CredentialStore.load(environment: [:], file: path) }
        #expect(error?.code == .insecureFile)
        #expect(error?.description.contains("chmod 600 \(path)") == true)
        #expect(error?.description.contains("644") == true)
    }

    @Test(arguments: [
        ("not json", "not a JSON object", nil as String?, nil as String?),
        (#"{"org": {}}"#, "orgs", nil, nil),
        (#"{"orgs": {"ABC": {"publicKey": "a", "privateKey": "b"}}}"#, "not an organization id", "ABC", nil),
        (#"{"orgs": {"5f1a2b3c4d5e6f7a8b9c0d1e": {}}}"#, "neither", "5f1a2b3c4d5e6f7a8b9c0d1e", nil),
        (#"{"orgs": {"5f1a2b3c4d5e6f7a8b9c0d1e": {"publicKey": "a", "privateKey": "b", "clientId": "mdb_sa_id_5f1a2b3c4d5e6f7a8b9c0d1e", "clientSecret": "TOPSECRET"}}}"#, "both", "5f1a2b3c4d5e6f7a8b9c0d1e", nil),
        (#"{"orgs": {"5f1a2b3c4d5e6f7a8b9c0d1e": {"clientId": "sa_bad", "clientSecret": "TOPSECRET"}}}"#, "clientId \"sa_bad\"", "5f1a2b3c4d5e6f7a8b9c0d1e", "clientId"),
        (#"{"orgs": {"5f1a2b3c4d5e6f7a8b9c0d1e": {"clientId": "mdb_sa_id_5f1a2b3c4d5e6f7a8b9c0d1e"}}}"#, "without clientSecret", "5f1a2b3c4d5e6f7a8b9c0d1e", "clientSecret"),
        (#"{"orgs": {"5f1a2b3c4d5e6f7a8b9c0d1e": {"publicKey": "a", "privateKy": "TOPSECRET"}}}"#, "unknown field \"privateKy\"", "5f1a2b3c4d5e6f7a8b9c0d1e", "privateKy"),
        (#"{"orgs": {"5f1a2b3c4d5e6f7a8b9c0d1e": {"publicKey": "a", "privateKey": 5}}}"#, "\"privateKey\" must be a non-empty string", "5f1a2b3c4d5e6f7a8b9c0d1e", "privateKey"),
    ])
    func badFilesNameTheFileOrgAndField(text: String, expected: String, orgKey: String?, field: String?) {
        let dir = ClientTestFiles.directory()
        defer { ClientTestFiles.remove(dir) }
        let path = dir + "/creds.json"
        ClientTestFiles.write(path, text, mode: 0o600)
        let error = #expect(throws: CredentialError.self) { try CredentialStore.load(environment: [:], file: path) }
        #expect(error?.description.contains(path) == true)
        #expect(error?.description.contains(expected) == true, "\(error?.description ?? "")")
        #expect(error?.orgKey == orgKey)
        if let field { #expect(error?.field == field) }
        #expect(error?.description.contains("TOPSECRET") == false)
    }

    @Test func missingFileIsNamed() {
        let error = #expect(throws: CredentialError.self) { try CredentialStore.load(environment: [:], file: "/nonexistent/creds.json") }
        #expect(error?.code == .fileUnreadable)
        #expect(error?.description.contains("/nonexistent/creds.json") == true)
    }

    @Test func descriptionsNeverShowTheSecretHalf() {
        let creds: [AtlasCredential] = [
            .serviceAccount(clientId: Self.clientId, clientSecret: "mdb_sa_sk_TOPSECRET"),
            .apiKey(publicKey: "abcdefgh", privateKey: "TOPSECRET-uuid"),
        ]
        for credential in creds {
            var dumped = ""
            dump(credential, to: &dumped)
            for text in ["\(credential)", String(reflecting: credential), dumped, "\([credential])", "\(CredentialStore(defaultCredential: credential))"] {
                #expect(!text.contains("TOPSECRET"), "\(text)")
                #expect(text.contains(credential.identity), "\(text)")
            }
        }
    }
}
