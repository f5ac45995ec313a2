import Dispatch
import Foundation
import Synchronization

/// What lanes share: configuration, the database pool, credentials, the key, the log.
final class WorkerContext: Sendable {
    let configuration: Worker.Configuration
    let pool: PGPool
    let credentials: CredentialStore
    let key: SecretKey
    let logger: Logger
    let state: WorkerState
    let tokens: TokenProvider
    let owner: String
    let gate = OrgGate()

    init(configuration: Worker.Configuration, pool: PGPool, credentials: CredentialStore, key: SecretKey,
         logger: Logger, state: WorkerState, tokens: TokenProvider, owner: String) {
        self.configuration = configuration
        self.pool = pool
        self.credentials = credentials
        self.key = key
        self.logger = logger
        self.state = state
        self.tokens = tokens
        self.owner = owner
    }

    /// The org's credential was refused: hold all its jobs back (every worker), with the reason.
    func pause(org: String, reason: String) {
        recordPacing(org, event: "org.pause_unrecorded", """
            INSERT INTO secret_org_pacing AS p (org_id, paused_reason, paused_at, updated_at)
            VALUES (\(org), \(reason), now(), now())
            ON CONFLICT (org_id) DO UPDATE
            SET paused_reason = EXCLUDED.paused_reason, paused_at = now(), updated_at = now()
            """)
    }

    /// Atlas throttled `org`: every worker holds off it until the database clock passes the time.
    /// Claims read it; workers already holding jobs of the org hear it at once, through
    /// `NOTIFY atlas_secrets_pacing` ("<org> <seconds left> <schema>"), and close their gates.
    func throttle(org: String, seconds: Double) {
        recordPacing(org, event: "org.throttle_unrecorded", """
            WITH up AS (
                INSERT INTO secret_org_pacing AS p (org_id, not_before, updated_at)
                VALUES (\(org), now() + make_interval(secs => \(seconds)), now())
                ON CONFLICT (org_id) DO UPDATE
                SET not_before = greatest(p.not_before, EXCLUDED.not_before), updated_at = now()
                RETURNING p.org_id, p.not_before)
            SELECT pg_notify(\(Worker.pacingChannel),
                             org_id || ' ' || greatest(0, extract(epoch FROM not_before - now()))::text || ' ' || current_schema())
            FROM up
            """)
    }

    /// Writes an org's pacing row; a failure is logged, not fatal (the claim still polls).
    private func recordPacing(_ org: String, event: String, _ query: PGQuery) {
        do {
            _ = try pool.withRetryingConnection(deadline: 10) { conn in try conn.execute(query) }
        } catch {
            logger.warning(event, ["org": org, "error": "\(error)"])
        }
    }
}

/// The job processor: claims runnable jobs and runs them on `concurrency` lanes, each a thread
/// with its own HTTP connection; a claimer, a listener and a heartbeat thread around them, and a
/// small database pool whose size does not grow with concurrency.
public final class Worker: Sendable {
    /// Settings, with the documented defaults.
    public struct Configuration: Sendable {
        /// libpq URI or conninfo; nil: libpq's PG* variables.
        public var databaseURL: String?
        /// Atlas base URL (default https://cloud.mongodb.com).
        public var baseURL: String = "https://cloud.mongodb.com"
        /// Lanes: Atlas calls in flight at once.
        public var concurrency: Int = 16
        /// Exit when nothing is runnable or scheduled within `drainHorizon` seconds.
        public var drain: Bool = false
        public var drainHorizon: Double = 60
        /// Only jobs of this batch.
        public var batch: String?
        /// Lease length; heartbeats renew it every third of it.
        public var leaseSeconds: Double = 30
        /// How long in-flight calls may finish after SIGTERM before their jobs are given back.
        public var shutdownGrace: Double = 20
        public var orphanPolicy: OrphanPolicy = .revoke
        public var whenFull: WhenFullPolicy = .fail
        public var perOrgConcurrency: Int?
        /// Atlas requests started per organization per second, across all workers (nil: no pace).
        public var orgRatePerSecond: Double?
        /// Retry of 5xx, timeouts, connection errors.
        public var retry: ExponentialJitterRetry = .exponentialJitter(base: 1, cap: 300)
        /// Throttling without Retry-After.
        public var throttleBackoff: ExponentialJitterRetry = .exponentialJitter(base: 2, cap: 120)
        /// The claimer polls this often even without a notification (a missed NOTIFY costs at most this).
        public var pollInterval: Double = 1
        /// Database connections for lanes' writes and heartbeats.
        public var poolSize: Int = 4
        /// How long a result write is retried across lost database connections.
        public var resultWriteDeadline: Double = 300
        /// Timeouts and identity of the Atlas calls (each create goes on a fresh connection of its
        /// own: AtlasClient asks for it; token and revoke calls keep their connections).
        public var http = HTTPClient.Configuration()
        /// Redraw a progress line on stderr.
        public var progress: Bool = false
        /// OAuth tokens per credential across all workers (the token ledger): no new token while
        /// this many are live (the org pauses), none while this many were fetched in the last
        /// minute (the org waits). Atlas allows 100 live and about 50 a minute.
        public var tokenLiveCap: Int = TokenLedgerLimits.defaultLiveCap
        public var tokenFetchesPerMinute: Int = TokenLedgerLimits.defaultFetchesPerMinute

