import AtlasSecrets
import AtlasSim
import Foundation
import Testing

/// A job as `list --json` / `show --json` print it (the fields the issue 4 tests read).
struct OrgsJob: Decodable {
    struct Attempt: Decodable {
        var attempt: Int
        var owner: String
        var outcome: String
        var httpStatus: Int?
        var errorCode: String?
        var detail: String?
    }
    var id: Int64
    var state: String
    var batch: String
    var orgId: String
    var clientId: String
    var attempts: Int
    var secretId: String?
    var secretCreatedAt: String?
    var lastErrorCode: String?
    var lastErrorDetail: String?
    var revokedSecrets: [[String: String]]
    var shortenedSecrets: [[String: String]]
    var history: [Attempt]?
}

/// `status --json`, the parts the issue 4 tests read.
struct OrgsStatus: Decodable {
    struct Counts: Decodable {
        var queued: Int, running: Int, succeeded: Int, failed: Int, cancelled: Int
    }
    struct Org: Decodable {
        var orgId: String
        var counts: Counts
        var throttledUntil: String?
        var pausedReason: String?
    }
    var counts: Counts
    var orgs: [Org]

    func org(_ id: String) -> Org? { orgs.first { $0.orgId == id } }
}

/// One line of a request file.
struct OrgsRequest {
    var org: String
    var client: String
    var hours = 24
    var key: String? = nil

    var jsonLine: String {
        let k = key.map { #", "idempotencyKey": "\#($0)""# } ?? ""
        return #"{"orgId": "\#(org)", "clientId": "\#(client)", "secretExpiresAfterHours": \#(hours)\#(k)}"#
    }
}

extension Harness {
    /// Enqueues the requests as batch `batch` through `atlas-secrets enqueue`.
    func enqueue(_ requests: [OrgsRequest], batch: String) throws {
        let path = dir.appendingPathComponent("req-\(batch)-\(UUID().uuidString.prefix(6)).jsonl").path
        try (requests.map(\.jsonLine).joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let out = try cli(["enqueue", path, "--batch", batch])
        guard out.status == 0 else { throw CommandFailure("enqueue exited \(out.status): \(out.stderr)") }
    }

    /// Runs `worker --drain` with `arguments` and waits for it to exit (at most `timeout` s).
    /// Returns the exit status (nil: still running at the deadline, then killed) and the process.
    @discardableResult
    func drain(_ arguments: [String], timeout: Double, name: String = "worker") throws -> (status: Int32?, process: BackgroundProcess) {
        let worker = try startWorker(["--drain", "--lease", "5"] + arguments, name: name)
        let status = worker.wait(timeout: timeout)
        worker.stop()
        return (status, worker)
    }

    /// `list --json` for a batch (or everything), every job.
    func listJobs(batch: String? = nil) throws -> [OrgsJob] {
        let out = try cli(["list", "--json", "--limit", "100000"] + (batch.map { ["--batch", $0] } ?? []))
        guard out.status == 0 else { throw CommandFailure("list exited \(out.status): \(out.stderr)") }
        return try JSONDecoder().decode([OrgsJob].self, from: Data(out.stdout.utf8))
    }

    /// `show JOB --json`.
    func showJob(_ id: Int64) throws -> OrgsJob {
        let out = try cli(["show", "\(id)", "--json"])
        guard out.status == 0 else { throw CommandFailure("show exited \(out.status): \(out.stderr)") }
        return try JSONDecoder().decode(OrgsJob.self, from: Data(out.stdout.utf8))
    }

    /// `status --json` (for a batch, or everything).
    func statusJSON(batch: String? = nil) throws -> OrgsStatus {
        let out = try cli(["status", "--json"] + (batch.map { ["--batch", $0] } ?? []))
        guard out.status == 0 else { throw CommandFailure("status exited \(out.status): \(out.stderr)") }
        return try JSONDecoder().decode(OrgsStatus.self, from: Data(out.stdout.utf8))
    }

    /// Per-org token buckets in the simulator.
    func rateLimit(capacity: Int, refillPerSecond: Double, style: String = "429") throws {
        try control("POST", "/_sim/rate-limits", #"{"perOrg": {"capacity": \#(capacity), "refillPerSecond": \#(refillPerSecond)}, "style": "\#(style)"}"#)
    }

    /// Latency added to every `/api` request.
    func latency(ms: Int) throws {
        try control("POST", "/_sim/faults", #"{"latencyMs": \#(ms)}"#)
    }

    /// The credential client id of org `index` (what the simulator counts tokens under).
    func credentialClientId(org index: Int) -> String { AtlasSimulator.adminClientId(org: index) }
}
