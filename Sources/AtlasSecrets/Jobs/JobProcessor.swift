import Foundation

/// Runs one claimed job to the end of its attempt, on a lane's thread. Owns nothing shared
/// except through `WorkerContext`; its AtlasClient (and HTTP connection) belongs to the lane.
/// Never lets a plaintext secret reach a log line, an error or the database.
struct JobProcessor {
    let context: WorkerContext
    let atlas: PacedAtlas

    private var config: Worker.Configuration { context.configuration }
    private var pool: PGPool { context.pool }
    private var log: Logger { context.logger }

    /// Processes `claimed`; always reports the job finished to the worker state.
    func run(_ claimed: ClaimedJob) {
        let outcome = attempt(claimed)
        if outcome == .parked { return }  // still held: the worker runs it again when its org reopens
        context.state.finished(claimed.fence, outcome: outcome)
    }

    /// A job is parked (held in memory, its lease renewed) rather than given back when its org
    /// reopens within this many seconds.
    static let maxPark = 5.0
    /// At most this many parked jobs per lane (a job holds its account while parked).
    static let parkedPerLane = 16

    private func attempt(_ claimed: ClaimedJob) -> WorkerState.Outcome {
        let job = claimed.job
        let fence = claimed.fence
        let clock = ContinuousClock.now
        let elapsedMs = { Self.milliseconds(since: clock) }
        guard let credential = context.credentials.credential(forOrg: job.orgId) else {
            return end(fence, job, .fail, code: "NO_CREDENTIAL",
                       detail: "no credential for organization \(job.orgId): add it to the credentials file (--credentials or ATLAS_SECRETS_CREDENTIALS_FILE)",
                       status: nil, ms: elapsedMs())
        }
        // Whether an earlier create of this job may have made a secret nobody has accounted for.
        // Only a settle (reconcile) clears it, only an ambiguous create sets it: a failed read or
        // delete in between leaves it as it was.
        var unsettled = job.needsReconcile
        // The job as the database now has it, for a try parked and resumed on the same attempt.
        var carried = job
        // Whether this attempt's start is on record with an open history row.
        var startRecorded = false
        do {
            // 1. What the account holds right before this attempt's create, so that a secret the
            //    create makes without our seeing it can be told apart. A previous attempt whose
            //    outcome is unknown is settled first (its secret revoked), and that read serves.
            //    No other job of the account runs meanwhile (one running job per account, and a
            //    job with an unsettled attempt blocks its account's other jobs in the claim).
            //    A try given back before its create (throttled: same attempt number) keeps the read
            //    it made, so that a throttled org is not asked twice per try.
            var snapshot: [ServiceAccountSecret]? = nil
            var known: [String]
            if job.needsReconcile, let knownIds = job.knownSecretIds {
                guard let settled = try reconcile(fence, job, credential, known: knownIds) else { return .superseded }
                unsettled = false
                snapshot = settled
                known = settled.map(\.id)
                carried.needsReconcile = false
                carried.knownSecretIds = known
                carried.knownSecretsAttempt = fence.attempt
            } else if let knownIds = job.knownSecretIds, job.knownSecretsAttempt == fence.attempt,
                      knownIds.count < Self.maxSecretsPerAccount {
                known = knownIds
            } else {
                snapshot = try atlas.getServiceAccount(orgId: job.orgId, clientId: job.clientId, credential: credential).secrets ?? []
                known = snapshot!.map(\.id)
            }
            if fence.attempt > job.maxAttempts {
                return end(fence, job, .fail, code: job.lastErrorCode ?? "MAX_ATTEMPTS",
                           detail: "gave up after \(job.maxAttempts) attempts; last error: \(job.lastErrorDetail ?? "none")",
                           status: job.lastHTTPStatus, ms: elapsedMs())
            }
            if let live = snapshot, live.count >= Self.maxSecretsPerAccount {
                switch try makeRoom(fence, job, credential, live: live, atlasError: nil, ms: elapsedMs()) {
                case .done(let outcome): return outcome
                case .revoked(let id):
                    snapshot = live.filter { $0.id != id }
                    known.removeAll { $0 == id }
                }
            }
            // 2. The create, recorded as started first with the snapshot, so that a crash leaves a
            //    trace to reconcile.
            //    A try resumed after waiting in this worker for its org (nothing sent since its start
            //    was recorded) only checks that it still holds the job.
            let resumed = claimed.startRecorded && job.knownSecretIds == known && job.knownSecretsAttempt == fence.attempt
            guard try write({ conn throws(PGError) in
                resumed ? try JobStore.holdsLease(conn, fence) : try JobStore.recordAttemptStarted(conn, fence, knownSecretIds: known)
            }) else {
                return superseded(fence, job, detail: "lease lost before the create")
            }
            carried.knownSecretIds = known
            carried.knownSecretsAttempt = fence.attempt
            startRecorded = true
            let created: ServiceAccountSecret
            do {
                created = try atlas.createSecret(orgId: job.orgId, clientId: job.clientId,
                                                 expiresAfterHours: job.expiresAfterHours, credential: credential)
            } catch {
                if !error.isAmbiguous, error.code == .api, error.httpStatus == 400 {
                    // Perhaps the account is full (Atlas's errorCode for that is undocumented): read it.
                    let live = try atlas.getServiceAccount(orgId: job.orgId, clientId: job.clientId, credential: credential).secrets ?? []
                    if live.count >= Self.maxSecretsPerAccount {
                        switch try makeRoom(fence, job, credential, live: live, atlasError: error, ms: elapsedMs()) {
                        case .done(let outcome): return outcome
                        case .revoked(let id):
                            let ids = live.map(\.id).filter { $0 != id }
                            _ = try write { conn throws(PGError) in try JobStore.recordKnownSecrets(conn, fence, ids: ids) }
                            return end(fence, job, .giveBack(delay: 0, needsReconcile: false, outcome: "made_room"),
                                       code: error.apiError?.errorCode ?? "HTTP_400", detail: "account was full; revoked \(id) (--when-full revoke-oldest)",
                                       status: 400, ms: elapsedMs())
                        }
                    }
                }
                guard error.isAmbiguous else { throw error }
                log.warning("job.ambiguous", ["job": "\(job.id)", "attempt": "\(fence.attempt)", "error": error.description])
                if error.code == .transport {
                    // No answer at all (timeout, connection lost): Atlas may still be working on the
                    // create we hung up on, so reading the account now could miss the secret it is
                    // about to make. Settle later, once it must have finished (a lease from now).
                    return retryOrFail(fence, job, error: error, needsReconcile: true, ms: elapsedMs(), settle: config.leaseSeconds)
                }
                // Atlas answered (5xx): the create is over, whatever it did. Settle now, then retry.
                var reconciled = false
                do {
                    reconciled = try reconcile(fence, job, credential, known: known) != nil
                } catch {
                    log.warning("job.reconcile_failed", ["job": "\(job.id)", "error": "\(error)"])
                }
                return retryOrFail(fence, job, error: error, needsReconcile: !reconciled, ms: elapsedMs())
            }
            return store(created, fence, job, credential, snapshot: snapshot, known: known, ms: elapsedMs())
        } catch let error as AtlasError {
            return handle(error, fence, job, unsettled: unsettled, ms: elapsedMs(),
                          resumable: ClaimedJob(job: carried, fence: fence, startRecorded: startRecorded))
        } catch {
            // Database trouble that outlived the pool's retries: the lease will expire and the
            // job will be rescued and reconciled by whichever worker is alive.
            log.error("job.database_error", ["job": "\(job.id)", "error": "\(error)"])
            return .givenBack
        }
    }