        public init() {}
    }

    /// What a run did.
    public struct Summary: Sendable {
        public var succeeded: Int
        public var failed: Int
        public var retried: Int
        public var superseded: Int
        public var tokensMinted: Int
        public var seconds: Double
    }

    let context: WorkerContext
    let ledger: DatabaseTokenLedger

    /// A worker with a fresh owner id (host, pid, random): a restart is a different owner.
    public init(configuration: Worker.Configuration, credentials: CredentialStore, key: SecretKey, logger: Logger) {
        let host = ProcessInfo.processInfo.hostName
        let owner = "\(host):\(getpid()):\(Hashing.hexString(Hashing.randomBytes(4)))"
        let pool = PGPool(url: configuration.databaseURL, size: configuration.poolSize, applicationName: "atlas-secrets worker \(owner)")
        ledger = DatabaseTokenLedger(pool: pool, owner: owner, liveCap: configuration.tokenLiveCap,
                                     fetchesPerMinute: configuration.tokenFetchesPerMinute, logger: logger)
        context = WorkerContext(
            configuration: configuration, pool: pool, credentials: credentials, key: key, logger: logger,
            state: WorkerState(), tokens: TokenProvider(baseURL: configuration.baseURL, ledger: ledger), owner: owner)
    }

    /// Stop claiming; a second call cuts the grace period short. Safe from any thread.
    public func requestStop() { context.state.requestStop() }

    /// This process's lease owner id.
    public var owner: String { context.owner }

    /// Runs until stopped (or drained). Blocks the calling thread, which becomes the claimer.
    /// Throws when the database cannot be reached at start or the schema is not migrated.
    public func run() throws -> Summary {
        let started = ContinuousClock.now
        let config = context.configuration
        let state = context.state
        let log = context.logger
        let claimer = try Self.connect(config.databaseURL, name: "claimer", logger: log)
        defer { claimer.close() }
        try Self.checkSchema(claimer)
        ledger.prune()

        log.info("worker.started", [
            "owner": context.owner, "concurrency": "\(config.concurrency)", "lease": "\(config.leaseSeconds)",
            "orphan_secrets": config.orphanPolicy.rawValue, "when_full": config.whenFull.rawValue,
        ])
        let listener = startListener()
        let heartbeat = startHeartbeat()
        var lanes: [Thread] = []
        for i in 0..<config.concurrency {
            lanes.append(startLane(i))
        }
        let progress = config.progress ? ProgressReporter(batch: config.batch) : nil

        claimLoop(claimer, progress: progress)

        // Stopping: jobs never started go straight back; in-flight calls get the grace period.
        for job in state.takeUnstarted() {
            giveBack(job, on: claimer)
        }
        let deadline = ContinuousClock.now + .milliseconds(Int(config.shutdownGrace * 1000))
        while state.lanesRunning > 0 && state.busy > 0 {
            if state.isHurried || ContinuousClock.now >= deadline {
                if !state.abortTransfers.isSet {
                    log.warning("worker.grace_over", ["in_flight": "\(state.busy)"])
                    state.abortTransfers.set()
                }
            }
            _ = state.wake.wait(timeout: .now() + 0.1)
        }
        while state.lanesRunning > 0 { _ = state.wake.wait(timeout: .now() + 0.1) }
        listener.cancel()
        heartbeat.cancel()
        progress?.finish(claimer)

        // Tokens are revoked at exit: a restart loop must not pile up live tokens.
        let httpConfig = config.http
        context.tokens.revokeAll { HTTPClient(configuration: httpConfig) }
        context.pool.close()
        let t = state.totals
        let seconds = Double((ContinuousClock.now - started).components.seconds)
            + Double((ContinuousClock.now - started).components.attoseconds) / 1e18
        let summary = Summary(succeeded: t.succeeded, failed: t.failed, retried: t.retried, superseded: t.superseded,
                              tokensMinted: context.tokens.tokensMinted, seconds: seconds)
        log.info("worker.stopped", [
            "succeeded": "\(t.succeeded)", "failed": "\(t.failed)", "retried": "\(t.retried)",
            "superseded": "\(t.superseded)", "tokens_minted": "\(summary.tokensMinted)",
            "seconds": String(format: "%.2f", seconds),
        ])
        log.flush()
        return summary
    }

