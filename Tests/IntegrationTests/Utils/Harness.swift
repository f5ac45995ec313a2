@testable import AtlasSecrets
import AtlasSim
import Foundation

/// The simulator's state as tests read it (from `GET /_sim/state`, decoded).
struct SimState: Decodable {
    struct Secret: Decodable {
        var id: String
        var secret: String?
        var maskedSecretValue: String?
        var createdAt: String
        var expiresAt: String
        var revokedAt: String?
        var createdAfterFailure: Bool?
    }
    struct Account: Decodable {
        var orgId: String
        var clientId: String
        var secrets: [Secret]
    }
    struct Counters: Decodable {
        var requests: Int
        var createSecret: Int
        var secretsCreated: Int
        var secretsRevoked: Int
        var tokensMinted: [String: Int]
        var tokensRevoked: Int
        var rejected429: [String: Int]
        var earlyRequests: [String: Int]
        var faultsInjected: Int
    }
    var accounts: [Account]
    var counters: Counters

    /// Accounts that jobs target (not the orgs' own credential accounts).
    func account(_ clientId: String) -> Account? { accounts.first { $0.clientId == clientId } }
    func liveSecrets(_ clientId: String) -> [Secret] { account(clientId)?.secrets.filter { $0.revokedAt == nil } ?? [] }
    var allSecrets: [Secret] { accounts.flatMap(\.secrets) }
}

/// A whole installation for one test: a migrated schema, the simulator (in process, on a real
/// socket), a key file, a credentials file, and the environment the CLI binaries need.
final class Harness: @unchecked Sendable {  // @unchecked: used from the test's thread; the simulator is Sendable
    let db: TestDatabase
    let sim: AtlasSimulator
    let dir: URL
    let environment: [String: String]
    /// The seeded service accounts, (org, clientId), in order.
    let accounts: [(org: String, client: String)]

    /// Seeds `orgs` × `accountsPerOrg` service accounts; `configure` adjusts the simulator first.
    init(_ name: String, orgs: Int = 3, accountsPerOrg: Int = 4, configure: (inout SimulatorConfiguration) -> Void = { _ in }) throws {
        db = try migratedDatabase(name)
        var config = SimulatorConfiguration()
        config.seed = UInt64.random(in: 1...UInt64.max)
        configure(&config)
        sim = AtlasSimulator(configuration: config)
        sim.seed(orgs: orgs, accountsPerOrg: accountsPerOrg)
        try sim.start()
        dir = Paths.tempDir()
        let creds = dir.appendingPathComponent("credentials.json").path
        try sim.writeCredentials(to: creds)
        let key = dir.appendingPathComponent("secrets.key").path
        _ = try SecretKey.generate(path: key)
        environment = [
            "DATABASE_URL": db.url,
            "MONGODB_ATLAS_BASE_URL": sim.baseURL,
            "ATLAS_SECRETS_KEY_FILE": key,
            "ATLAS_SECRETS_CREDENTIALS_FILE": creds,
            "NO_COLOR": "1",
        ]
        var list: [(String, String)] = []
        for o in 0..<orgs {
            for a in 0..<accountsPerOrg {
                list.append((AtlasSimulator.orgId(index: o), AtlasSimulator.clientId(org: o, account: a)))
            }
        }
        accounts = list
    }

    /// A JSON Lines request file for the given accounts (each once), written to the temp folder.
    func requestFile(_ accounts: [(org: String, client: String)], hours: Int = 24, name: String = "jobs.jsonl") throws -> String {
        let lines = accounts.map { #"{"orgId": "\#($0.org)", "clientId": "\#($0.client)", "secretExpiresAfterHours": \#(hours)}"# }
        let path = dir.appendingPathComponent(name).path
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Runs `atlas-secrets` to completion.
    func cli(_ arguments: [String], stdin: String? = nil, extraEnvironment: [String: String] = [:]) throws -> ProcessOutput {
        try runProcess(Paths.binary("atlas-secrets"), arguments, environment: environment.merging(extraEnvironment) { _, n in n }, stdin: stdin)
    }

    /// Starts `atlas-secrets worker` in the background (logs as JSON lines in the temp folder).
    func startWorker(_ arguments: [String] = [], name: String = "worker", extraEnvironment: [String: String] = [:]) throws -> BackgroundProcess {
        try BackgroundProcess(Paths.binary("atlas-secrets"), ["worker", "--log-format", "json"] + arguments,
                              environment: environment.merging(extraEnvironment) { _, n in n }, logDir: dir, name: name)
    }

    /// The simulator's state.
    func state() throws -> SimState {
        try JSONDecoder().decode(SimState.self, from: Data(sim.stateJSON().serialized()))
    }

    /// Sends a control request to the simulator (`/_sim/...`), e.g. faults.
    @discardableResult
    func control(_ method: String, _ path: String, _ body: String? = nil) throws -> String {
        let http = HTTPClient()
        let response = try http.send(HTTPRequest(
            method: method, url: sim.baseURL + path, headers: [("Content-Type", "application/json")],
            body: body.map { Array($0.utf8) }))
        guard (200..<300).contains(response.status) else {
            throw CommandFailure("sim control \(method) \(path): HTTP \(response.status) \(String(decoding: response.body, as: UTF8.self))")
        }
        return String(decoding: response.body, as: UTF8.self)
    }

    /// A connection to the test schema.
    func connect() throws -> PGConnection { try db.connect() }

    /// Job states by id.
    func jobStates() throws -> [Int64: String] {
        let conn = try connect()
        defer { conn.close() }
        var out: [Int64: String] = [:]
        for row in try conn.query("SELECT id, state FROM secret_jobs").rows {
            out[try row["id"].int64()] = try row["state"].string()
        }
        return out
    }

    func close() {
        sim.stop()
        db.drop()
        try? FileManager.default.removeItem(at: dir)
    }
}
