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
        /// Jobs held while their org is throttled (still claimed, leases renewed, on no lane).
        var parked: [(job: ClaimedJob, until: ContinuousClock.Instant)] = []
        /// Every job held, by id: its attempt's fence, and its org.
        var inFlight: [Int64: (fence: JobFence, org: String)] = [:]
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

    /// New jobs were inserted (a NOTIFY): the claimer claims at once, even when its last claim
    /// found nothing to run.
    private let inserted = Atomic<Bool>(false)
    func noteInserted() {
        inserted.store(true, ordering: .relaxed)
        wake.signal()
    }
    /// True (once) after `noteInserted`.
    func takeInserted() -> Bool { inserted.exchange(false, ordering: .relaxed) }
    var isHurried: Bool { fields.withLock { $0.hurry } }

    /// First call: stop claiming. Later calls: also cut the grace period short.
    func requestStop() {
        let lanes = fields.withLock { f in
            if f.stopping { f.hurry = true }
            f.stopping = true
            return f.lanesRunning
        }
        wake.signal()
        // Idle lanes exit now rather than at their next poll (a drained worker's exit was a
        // quarter of a second longer).
        for _ in 0..<max(1, lanes) { available.signal() }
    }

    /// Jobs claimed for a lane or running on one, which the claimer must not exceed
    /// `concurrency` with (parked jobs wait on no lane).
    var busy: Int { fields.withLock { $0.inFlight.count - $0.parked.count } }

    /// Every job this process holds (running, waiting for a lane, or parked): a drain ends at 0.
    var holding: Int { fields.withLock { $0.inFlight.count } }

    /// Holds a job whose org is throttled for `seconds`, off the lanes and without a trip through
    /// the database (giving it back and claiming it again cost three writes and a claim, per
    /// throttled try). False (the caller gives it back) when stopping or `limit` jobs are parked.
    func park(_ job: ClaimedJob, for seconds: Double, limit: Int) -> Bool {
        let parked = fields.withLock { f -> Bool in
            guard !f.stopping, f.parked.count < limit, f.inFlight[job.fence.jobId]?.fence == job.fence else { return false }
            f.parked.append((job, ContinuousClock.now + .milliseconds(Int((seconds * 1000).rounded(.up)))))
            return true
        }
        if parked { wake.signal() }
        return parked
    }

    /// Moves the parked jobs whose time has come to the front of the lanes' queue.
    func releaseParked() {
        let now = ContinuousClock.now
        let released = fields.withLock { f -> Int in
            let due = f.parked.filter { $0.until <= now }.map(\.job)
            guard !due.isEmpty else { return 0 }
            f.parked.removeAll { $0.until <= now }
            f.queue.insert(contentsOf: due, at: 0)
            return due.count
        }
        for _ in 0..<released { available.signal() }
    }

    /// Seconds until the next parked job is due (nil: none parked).
    var secondsUntilNextParkedRelease: Double? {
        let now = ContinuousClock.now
        guard let next = fields.withLock({ $0.parked.map(\.until).min() }) else { return nil }
        let wait = next - now
        return max(0, Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18)
    }

    /// The orgs of `jobs` this process holds no job of: another worker may have spent their
    /// buckets since this one last called them. Ask before `enqueue` (lanes start at once).
    func orgsNotHeld(in jobs: [ClaimedJob]) -> Set<String> {
        let held = fields.withLock { f in Set(f.inFlight.values.map(\.org)) }
        return Set(jobs.map(\.job.orgId)).subtracting(held)
    }

    /// Hands claimed jobs to the lanes.
    func enqueue(_ jobs: [ClaimedJob]) {
        fields.withLock { f in
            for job in jobs {
                f.queue.append(job)
                f.inFlight[job.fence.jobId] = (job.fence, job.job.orgId)
            }
        }
        for _ in jobs { available.signal() }
    }

    /// The next job for a lane, or nil when the lane should exit (stopping: jobs not yet started
    /// stay queued, and the worker gives them back).
    func next() -> ClaimedJob? {
        while true {
            _ = available.wait(timeout: .now() + 0.25)
            let (job, exit): (ClaimedJob?, Bool) = fields.withLock { f in
                if f.stopping { return (nil, true) }
                if !f.queue.isEmpty { return (f.queue.removeFirst(), false) }
                return (nil, false)
            }
            if let job { return job }
            if exit { return nil }
        }
    }

    /// Jobs handed over but not yet picked up by a lane, and parked jobs (given back at shutdown).
    func takeUnstarted() -> [ClaimedJob] {
        fields.withLock { f in
            let jobs = f.queue + f.parked.map(\.job)
            f.queue.removeAll()
            f.parked.removeAll()
            return jobs
        }
    }

    /// A lane is done with a job, whatever the outcome.
    func finished(_ fence: JobFence, outcome: Outcome) {
        fields.withLock { f in
            // Only this attempt's entry: a newer attempt of the same job may have replaced it.
            if f.inFlight[fence.jobId]?.fence == fence { f.inFlight[fence.jobId] = nil }
            switch outcome {
            case .succeeded: f.succeeded += 1
            case .failed: f.failed += 1
            case .retried: f.retried += 1
            case .superseded: f.superseded += 1
            case .givenBack, .parked: break
            }
        }
        wake.signal()
    }

    enum Outcome { case succeeded, failed, retried, superseded, givenBack, parked }

    /// The attempts whose leases the heartbeat renews.
    var fencesInFlight: [JobFence] { fields.withLock { $0.inFlight.values.map(\.fence) } }

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