    /// Parks a throttled job until its org reopens, unless that is far off, the worker is
    /// stopping, or too many jobs are parked already (the job is given back instead).
    private func park(_ claimed: ClaimedJob?, for wait: Double) -> Bool {
        guard let claimed, wait <= Self.maxPark,
              context.state.park(claimed, for: wait, limit: Self.parkedPerLane * config.concurrency)
        else { return false }
        log.debug("job.parked", ["job": "\(claimed.job.id)", "org": claimed.job.orgId, "for": String(format: "%.2f", wait)])
        return true
    }

    /// Atlas holds at most this many secrets per service account.
    static let maxSecretsPerAccount = 2

    enum RoomOutcome {
        case done(WorkerState.Outcome)
        case revoked(String)
    }

    /// The account is full: fail (saying which secrets exist and when they expire) or revoke the
    /// oldest secret and record it, by the `--when-full` policy.
    private func makeRoom(
        _ fence: JobFence, _ job: Job, _ credential: AtlasCredential, live: [ServiceAccountSecret], atlasError: AtlasError?, ms: Int
    ) throws -> RoomOutcome {
        switch config.whenFull {
        case .fail:
            let list = live.map { "\($0.id) (expires \($0.expiresAt))" }.joined(separator: ", ")
            return .done(end(fence, job, .fail, code: atlasError?.apiError?.errorCode ?? "SERVICE_ACCOUNT_FULL",
                             detail: "service account \(job.clientId) already holds \(live.count) secrets, the most Atlas allows: \(list); revoke one, or run the worker with --when-full revoke-oldest",
                             status: atlasError?.httpStatus, ms: ms))
        case .revokeOldest:
            let oldest = live.min { $0.createdAt < $1.createdAt }!
            try atlas.deleteSecret(orgId: job.orgId, clientId: job.clientId, secretId: oldest.id, credential: credential)
            log.info("secret.revoked", ["job": "\(job.id)", "secret": oldest.id, "reason": "when-full revoke-oldest"])
            let json = Self.revocationJSON([oldest.id], reason: "oldest secret (created \(oldest.createdAt)) revoked to make room (--when-full revoke-oldest)", action: "revoked")
            guard try write({ conn throws(PGError) in try JobStore.recordRevocations(conn, fence, json: json) }) else {
                return .done(.superseded)
            }
            return .revoked(oldest.id)
        }
    }

