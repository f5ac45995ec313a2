#if canImport(Glibc)
import Glibc
#endif
import AtlasSecrets
import Dispatch
import Foundation
import Synchronization

/// A strict local Atlas Admin API: the six service-account operations, OAuth and Digest auth,
/// fault injection, rate limits and an inspection API under `/_sim`.
///
/// Thread-safe: all state sits behind one `Mutex`; the HTTP server runs a thread per
/// connection. Create it, seed it, `start()`, and point a client at `baseURL`.
public final class AtlasSimulator: Sendable {
    /// The configuration it was created with (faults can change at runtime through `/_sim/faults`).
    public let configuration: SimulatorConfiguration
    let state: Mutex<SimState>
    /// Key for self-validating Digest nonces.
    let nonceKey = Hashing.hexString(Hashing.randomBytes(16))
    private let server: Mutex<HTTPServer?> = Mutex(nil)
    private let boundPort = Mutex(0)
    private static let logQueue = DispatchQueue(label: "atlas-sim.log")

    /// Creates a simulator with no organizations.
    public init(configuration: SimulatorConfiguration = SimulatorConfiguration()) {
        self.configuration = configuration
        var s = SimState(seed: configuration.seed)
        s.faults.failRate = configuration.failRate
        s.faults.failMode = configuration.failMode
        s.faults.latencyMs = configuration.latencyMs
        state = Mutex(s)
    }

    // MARK: Lifecycle

    /// Binds the configured host and port and starts serving; returns the bound port.
    /// Throws `SimulatorError` when the host is not loopback or the port cannot be bound.
    @discardableResult
    public func start() throws(SimulatorError) -> Int {
        var limits = HTTPServer.Limits()
        limits.idleTimeoutSeconds = configuration.idleTimeoutSeconds
        let server = HTTPServer(limits: limits) { [self] request in handle(request) }
        let port = try server.start(host: configuration.host, port: configuration.port)
        self.server.withLock { $0 = server }
        boundPort.withLock { $0 = port }
        return port
    }

    /// Stops serving and closes every connection; waits for connection threads to end.
    public func stop() {
        let s = server.withLock { s in
            let current = s
            s = nil
            return current
        }
        s?.stop()
    }

    /// The bound port (0 before `start()`).
    public var port: Int { boundPort.withLock { $0 } }

    /// `http://127.0.0.1:PORT`, the value for `MONGODB_ATLAS_BASE_URL`.
    public var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Connections open right now (a leak check for tests and benchmarks).
    public var openConnections: Int { server.withLock { $0?.openConnections ?? 0 } }

    // MARK: Deterministic ids

    /// The org id of seeded org `index` (0-based): `000000005151` + 12 hex digits.
    public static func orgId(index: Int) -> String { "000000005151" + hex(index, 12) }
    /// The client id of account `account` (0-based) of seeded org `org`.
    public static func clientId(org: Int, account: Int) -> String { "mdb_sa_id_" + hex(org, 12) + hex(account, 12) }
    /// The client id of the credential service account of seeded org `org`.
    public static func adminClientId(org: Int) -> String { "mdb_sa_id_" + hex(org, 12) + "ffffffffffff" }

