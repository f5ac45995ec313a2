import AtlasSecrets
import Foundation

/// The `atlas-sim` command line: flags parsed into a configuration plus seeding and output options.
public struct SimulatorCommandLine: Sendable {
    /// A bad flag or value; the front exits 64 with `message`.
    public struct UsageError: Error, CustomStringConvertible, Sendable {
        public var message: String
        public var description: String { message }
    }

    /// Server and behaviour settings.
    public var configuration = SimulatorConfiguration()
    /// `--seed-from FILE` (repeatable).
    public var seedFiles: [String] = []
    /// `--seed-orgs N`.
    public var seedOrgs = 0
    /// `--accounts-per-org M`.
    public var accountsPerOrg = 0
    /// `--credentials-out FILE`.
    public var credentialsOut: String?
    /// `--port-file FILE`.
    public var portFile: String?
    /// `--help` was given.
    public var help = false

    /// The `--help` text.
    public static let usage = """
        USAGE: atlas-sim [options]

        A strict local MongoDB Atlas Admin API (service accounts, OAuth, Digest) for tests and demos.

        SERVER
          --host HOST                 bind address; 127.0.0.1 only (default 127.0.0.1)
          --port N                    port, 0 = ephemeral (default 0)
          --port-file FILE            write the bound port to FILE
          --verbose                   log each request to stderr
        SEEDING AND CREDENTIALS
          --seed-from FILE            JSON Lines or CSV with orgId,clientId (repeatable)
          --seed-orgs N               N orgs with deterministic ids ...
          --accounts-per-org M        ... and M service accounts each
          --auth oauth|digest|mixed   credential kind per org (default oauth)
          --credentials-out FILE      write {"orgs": {...}} credentials, mode 0600
          --token-ttl SECONDS         OAuth expires_in (default 3600)
          --digest-algorithm MD5|SHA-256   (default MD5)
          --nonce-ttl SECONDS         Digest nonce lifetime (default 30)
          --omit-masked               leave maskedSecretValue out of create-secret 201s
        FAULTS
          --fail-rate F               fraction of create-secret calls answered 500 (default 0)
          --fail-mode before|after|mixed   (default before)
          --latency-ms N              added to every /api request (default 0)
          --seed N                    RNG seed for fault decisions (default 1)
        CONTROL API (no auth): GET /_sim/state, GET /_sim/accounts/{clientId}, GET /_sim/credentials,
          GET|POST|DELETE /_sim/faults, POST|DELETE /_sim/rate-limits, POST /_sim/credentials/revoke

        """

    /// Parses `arguments` (without the program name). Throws `UsageError` naming the bad flag.
    public static func parse(_ arguments: [String]) throws(UsageError) -> SimulatorCommandLine {
        var out = SimulatorCommandLine()
        var i = 0
        func value(_ flag: String) throws(UsageError) -> String {
            i += 1
            guard i < arguments.count else { throw UsageError(message: "\(flag) needs a value") }
            return arguments[i]
        }
        func int(_ flag: String, _ range: ClosedRange<Int>) throws(UsageError) -> Int {
            let text = try value(flag)
            guard let n = Int(text), range.contains(n) else {
                throw UsageError(message: "\(flag) must be an integer in \(range.lowerBound)...\(range.upperBound), not \(text)")
            }
            return n
        }
        while i < arguments.count {
            let arg = arguments[i]
            switch arg {
            case "--help", "-h": out.help = true
            case "--host":
                let host = try value(arg)
                guard host == "127.0.0.1" || host == "localhost" else {
                    throw UsageError(message: "--host must be 127.0.0.1: the simulator binds loopback only")
                }
                out.configuration.host = host
            case "--port": out.configuration.port = try int(arg, 0...65535)
            case "--port-file": out.portFile = try value(arg)
            case "--verbose": out.configuration.verbose = true
            case "--seed-from": out.seedFiles.append(try value(arg))
            case "--seed-orgs": out.seedOrgs = try int(arg, 0...1_000_000)
            case "--accounts-per-org": out.accountsPerOrg = try int(arg, 0...200)
            case "--auth":
                let text = try value(arg)
                guard let mode = SimulatorConfiguration.AuthMode(rawValue: text) else {
                    throw UsageError(message: "--auth must be oauth, digest or mixed, not \(text)")
                }
                out.configuration.auth = mode
            case "--credentials-out": out.credentialsOut = try value(arg)
            case "--token-ttl": out.configuration.tokenTTL = try int(arg, 1...86400)
            case "--digest-algorithm":
                let text = try value(arg)
                guard let alg = Hashing.Algorithm.allCases.first(where: { $0.rawValue.caseInsensitiveCompare(text) == .orderedSame }) else {
                    throw UsageError(message: "--digest-algorithm must be MD5 or SHA-256, not \(text)")
                }
                out.configuration.digestAlgorithm = alg
            case "--nonce-ttl": out.configuration.nonceTTL = Double(try int(arg, 1...86400))
            case "--omit-masked": out.configuration.omitMaskedSecretValue = true
            case "--fail-rate":
                let text = try value(arg)
                guard let rate = Double(text), (0...1).contains(rate) else {
                    throw UsageError(message: "--fail-rate must be a number in 0...1, not \(text)")
                }
                out.configuration.failRate = rate
            case "--fail-mode":
                let text = try value(arg)
                guard let mode = SimulatorConfiguration.FailMode(rawValue: text) else {
                    throw UsageError(message: "--fail-mode must be before, after or mixed, not \(text)")
                }
                out.configuration.failMode = mode
            case "--latency-ms": out.configuration.latencyMs = try int(arg, 0...600_000)
            case "--seed": out.configuration.seed = UInt64(try int(arg, 0...Int.max))
            default: throw UsageError(message: "unknown option \(arg) (see --help)")
            }
            i += 1
        }
        if out.accountsPerOrg > 0 && out.seedOrgs == 0 {
            throw UsageError(message: "--accounts-per-org needs --seed-orgs")
        }
        return out
    }
}