    /// Encrypts and stores the new secret; a refused write makes it an orphan.
    private func store(
        _ created: ServiceAccountSecret, _ fence: JobFence, _ job: Job, _ credential: AtlasCredential,
        snapshot: [ServiceAccountSecret]?, known: [String], ms: Int
    ) -> WorkerState.Outcome {
        guard let plaintext = created.secret,
              let createdAt = AtlasTime.parse(created.createdAt), let expiresAt = AtlasTime.parse(created.expiresAt)
        else {
            // AtlasClient validates the 201; this is a defence against a future change there.
            return handle(AtlasError(code: .invalidResponse, operation: "create secret", message: "201 without secret or timestamps", isAmbiguous: true), fence, job, unsettled: true, ms: ms)
        }
        let sealed = SecretBox.seal(plaintext, key: context.key, associatedData: Self.associatedData(jobId: job.id))
        let masked = created.maskedSecretValue ?? maskSecret(plaintext)
        // Creating a secret shortens the account's older secrets to expire within 7 days.
        let week = createdAt.addingTimeInterval(7 * 24 * 3600)
        // Known expiries (a fresh read) give the exact list; a reused read gives its ids, each now
        // expiring by a week from now at the latest.
        let shortened: [[String: String]] = snapshot.map { live in
            live.compactMap { old in
                guard let oldExpiry = AtlasTime.parse(old.expiresAt), oldExpiry > week else { return nil }
                return ["id": old.id, "expiresAt": AtlasTime.format(week)]
            }
        } ?? known.map { ["id": $0, "expiresAt": AtlasTime.format(week)] }
        let success = JobStore.Success(
            secretId: created.id, createdAt: createdAt, expiresAt: expiresAt, maskedSecret: masked,
            ciphertext: sealed, keyId: context.key.id, shortenedJSON: Self.json(shortened), httpStatus: 201, durationMs: ms)
        if let pause = TestHooks.pauseBeforeResult {
            log.warning("test_hook.pause_before_result", ["job": "\(job.id)", "attempt": "\(fence.attempt)", "secret": created.id])
            Thread.sleep(forTimeInterval: pause)
        }
        let written: Bool
        do {
            written = try write { conn throws(PGError) in try JobStore.complete(conn, fence, success) }
        } catch {
            // The database stayed out of reach: the write may even have committed. Leave the
            // secret alone; if the job is not recorded as succeeded, its lease expires and the
            // next attempt settles it (revoking this secret then).
            log.error("job.result_unwritable", ["job": "\(job.id)", "secret": created.id, "error": "\(error)"])
            return .givenBack
        }
        if written {
            log.info("job.succeeded", ["job": "\(job.id)", "org": job.orgId, "attempt": "\(fence.attempt)", "secret": created.id, "ms": "\(ms)"])
            return .succeeded
        }
        // Superseded: the secret this attempt created has no home. Its value will
        // never be readable again, so it is an orphan: revoke it (or keep it, by policy).
        log.warning("attempt.superseded", ["job": "\(job.id)", "attempt": "\(fence.attempt)", "secret": created.id])
        if config.orphanPolicy == .revoke {
            do {
                try atlas.deleteSecret(orgId: job.orgId, clientId: job.clientId, secretId: created.id, credential: credential)
                log.info("secret.revoked", ["job": "\(job.id)", "secret": created.id, "reason": "created by a superseded attempt"])
            } catch {
                log.error("secret.revoke_failed", ["job": "\(job.id)", "secret": created.id, "error": "\(error)"])
            }
        }
        try? pool.withRetryingConnection(deadline: 10) { conn in
            try JobStore.recordSuperseded(conn, fence, detail: "result refused: the lease had passed to another attempt; secret \(created.id) \(config.orphanPolicy == .revoke ? "revoked" : "kept")")
        }
        return .superseded
    }