    // MARK: claimer

    /// The least time between two claims that would each fill fewer than an eighth of the lanes.
    static let claimSpacing = Duration.milliseconds(10)
    /// The least time between claims after one that found less than it asked for (nothing was
    /// inserted since): a freed lane rarely makes more work runnable then.
    static let starvedClaimSpacing = Duration.milliseconds(40)

    private func claimLoop(_ initial: PGConnection, progress: ProgressReporter?) {
        let config = context.configuration
        let state = context.state
        let log = context.logger
        var conn: PGConnection? = initial
        var lastRescue = ContinuousClock.now - .seconds(3600)
        var lastClaim = ContinuousClock.now - .seconds(3600)
        var lastClaimFilled = true
        let rescueEvery = Duration.milliseconds(Int(max(0.5, min(5, config.leaseSeconds / 6)) * 1000))
        var options = JobStore.ClaimOptions(
            owner: context.owner, leaseSeconds: config.leaseSeconds, orphanPolicy: config.orphanPolicy.rawValue,
            batch: config.batch, perOrgConcurrency: config.perOrgConcurrency, orgRatePerSecond: config.orgRatePerSecond)
        // A pace faster than the poll needs claims that often (each claim starts one job per org).
        let pollInterval = min(config.pollInterval, config.orgRatePerSecond.map { max(0.02, 1 / $0) } ?? config.pollInterval)
        var failures = 0
        while !state.isStopping {
            do {
                if conn == nil || !(conn!.isOpen) {
                    conn?.close()
                    conn = try PGConnection(url: config.databaseURL, applicationName: "atlas-secrets claimer \(context.owner)")
                    log.info("db.reconnected", ["role": "claimer"])
                }
                let c = conn!
                if ContinuousClock.now - lastRescue >= rescueEvery {
                    lastRescue = ContinuousClock.now
                    let rescued = try JobStore.rescueExpired(c)
                    if !rescued.isEmpty {
                        log.warning("jobs.rescued", ["count": "\(rescued.count)", "ids": rescued.prefix(20).map(String.init).joined(separator: ",")])
                    }
                }
                state.releaseParked()
                let free = config.concurrency - state.busy
                // Lanes free up one at a time: a claim per freed lane cost the database a claim
                // per job (each claim reads every (batch, org) with queued work). A claim waits
                // for a quarter of the lanes to be free, or a few milliseconds.
                // A claim that found less than it asked for means nothing else is runnable now:
                // until something is inserted, the next claim waits for more than a freed lane.
                let sinceClaim = ContinuousClock.now - lastClaim
                let claimDue = free > 0 && (state.takeInserted()
                    || (lastClaimFilled ? (free >= max(1, config.concurrency / 4) || sinceClaim >= Self.claimSpacing)
                                        : sinceClaim >= Self.starvedClaimSpacing))
                var claimedAll = false
                if claimDue {
                    lastClaim = ContinuousClock.now
                    let jobs: [ClaimedJob]
                    options.skipOrgs = context.gate.closedOrgs(longerThan: PacedAtlas.giveBackAfter)
                    do {
                        jobs = try JobStore.claim(c, limit: min(free, 64), options: options)
                    } catch {
                        // Another worker claimed a job of the same account at the same moment: the
                        // unique index refused one claim (or the two deadlocked). Claim again.
                        guard error.sqlState == .uniqueViolation || error.sqlState == .deadlockDetected else { throw error }
                        jobs = []
                    }
                    if !jobs.isEmpty {
                        // An org new to this process may come from another worker, which spent
                        // from its bucket since this process last heard from Atlas about it.
                        for org in state.orgsNotHeld(in: jobs) { context.gate.reprobe(org) }
                        state.enqueue(jobs)
                        log.debug("jobs.claimed", ["count": "\(jobs.count)"])
                    }
                    claimedAll = jobs.count == min(free, 64)
                    lastClaimFilled = claimedAll
                    _ = c.takePendingNotifications()
                }
                progress?.update(c)
                failures = 0
                if claimedAll { continue }
                if config.drain && state.holding == 0 {
                    let next = try JobStore.secondsUntilNextRunnable(c, batch: config.batch)
                    if next == nil || next! > config.drainHorizon {
                        log.info("worker.drained", next.map { ["next_runnable_in_s": String(format: "%.0f", $0)] } ?? [:])
                        state.requestStop()
                        break
                    }
                }
                var timeout = min(pollInterval, state.secondsUntilNextParkedRelease ?? pollInterval)
                if let reopen = context.gate.secondsUntilNextReopen() {
                    // An org's other jobs may be claimed once it reopens within a lane's short hold
                    // (PacedAtlas.giveBackAfter); claims for reopening orgs come a few at a time.
                    timeout = min(timeout, max(0.025, reopen - PacedAtlas.giveBackAfter + 0.005))
                }
                if free > 0 && !claimDue {
                    let spacing = lastClaimFilled ? Self.claimSpacing : Self.starvedClaimSpacing
                    timeout = min(timeout, OrgGate.seconds(spacing - (ContinuousClock.now - lastClaim)))
                }
                _ = state.wake.wait(timeout: .now() + max(0.001, timeout))
            } catch {
                failures += 1
                conn?.close()
                conn = nil
                let delay = min(10, 0.2 * Double(1 << min(failures, 6))) * Double.random(in: 0.5...1)
                log.warning("db.claimer_error", ["error": "\(error)", "retry_in": String(format: "%.1f", delay)])
                _ = state.wake.wait(timeout: .now() + delay)
            }
        }
        if let conn, conn !== initial { conn.close() }
    }