    private static func hex(_ v: Int, _ width: Int) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }

    // MARK: Seeding

    /// Adds an organization (if new) with a credential of the kind the configuration asks for
    /// (`mixed` alternates by org order); returns its credential.
    @discardableResult
    public func addOrganization(_ orgId: String, adminClientId: String? = nil) -> SimCredential? {
        let now = SimClock.seconds()
        return state.withLock { s -> SimCredential? in
            guard AtlasIdentifier.isOrgId(orgId) else { return nil }
            guard s.addOrg(orgId) else { return s.orgs[orgId]?.credential }
            let index = s.orgOrder.count - 1
            let useOAuth = switch configuration.auth {
            case .oauth: true
            case .digest: false
            case .mixed: index % 2 == 0
            }
            let credential: SimCredential
            if useOAuth {
                let clientId = adminClientId ?? ("mdb_sa_id_" + SimRandom.objectId())
                let value = SimRandom.secretValue()
                var admin = AccountRecord(
                    orgId: orgId, clientId: clientId, name: "atlas-sim admin", description: "Credential of atlas-sim",
                    roles: ["ORG_OWNER"], createdAt: now)
                admin.secrets.append(SecretRecord(id: SimRandom.objectId(), value: value, createdAt: now, expiresAt: now + 8760 * 3600))
                _ = s.addAccount(admin)
                credential = .serviceAccount(clientId: clientId, clientSecret: value)
            } else {
                credential = .apiKey(publicKey: SimRandom.publicKey(), privateKey: SimRandom.privateKey())
            }
            s.setCredential(credential, org: orgId)
            return credential
        }
    }

    /// Adds a service account (no secrets) to an org, creating the org if needed.
    /// Returns false when the ids are malformed or the client id is taken.
    @discardableResult
    public func addServiceAccount(orgId: String, clientId: String, name: String? = nil) -> Bool {
        guard AtlasIdentifier.isOrgId(orgId), AtlasIdentifier.isClientId(clientId) else { return false }
        addOrganization(orgId)
        let now = SimClock.seconds()
        return state.withLock {
            $0.addAccount(AccountRecord(
                orgId: orgId, clientId: clientId, name: name ?? "sim-\(clientId.suffix(6))",
                description: "Seeded by atlas-sim", roles: ["ORG_MEMBER"], createdAt: now))
        }
    }

    /// Seeds `orgs` orgs with `accountsPerOrg` accounts each, with the deterministic ids above.
    public func seed(orgs: Int, accountsPerOrg: Int) {
        for i in 0..<orgs {
            let org = AtlasSimulator.orgId(index: i)
            addOrganization(org, adminClientId: AtlasSimulator.adminClientId(org: i))
            for j in 0..<accountsPerOrg {
                addServiceAccount(orgId: org, clientId: AtlasSimulator.clientId(org: i, account: j))
            }
        }
    }

    /// Seeds orgs and accounts from a JSON Lines or CSV file (header with `orgId,clientId`);
    /// lines with missing or malformed ids are skipped. Throws when the file cannot be read.
    @discardableResult
    public func seed(fromFile path: String) throws(SimulatorError) -> (added: Int, skipped: Int) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SimulatorError(.io, "cannot read seed file \(path)")
        }
        let lines = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).map(String.init)
            .filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        guard let first = lines.first else { return (0, 0) }
        var pairs: [(String, String)?] = []
        if first.trimmingCharacters(in: .whitespaces).hasPrefix("{") {
            pairs = lines.map { line in
                guard let json = JSON.parse(Array(line.utf8)), let o = json["orgId"]?.stringValue,
                    let c = json["clientId"]?.stringValue
                else { return nil }
                return (o, c)
            }
        } else {
            let unquote = { (s: Substring) in s.trimmingCharacters(in: CharacterSet(charactersIn: " \"")) }
            let header = first.split(separator: ",", omittingEmptySubsequences: false).map(unquote)
            guard let oi = header.firstIndex(of: "orgId"), let ci = header.firstIndex(of: "clientId") else {
                throw SimulatorError(.badInput, "\(path): CSV header has no orgId and clientId columns")
            }
            pairs = lines.dropFirst().map { line in
                let cols = line.split(separator: ",", omittingEmptySubsequences: false).map(unquote)
                guard cols.count > max(oi, ci) else { return nil }
                return (cols[oi], cols[ci])
            }
        }
        var added = 0
        var skipped = 0
        for pair in pairs {
            guard let (o, c) = pair, AtlasIdentifier.isOrgId(o), AtlasIdentifier.isClientId(c) else {
                skipped += 1
                continue
            }
            if addServiceAccount(orgId: o, clientId: c) { added += 1 }
        }
        return (added, skipped)
    }

    // MARK: Credentials

    /// Every org's credential, in seeding order.
    public var credentials: [(orgId: String, credential: SimCredential)] {
        state.withLock { s in
            s.orgOrder.compactMap { id in s.orgs[id]?.credential.map { (id, $0) } }
        }
    }

    /// The credentials file the worker reads: `{"orgs": {"<orgId>": {...}}}`.
    public func credentialsFileJSON() -> JSON {
        .object([("orgs", .object(credentials.map { ($0.orgId, $0.credential.fileJSON) }))])
    }

    /// Writes the credentials file with mode 0600 (replacing the file atomically).
    public func writeCredentials(to path: String) throws(SimulatorError) {
        let bytes = credentialsFileJSON().serialized(pretty: true) + [10]
        let temp = path + ".tmp-\(getpid())"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SimulatorError(.io, "cannot create \(temp)", errno: errno) }
        fchmod(fd, 0o600)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == bytes.count, rename(temp, path) == 0 else {
            let e = errno
            unlink(temp)
            throw SimulatorError(.io, "cannot write \(path)", errno: e)
        }
    }

    // MARK: Inspection

    /// What `GET /_sim/state` answers: orgs, accounts with every secret (plaintext), counters.
    public func stateJSON() -> JSON {
        let now = SimClock.seconds()
        return state.withLock { $0.stateJSON(now: now) }
    }

    // MARK: Dispatch

    /// Answers one request; the HTTP server calls this, tests may call it directly.
    public func handle(_ request: SimHTTPRequest) -> SimHTTPResponse {
        let started = SimClock.now()
        let response: SimHTTPResponse
        if request.path.hasPrefix("/_sim/") {
            response = handleControl(request)
        } else if request.path.hasPrefix("/api/") {
            state.withLock { $0.counters.requests += 1 }
            if request.path == "/api/oauth/token" || request.path == "/api/oauth/revoke" {
                response = handleOAuth(request)
            } else if request.path.hasPrefix("/api/atlas/v2/") {
                response = handleAtlas(request)
            } else {
                response = Reply.error(404, SimErrorCode.resourceNotFound, "There is no resource at \(request.path).").render()
            }
        } else {
            response = Reply.error(404, SimErrorCode.resourceNotFound, "There is no resource at \(request.path).").render()
        }
        if configuration.verbose {
            let ms = Int((SimClock.now() - started) * 1000)
            let line = "atlas-sim \(String(format: "%.3f", started)) \(request.method) \(request.path) -> \(response.dropConnection ? "dropped" : String(response.status)) \(ms)ms\n"
            AtlasSimulator.logQueue.async { FileHandle.standardError.write(Data(line.utf8)) }
        }
        return response
    }

    /// Sleeps for `ms` milliseconds (on the connection's own thread).
    static func sleep(ms: Int) {
        if ms > 0 { usleep(useconds_t(ms) * 1000) }
    }
}