    /// Reads the account and deals with secrets this job created but never received: the
    /// account's live secrets that are not in `known` (what it held right before the lost create)
    /// and that no other job holds as its result. Revokes (or keeps) them by policy, records that
    /// on the job, and marks the outcome settled. Returns the account's live secrets afterwards,
    /// or nil when superseded.
    private func reconcile(_ fence: JobFence, _ job: Job, _ credential: AtlasCredential, known: [String]) throws -> [ServiceAccountSecret]? {
        var live = try atlas.getServiceAccount(orgId: job.orgId, clientId: job.clientId, credential: credential).secrets ?? []
        var orphans = live.map(\.id).filter { !known.contains($0) }
        if !orphans.isEmpty {
            // Defence in depth: never touch a secret that another job delivered, or kept by policy.
            let candidates = orphans
            let owned = try pool.withRetryingConnection(deadline: config.resultWriteDeadline) { conn in
                Set(try conn.query("""
                    SELECT o.secret_id AS id FROM secret_jobs o
                    WHERE o.org_id = \(job.orgId) AND o.client_id = \(job.clientId) AND o.id <> \(job.id)
                      AND o.secret_id = ANY(\(candidates))
                    UNION
                    SELECT r->>'id' FROM secret_jobs o, jsonb_array_elements(o.revoked_secrets) r
                    WHERE o.org_id = \(job.orgId) AND o.client_id = \(job.clientId) AND o.id <> \(job.id)
                      AND r->>'action' = 'kept' AND r->>'id' = ANY(\(candidates))
                    """).rows.map { row throws(PGError) in try row["id"].string() })
            }
            orphans.removeAll { owned.contains($0) }
        }
        if !orphans.isEmpty {
            let action: String
            if config.orphanPolicy == .revoke {
                for id in orphans {
                    do {
                        try atlas.deleteSecret(orgId: job.orgId, clientId: job.clientId, secretId: id, credential: credential)
                    } catch {
                        // 404: already gone, revoked by another reconciliation of the same attempt.
                        if error.httpStatus != 404 { throw error }
                    }
                    log.info("secret.revoked", ["job": "\(job.id)", "secret": id, "reason": "created by an attempt whose response was lost"])
                }
                live.removeAll { orphans.contains($0.id) }
                action = "revoked"
            } else {
                action = "kept"
                log.warning("secret.orphan_kept", ["job": "\(job.id)", "secrets": orphans.joined(separator: ",")])
            }
            let json = Self.revocationJSON(orphans, reason: "created by an attempt whose response was lost", action: action)
            guard try write({ conn throws(PGError) in try JobStore.recordRevocations(conn, fence, json: json) }) else { return nil }
        }
        let ids = live.map(\.id)
        guard try write({ conn throws(PGError) in try JobStore.recordKnownSecrets(conn, fence, ids: ids) }) else { return nil }
        return live
    }