    /// A job claimed but never started: back to the queue without spending its attempt.
    private func giveBack(_ job: ClaimedJob, on conn: PGConnection) {
        _ = try? context.pool.withRetryingConnection(deadline: 10) { c in
            try JobStore.finish(c, job.fence, ending: .giveBack(delay: 0, needsReconcile: job.job.needsReconcile, outcome: "released"),
                                errorCode: "WORKER_SHUTDOWN", detail: "the worker stopped while the job waited (for a lane, or for its organization's throttle)",
                                httpStatus: nil, durationMs: 0)
        }
        context.state.finished(job.fence, outcome: .givenBack)
    }

    // MARK: threads

    private func startLane(_ index: Int) -> Thread {
        let context = self.context
        let thread = Thread {
            context.state.laneStarted()
            defer { context.state.laneExited() }
            var httpConfig = context.configuration.http
            httpConfig.abortSignal = context.state.abortTransfers
            let http = HTTPClient(configuration: httpConfig)
            let backoff = context.configuration.throttleBackoff
            let atlas = PacedAtlas(
                client: AtlasClient(baseURL: context.configuration.baseURL, tokens: context.tokens, http: http),
                gate: context.gate, fallbackDelay: { backoff.delay(afterAttempt: 1, retryAfter: nil) })
            let processor = JobProcessor(context: context, atlas: atlas)
            while let job = context.state.next() {
                processor.run(job)
            }
        }
        thread.name = "lane-\(index)"
        thread.stackSize = 1 << 20
        thread.start()
        return thread
    }

    /// The channel of org throttles: payload "<org> <seconds left> <schema>". A channel is the
    /// whole database's: the schema tells this installation's throttles from another's.
    static let pacingChannel = "atlas_secrets_pacing"