/// A response being built: rendered at the end with `envelope` / `pretty` applied.
struct Reply: Sendable {
    var status: Int
    var body: JSON?
    var headers: [(name: String, value: String)] = []
    var isError = false

    /// An ApiError reply.
    static func error(
        _ status: Int, _ code: String, _ detail: String, parameters: [JSON] = [],
        fields: [(field: String, description: String)]? = nil
    ) -> Reply {
        var pairs: [(String, JSON)] = [
            ("detail", .string(detail)),
            ("error", .int(status)),
            ("errorCode", .string(code)),
            ("parameters", .array(parameters)),
            ("reason", .string(SimHTTPResponse.reason(status))),
        ]
        if let fields {
            pairs.insert(("badRequestDetail", .object([("fields", .array(fields.map {
                .object([("description", .string($0.description)), ("field", .string($0.field))])
            }))])), at: 0)
        }
        return Reply(status: status, body: .object(pairs), isError: true)
    }

    /// Renders to HTTP: `envelope=true` wraps the body as `{status, content}` and answers 200.
    func render(envelope: Bool = false, pretty: Bool = false) -> SimHTTPResponse {
        var status = self.status
        var body = self.body
        if envelope {
            if case let .object(pairs)? = body, pairs.contains(where: { $0.0 == "results" }) {
                body = .object(pairs + [("status", .int(status))])
            } else {
                body = .object([("content", body ?? .null), ("status", .int(status))])
            }
            status = 200
        }
        var headers = self.headers
        if let body {
            headers.append(("Content-Type", isError ? "application/json" : atlasMediaType))
            return SimHTTPResponse(status: status, headers: headers, body: body.serialized(pretty: pretty))
        }
        return SimHTTPResponse(status: status, headers: headers)
    }
}

extension Reply: Error {}