    /// Classifies an Atlas failure into the job's next state.
    /// `unsettled`: an earlier create's outcome is still unknown (kept on the job whatever this
    /// failure was, so that the next attempt settles it first). `resumable`: the job as the
    /// database has it now, when a throttled try may be parked and resumed on the same attempt.
    private func handle(_ error: AtlasError, _ fence: JobFence, _ job: Job, unsettled: Bool, ms: Int, resumable: ClaimedJob? = nil) -> WorkerState.Outcome {
        switch error.code {
        case .rateLimited where error.httpStatus == nil && !error.refusedByTokenLedger:
            // Held back by this process's gate (the org is throttled): nothing was sent.
            let delay = error.retryAfter ?? 0
            if park(resumable, for: delay) { return .parked }
            log.debug("job.deferred", ["job": "\(job.id)", "org": job.orgId, "retry_after": String(format: "%.2f", delay)])
            return end(fence, job, .giveBack(delay: delay, needsReconcile: unsettled, outcome: "deferred"),
                       code: "ORG_THROTTLED", detail: error.description, status: nil, ms: ms)
        case .rateLimited:
            let delay = error.retryAfter ?? config.throttleBackoff.delay(afterAttempt: 1, retryAfter: nil)
            context.gate.close(job.orgId, for: delay)
            context.throttle(org: job.orgId, seconds: delay)
            log.info("job.throttled", ["job": "\(job.id)", "org": job.orgId, "retry_after": String(format: "%.1f", delay)])
            // The token ledger's refusal (too many token requests for the credential in the last
            // minute, across workers) waits the same way, every worker told through the database.
            let code = error.apiError?.errorCode ?? (error.refusedByTokenLedger ? "TOKEN_RATE_LIMITED" : "RATE_LIMITED")
            // Atlas refused the call, so nothing was created: the job may wait here for the org
            // to reopen, on the same attempt (a throttle spends none), its throttle on record.
            if resumable != nil, delay <= Self.maxPark {
                let recorded = try? write { conn throws(PGError) in
                    try JobStore.recordThrottled(conn, fence, errorCode: code, detail: error.description, httpStatus: error.httpStatus, durationMs: ms)
                }
                if recorded == false { return superseded(fence, job, detail: "lease lost while throttled") }
                // The throttled try's history row is closed: the next try opens another.
                var next = resumable
                next?.startRecorded = false
                if recorded == true, park(next, for: delay) { return .parked }
            }
            return end(fence, job, .giveBack(delay: delay, needsReconcile: unsettled, outcome: "throttled"),
                       code: code, detail: error.description, status: error.httpStatus, ms: ms)
        case .authentication:
            // The org's credential was refused: every job of the org would fail the same way, so the
            // whole org pauses (shown by `status`, tried again in 5 minutes) and no attempt is spent.
            // The token ledger's refusal (the credential's live tokens reach the cap) pauses it the same way.
            let reason = error.refusedByTokenLedger ? error.message
                : "credential refused (HTTP \(error.httpStatus.map(String.init) ?? "?")\(error.apiError.map { " \($0.errorCode)" } ?? "")) at \(AtlasTime.format(Date()))"
            context.pause(org: job.orgId, reason: reason)
            log.error("org.paused", ["org": job.orgId, "job": "\(job.id)", "reason": reason])
            return end(fence, job, .giveBack(delay: 0, needsReconcile: unsettled, outcome: "paused"),
                       code: error.refusedByTokenLedger ? "TOKEN_LIVE_CAP" : "CREDENTIAL_REFUSED", detail: error.description, status: error.httpStatus, ms: ms)
        case .transport, .invalidResponse:
            return retryOrFail(fence, job, error: error, needsReconcile: unsettled, ms: ms)
        default:
            if let status = error.httpStatus, status >= 500 {
                return retryOrFail(fence, job, error: error, needsReconcile: unsettled, ms: ms)
            }
            var detail = error.apiError?.detail ?? error.description
            if unsettled && error.httpStatus != 404 {
                detail += " (an earlier attempt's create may have left a secret on the account; it could not be checked)"
            }
            return end(fence, job, .fail, code: error.apiError?.errorCode ?? "HTTP_\(error.httpStatus ?? 0)",
                       detail: detail, status: error.httpStatus, ms: ms)
        }
    }