    /// An org throttle's payload for `schema`, or nil when it is not one.
    static func pacingNotice(_ payload: String, schema: String) -> (org: String, seconds: Double)? {
        let parts = payload.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2] == schema, let seconds = Double(parts[1]), seconds.isFinite, seconds >= 0 else { return nil }
        return (String(parts[0]), min(seconds, maxRetryAfter))
    }

    /// LISTENs for inserts (wakes the claimer) and for org throttles (closes the gate);
    /// reconnects when its connection dies.
    private func startListener() -> StopFlag {
        let stop = StopFlag()
        let context = self.context
        let thread = Thread {
            var conn: PGConnection?
            var schema = ""
            var failures = 0
            while !stop.isSet {
                do {
                    if conn == nil {
                        conn = try PGConnection(url: context.configuration.databaseURL, applicationName: "atlas-secrets listener \(context.owner)")
                        try conn!.listen("atlas_secrets_jobs")
                        try conn!.listen(Worker.pacingChannel)
                        schema = try conn!.query("SELECT current_schema() AS s").rows[0]["s"].string()
                        context.state.noteInserted()  // anything inserted while we were away
                    }
                    let notes = try conn!.waitForNotifications(timeout: 0.5)
                    var inserted = false
                    for note in notes {
                        if note.channel == Worker.pacingChannel {
                            // Another worker (or this one) was throttled on an org: no lane of
                            // this process calls it before that time either.
                            if let (org, seconds) = Worker.pacingNotice(note.payload, schema: schema) { context.gate.close(org, for: seconds) }
                        } else {
                            inserted = true
                        }
                    }
                    if inserted { context.state.noteInserted() }
                    failures = 0
                } catch {
                    conn?.close()
                    conn = nil
                    failures += 1
                    context.logger.warning("db.listener_error", ["error": "\(error)"])
                    Thread.sleep(forTimeInterval: min(5, 0.2 * Double(1 << min(failures, 5))) * Double.random(in: 0.5...1))
                }
            }
            conn?.close()
        }
        thread.name = "listener"
        thread.start()
        return stop
    }

    /// Renews the leases of in-flight attempts from a thread of its own (a stuck lane cannot starve it).
    private func startHeartbeat() -> StopFlag {
        let stop = StopFlag()
        let context = self.context
        let config = context.configuration
        let thread = Thread {
            let interval = config.leaseSeconds / 3
            var conn: PGConnection?
            while !stop.isSet {
                Thread.sleep(forTimeInterval: min(interval, 0.5))
                if stop.isSet { break }
                stop.tick(every: interval) {
                    let fences = context.state.fencesInFlight
                    guard !fences.isEmpty else { return }
                    do {
                        if conn == nil {
                            conn = try PGConnection(url: config.databaseURL, applicationName: "atlas-secrets heartbeat \(context.owner)")
                        }
                        let held = try JobStore.heartbeat(conn!, owner: context.owner, fences: fences, leaseSeconds: config.leaseSeconds)
                        for lost in fences where !held.contains(lost) && context.state.fencesInFlight.contains(lost) {
                            context.logger.warning("lease.lost", ["job": "\(lost.jobId)", "attempt": "\(lost.attempt)"])
                        }
                    } catch {
                        conn?.close()
                        conn = nil
                        context.logger.warning("db.heartbeat_error", ["error": "\(error)"])
                    }
                }
            }
            conn?.close()
        }
        thread.name = "heartbeat"
        thread.start()
        return stop
    }

    // MARK: start-up

    static func connect(_ url: String?, name: String, logger: Logger) throws -> PGConnection {
        var failures = 0
        while true {
            do {
                return try PGConnection(url: url, applicationName: "atlas-secrets \(name)")
            } catch {
                guard error.isConnectionError && failures < 5 else { throw error }
                failures += 1
                logger.warning("db.connect_failed", ["error": "\(error)", "attempt": "\(failures)"])
                Thread.sleep(forTimeInterval: 0.5 * Double(failures))
            }
        }
    }

    /// The newest migration this worker needs (005: the token ledger). A worker on schema 004
    /// would run, but every token fetch would find no ledger and go ahead uncounted, so the
    /// limits it exists for would silently not hold: it refuses to start instead.
    static let schemaVersionNeeded = 5

    static func checkSchema(_ conn: PGConnection) throws {
        let row = try conn.query("SELECT to_regclass('atlas_secrets_migrations') IS NOT NULL AS ok").rows[0]
        guard try row["ok"].bool() else {
            throw WorkerError.schemaMissing("the database has no atlas-secrets schema: run `atlas-secrets migrate` first")
        }
        let version = try conn.query("SELECT coalesce(max(version), 0) AS v FROM atlas_secrets_migrations").rows[0]["v"].int()
        guard version >= schemaVersionNeeded else {
            throw WorkerError.schemaMissing(
                "the database schema is at migration \(version), and this worker needs migration \(schemaVersionNeeded): run `atlas-secrets migrate` first")
        }
    }
}

/// Why a worker could not start.
public enum WorkerError: Error, CustomStringConvertible {
    case schemaMissing(String)
    public var description: String {
        switch self {
        case .schemaMissing(let m): m
        }
    }
}

/// A flag set once from any thread, plus a tick helper for periodic work.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    private let last = Mutex<ContinuousClock.Instant?>(nil)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func cancel() { flag.store(true, ordering: .relaxed) }
    /// Runs `body` when `every` seconds passed since it last ran.
    func tick(every seconds: Double, _ body: () -> Void) {
        let due = last.withLock { last -> Bool in
            let now = ContinuousClock.now
            if let l = last, now - l < .milliseconds(Int(seconds * 1000)) { return false }
            last = now
            return true
        }
        if due { body() }
    }
}
