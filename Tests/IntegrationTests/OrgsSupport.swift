import AtlasSecrets
import AtlasSim
import Foundation
import Testing

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

    /// `list --json` of one batch.
    func listJobs(batch: String) throws -> [JobJSON] { try listJobs(["--batch", batch]) }

    /// Per-org token buckets in the simulator.
    /// `headers`: all, retry-after or none (which headers the simulator sends with its answers).
    func rateLimit(capacity: Int, refillPerSecond: Double, style: String = "429", headers: String = "all") throws {
        try control("POST", "/_sim/rate-limits", #"{"perOrg": {"capacity": \#(capacity), "refillPerSecond": \#(refillPerSecond)}, "style": "\#(style)", "headers": "\#(headers)"}"#)
    }

    /// Latency added to every `/api` request.
    func latency(ms: Int) throws {
        try control("POST", "/_sim/faults", #"{"latencyMs": \#(ms)}"#)
    }

    /// The credential client id of org `index` (what the simulator counts tokens under).
    func credentialClientId(org index: Int) -> String { AtlasSimulator.adminClientId(org: index) }
}