    /// `settle`: the least delay before the next try (time for an abandoned create to land).
    private func retryOrFail(_ fence: JobFence, _ job: Job, error: AtlasError, needsReconcile: Bool, ms: Int, settle: Double = 0) -> WorkerState.Outcome {
        let code = error.apiError?.errorCode ?? (error.httpStatus.map { "HTTP_\($0)" } ?? "TRANSPORT_ERROR")
        let detail = error.apiError?.detail ?? error.description
        if context.state.isStopping && error.code == .transport {
            // Cut short by shutdown: give the attempt back. A create abandoned on the wire may
            // still land at Atlas after we hang up; a peer that reconciled at once would miss it
            // and create a second live secret. So the job waits a lease first, as after a crash.
            let settle = needsReconcile ? max(settle, config.leaseSeconds) : 0
            return end(fence, job, .giveBack(delay: settle, needsReconcile: needsReconcile, outcome: "released"),
                       code: "WORKER_SHUTDOWN", detail: "the worker stopped during the call; \(detail)", status: error.httpStatus, ms: ms)
        }
        if fence.attempt >= job.maxAttempts {
            if needsReconcile {
                // Settle the unknown outcome first (the next claim reconciles, then fails).
                return end(fence, job, .retry(delay: max(1, settle), needsReconcile: true), code: code,
                           detail: detail, status: error.httpStatus, ms: ms)
            }
            return end(fence, job, .fail, code: code,
                       detail: "gave up after \(fence.attempt) attempts: \(detail)", status: error.httpStatus, ms: ms)
        }
        let delay = max(settle, config.retry.delay(afterAttempt: fence.attempt, retryAfter: error.retryAfter))
        return end(fence, job, .retry(delay: delay, needsReconcile: needsReconcile), code: code, detail: detail,
                   status: error.httpStatus, ms: ms)
    }

    /// Writes an attempt's end; logs it; a refused write is a superseded attempt.
    private func end(_ fence: JobFence, _ job: Job, _ ending: JobStore.Ending, code: String, detail: String, status: Int?, ms: Int) -> WorkerState.Outcome {
        let written: Bool
        do {
            written = try write { conn throws(PGError) in
                try JobStore.finish(conn, fence, ending: ending, errorCode: code, detail: detail, httpStatus: status, durationMs: ms)
            }
        } catch {
            log.error("job.result_unwritable", ["job": "\(job.id)", "error": "\(error)"])
            return .givenBack
        }
        guard written else { return superseded(fence, job, detail: "result refused: \(code)") }
        var fields = [("job", "\(job.id)"), ("org", job.orgId), ("attempt", "\(fence.attempt)"), ("code", code)]
        if let status { fields.append(("status", "\(status)")) }
        fields.append(("detail", detail))
        switch ending {
        case .fail:
            log.log(.warning, "job.failed", pairs: fields)
            return .failed
        case .retry(let delay, _):
            fields.append(("retry_in", String(format: "%.1f", delay)))
            log.log(.info, "job.retry", pairs: fields)
            return .retried
        case .giveBack:
            return .givenBack
        }
    }

    private func superseded(_ fence: JobFence, _ job: Job, detail: String) -> WorkerState.Outcome {
        log.warning("attempt.superseded", ["job": "\(job.id)", "attempt": "\(fence.attempt)", "detail": detail])
        try? pool.withRetryingConnection(deadline: 10) { conn in try JobStore.recordSuperseded(conn, fence, detail: detail) }
        return .superseded
    }

    /// A fenced write through the pool, retried across lost connections (each write is idempotent).
    private func write(_ body: (PGConnection) throws(PGError) -> Bool) throws -> Bool {
        try pool.withRetryingConnection(deadline: config.resultWriteDeadline) { conn in try body(conn) }
    }

    static func milliseconds(since start: ContinuousClock.Instant) -> Int {
        let d = ContinuousClock.now - start
        return Int(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000)
    }

    /// Binds a ciphertext to its row: a value copied to another job does not open.
    static func associatedData(jobId: Int64) -> String { "atlas-secrets:job:\(jobId)" }

    static func revocationJSON(_ ids: [String], reason: String, action: String) -> String {
        json(ids.map { ["id": $0, "reason": reason, "action": action, "at": AtlasTime.format(Date())] })
    }

    static func json(_ value: [[String: String]]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])) ?? Data("[]".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
