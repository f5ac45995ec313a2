import Dispatch
import Foundation
import Synchronization

/// What a worker process shares between its claimer, lanes, listener and heartbeat threads.
/// Thread-safe: every field sits behind one Mutex.
final class WorkerState: Sendable {
    private struct Fields {
        var stopping = false
        var hurry = false
        var queue: [ClaimedJob] = []
        var inFlight: [Int64: JobFence] = [:]
        var lanesRunning = 0
        var succeeded = 0
        var failed = 0
        var retried = 0
        var superseded = 0
    }

    private let fields = Mutex(Fields())
    /// Counts jobs waiting in `queue`; lanes wait on it.
    private let available = DispatchSemaphore(value: 0)
    /// Wakes the claimer: a notification, a lane that became free, a stop.
    let wake = DispatchSemaphore(value: 0)
    /// Set when in-flight HTTP calls must be abandoned (the shutdown grace ran out).
    let abortTransfers = AbortSignal()

    var isStopping: Bool { fields.withLock { $0.stopping } }
    var isHurried: Bool { fields.withLock { $0.hurry } }

    /// First call: stop claiming. Later calls: also cut the grace period short.
    func requestStop() {
        fields.withLock { f in
            if f.stopping { f.hurry = true }
            f.stopping = true
        }
        wake.signal()
    }

    /// Jobs claimed or running, which the claimer must not exceed `concurrency` with.
    var busy: Int { fields.withLock { $0.inFlight.count } }

    /// Hands claimed jobs to the lanes.
    func enqueue(_ jobs: [ClaimedJob]) {
        fields.withLock { f in
            for job in jobs {
                f.queue.append(job)
                f.inFlight[job.fence.jobId] = job.fence
            }
        }
        for _ in jobs { available.signal() }
    }

    /// The next job for a lane, or nil when the lane should exit (stopping and nothing queued).
    func next() -> ClaimedJob? {
        while true {
            _ = available.wait(timeout: .now() + 0.25)
            let (job, exit): (ClaimedJob?, Bool) = fields.withLock { f in
                if !f.queue.isEmpty { return (f.queue.removeFirst(), false) }
                return (nil, f.stopping)
            }
            if let job { return job }
            if exit { return nil }
        }
    }

    /// Jobs handed over but not yet picked up by a lane (given back at shutdown).
    func takeUnstarted() -> [ClaimedJob] {
        fields.withLock { f in
            let jobs = f.queue
            f.queue.removeAll()
            return jobs
        }
    }

    /// A lane is done with a job, whatever the outcome.
    func finished(_ fence: JobFence, outcome: Outcome) {
        fields.withLock { f in
            // Only this attempt's entry: a newer attempt of the same job may have replaced it.
            if f.inFlight[fence.jobId] == fence { f.inFlight[fence.jobId] = nil }
            switch outcome {
            case .succeeded: f.succeeded += 1
            case .failed: f.failed += 1
            case .retried: f.retried += 1
            case .superseded: f.superseded += 1
            case .givenBack: break
            }
        }
        wake.signal()
    }

    enum Outcome { case succeeded, failed, retried, superseded, givenBack }

    /// The attempts whose leases the heartbeat renews.
    var fencesInFlight: [JobFence] { fields.withLock { Array($0.inFlight.values) } }

    func laneStarted() { fields.withLock { $0.lanesRunning += 1 } }
    func laneExited() {
        fields.withLock { $0.lanesRunning -= 1 }
        wake.signal()
    }
    var lanesRunning: Int { fields.withLock { $0.lanesRunning } }

    /// Totals for the exit summary.
    var totals: (succeeded: Int, failed: Int, retried: Int, superseded: Int) {
        fields.withLock { ($0.succeeded, $0.failed, $0.retried, $0.superseded) }
    }
}
