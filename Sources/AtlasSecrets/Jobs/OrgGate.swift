import Foundation
import Synchronization

/// Per-organization admission of Atlas calls inside one worker process (the database's
/// `secret_org_pacing` does the same across processes, at claim time). Thread-safe.
///
/// - A throttled org is closed until the time Atlas gave: no lane calls it before.
/// - Until Atlas has answered the org once, again after every throttle, and again when the
///   process takes the org up anew (it held none of its jobs: another worker may have spent the
///   bucket meanwhile), one call at a time goes out (a probe), still within the bound below.
/// - When Atlas sends `RateLimit-Remaining`, the gate keeps a lower bound of the tokens in the
///   org's bucket: the header's value (less the calls still in flight), refilled at the rate the
///   gate assumes, one token taken per call. A call goes out only when the bound holds a whole
///   token; otherwise its lane waits for the moment it will (or gives its job back when that is
///   far). The assumed rate is a token a second, Retry-After's own granularity (an empty bucket
///   probed sooner would answer 429 and a whole second of Retry-After anyway), made slower by any
///   longer Retry-After; a header showing more tokens than the bound raises the bound. Keeping
///   the fraction of a token, instead of waiting a whole period after each empty reading, is what
///   lets an org run at its bucket's pace: each org lost up to a second to that rounding.
/// - When Atlas sends no such header, calls are not held back (only throttles close the org)
///   until the org is first throttled; from then on, one call at a time.
final class OrgGate: Sendable {
    private let orgs = GateState()

    /// Holds the org back for `seconds` (never shortens an existing hold).
    func close(_ org: String, for seconds: Double) {
        let until = ContinuousClock.now + .seconds(seconds)
        orgs.withLock { map in
            if let existing = map[org]?.closedUntil, existing >= until { return }
            map[org, default: GateOrg()].closedUntil = until
            map[org, default: GateOrg()].probing = true
        }
    }

    /// The org's bucket may have been spent by another process (this one takes the org over):
    /// the next call is a probe, and its answer sets the bound again. A closed org stays closed.
    func reprobe(_ org: String) {
        orgs.withLock { map in
            guard var o = map[org] else { return }
            o.probing = true
            map[org] = o
        }
    }

    /// Blocks the calling lane until the org may be called; the caller must `finish` the call.
    /// With `holdAtMost`, returns instead (the seconds until the org may be called, not admitted)
    /// when that is further away: the lane can park or give back its job and take another.
    @discardableResult
    func admit(_ org: String, holdAtMost: Double = .infinity) -> Double? {
        orgs.lock()
        defer { orgs.unlock() }
        while true {
            var o = orgs.value[org] ?? GateOrg()
            let now = ContinuousClock.now
            if let until = o.closedUntil {
                if until > now {
                    let seconds = Self.seconds(until - now)
                    if seconds > holdAtMost { return seconds }
                    orgs.wait(seconds: seconds)
                    continue
                }
                o.closedUntil = nil
            }
            if (o.probing || (o.level == nil && o.wasThrottled)) && o.inFlight > 0 {
                // The probe's answer wakes us (finish broadcasts). Without Atlas's counts, a
                // throttled org gets one call at a time from then on: calls fired together
                // would all land after the 429 that one of them earns.
                orgs.value[org] = o
                orgs.wait(seconds: 1)
                continue
            }
            // A probe too waits for the bound: other processes can only have left fewer tokens.
            if let level = o.level(at: now), level < 1 - 1e-9 {
                let seconds = (1 - level) * o.secondsPerToken
                orgs.value[org] = o
                if seconds > holdAtMost { return seconds }
                orgs.wait(seconds: seconds)
                continue
            }
            if let level = o.level(at: now) {
                o.level = level - 1
                o.levelAt = now
            }
            o.inFlight += 1
            orgs.value[org] = o
            return nil
        }
    }

    /// The admitted call ended: `throttledFor` seconds when Atlas throttled it; `remaining` and
    /// `limit` its `RateLimit-Remaining` and `RateLimit-Limit` headers (nil: absent, or no answer
    /// at all when `answered` is false); `sentAt` when the call went out (nil: unknown).
    func finish(_ org: String, answered: Bool, remaining: Int?, limit: Int? = nil, throttledFor: Double?,
                sentAt: ContinuousClock.Instant? = nil) {
        orgs.withLock { map in
            var o = map[org] ?? GateOrg()
            let now = ContinuousClock.now
            o.inFlight = max(0, o.inFlight - 1)
            if let seconds = throttledFor {
                let until = now + .seconds(seconds)
                if o.closedUntil.map({ $0 < until }) ?? true { o.closedUntil = until }
                // A token is there when Atlas said, and not sooner: a token takes at least that
                // long. Throttled when the bound said a token was there: tokens come back slower
                // than assumed, so assume half the rate from now on.
                let mispredicted = !o.probing && o.level != nil
                o.secondsPerToken = min(60, max(seconds, o.secondsPerToken * (mispredicted ? 2 : 1)))
                o.probing = true
                o.wasThrottled = true
                if o.level != nil {
                    o.level = 1 - seconds / o.secondsPerToken
                    o.levelAt = now
                }
            } else if answered {
                o.probing = false
                // An answer to a call sent before one already answered may carry an older count
                // (answers overtake each other under load): it may lower the bound, never raise it.
                let overtaken = sentAt.map { sent in o.newestAnsweredSentAt.map { sent < $0 } ?? false } ?? false
                if let sentAt, o.newestAnsweredSentAt.map({ $0 < sentAt }) ?? true { o.newestAnsweredSentAt = sentAt }
                if let remaining {
                    if let limit {
                        o.capacity = Double(limit)
                    } else {
                        o.capacity = max(o.capacity ?? 0, Double(remaining + 1))
                    }
                    // What Atlas counted, less the calls it has not counted yet.
                    let floor = Double(remaining - o.inFlight)
                    // The bound's fraction is kept while it agrees with Atlas's whole tokens (it is
                    // between the header and a token above it, give or take the time the answer
                    // took); otherwise Atlas's count wins (someone else spends tokens, or they
                    // come back faster than assumed).
                    if let model = o.level(at: now), model >= floor, model < floor + 1.1 {
                        o.level = model
                    } else if overtaken, let model = o.level(at: now), model < floor {
                        o.level = model
                    } else {
                        o.level = floor
                    }
                    o.levelAt = now
                } else {
                    o.level = nil
                }
            }
            map[org] = o
        }
        orgs.broadcast()
    }

    /// The orgs that may not be called for longer than `seconds` from now (closed, or their
    /// bucket empty): a claim leaves them out, since their jobs would only wait.
    func closedOrgs(longerThan seconds: Double) -> [String] {
        let now = ContinuousClock.now
        let horizon = now + .seconds(seconds)
        return orgs.withLock { map in map.compactMap { $0.value.opensAt(now) > horizon ? $0.key : nil } }
    }

    /// Seconds until the next org held back by this process may be called again (nil: none):
    /// the claimer wakes then, instead of at its next poll, for that org's other jobs.
    func secondsUntilNextReopen() -> Double? {
        let now = ContinuousClock.now
        let next = orgs.withLock { map in
            map.values.map { $0.opensAt(now) }.filter { $0 > now }.min()
        }
        guard let next else { return nil }
        return max(0, Self.seconds(next - now))
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}

/// One org's admission state.
struct GateOrg {
    /// No call before this (Atlas's Retry-After, or a backoff).
    var closedUntil: ContinuousClock.Instant?
    var inFlight = 0
    /// One call at a time until Atlas answers the org (start, and after each throttle).
    var probing = true
    /// When the newest call Atlas has answered went out.
    var newestAnsweredSentAt: ContinuousClock.Instant?
    /// Atlas throttled the org at least once.
    var wasThrottled = false
    /// A lower bound of the tokens in the org's bucket at `levelAt` (nil: Atlas sends no
    /// RateLimit headers, so calls are not held back).
    var level: Double?
    var levelAt = ContinuousClock.now
    /// The most the bucket holds (`RateLimit-Limit`, else the most Atlas ever counted).
    var capacity: Double?
    /// How long a token takes to come back, as assumed: a second, or the longest Retry-After.
    var secondsPerToken = 1.0

    /// The bound at `now`: refilled since `levelAt`, never above the capacity.
    func level(at now: ContinuousClock.Instant) -> Double? {
        guard let level else { return nil }
        let refilled = level + OrgGate.seconds(now - levelAt) / secondsPerToken
        return capacity.map { min(max($0, level), refilled) } ?? refilled
    }

    /// When a call may next go out (now, if it may).
    func opensAt(_ now: ContinuousClock.Instant) -> ContinuousClock.Instant {
        var at = max(now, closedUntil ?? now)
        if let level = level(at: at), level < 1 - 1e-9 {
            at = at + .seconds((1 - level) * secondsPerToken)
        }
        return at
    }
}

/// The gate's map behind a condition variable (lanes wait on it for an org to reopen or for a
/// call in flight to end).
final class GateState: @unchecked Sendable {  // every access to `value` holds `condition`
    private let condition = NSCondition()
    var value: [String: GateOrg] = [:]

    func lock() { condition.lock() }
    func unlock() { condition.unlock() }
    func wait(seconds: Double) { _ = condition.wait(until: Date(timeIntervalSinceNow: max(0.001, seconds))) }
    func broadcast() {
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }
    func withLock<T>(_ body: (inout [String: GateOrg]) -> T) -> T {
        condition.lock()
        defer { condition.unlock() }
        return body(&value)
    }
}

/// The lane's Atlas client, holding each call back while its org is throttled and closing the
/// org's gate when Atlas answers with a throttle. Not thread-safe (one lane).
struct PacedAtlas {
    let client: AtlasClient
    let gate: OrgGate
    let fallbackDelay: @Sendable () -> Double
    /// Reads and creates wait this long at most for a closed org; deletes (revocations) always wait.
    static let giveBackAfter = 0.05

    /// `giveBackAfter`: when the org stays closed longer than this, throw a throttle (the job goes
    /// back to the queue, no attempt spent) instead of holding the lane: a lane asleep on one
    /// throttled org is a lane lost to every other org.
    private func paced<T>(_ org: String, giveBackAfter: Double = .infinity, _ body: () throws(AtlasError) -> T) throws(AtlasError) -> T {
        if let wait = gate.admit(org, holdAtMost: giveBackAfter) {
            throw AtlasError(code: .rateLimited, operation: "call to organization \(org)",
                             message: "the organization is throttled for another \(String(format: "%.2f", wait)) s", retryAfter: wait, isAmbiguous: false)
        }
        let sentAt = ContinuousClock.now
        do {
            let result = try body()
            gate.finish(org, answered: true, remaining: client.lastRateLimitRemaining, limit: client.lastRateLimitLimit, throttledFor: nil, sentAt: sentAt)
            return result
        } catch {
            // The token endpoint's answers (and the token ledger's refusal) are no word from Atlas
            // on the org's API bucket: its limits are the credential's own, and the headers the
            // client last saw belong to an earlier call. The caller closes the org for a wait.
            if error.operation == TokenProvider.tokenOperation || error.refusedByTokenLedger {
                gate.finish(org, answered: false, remaining: nil, throttledFor: nil)
            } else if error.code == .rateLimited {
                gate.finish(org, answered: true, remaining: 0, limit: client.lastRateLimitLimit, throttledFor: error.retryAfter ?? fallbackDelay())
            } else {
                gate.finish(org, answered: error.httpStatus != nil, remaining: client.lastRateLimitRemaining, limit: client.lastRateLimitLimit,
                            throttledFor: nil, sentAt: sentAt)
            }
            throw error
        }
    }

    func getServiceAccount(orgId: String, clientId: String, credential: AtlasCredential) throws(AtlasError) -> OrgServiceAccount {
        try paced(orgId, giveBackAfter: Self.giveBackAfter) { () throws(AtlasError) in try client.getServiceAccount(orgId: orgId, clientId: clientId, credential: credential) }
    }

    func createSecret(orgId: String, clientId: String, expiresAfterHours: Int, credential: AtlasCredential) throws(AtlasError) -> ServiceAccountSecret {
        try paced(orgId, giveBackAfter: Self.giveBackAfter) { () throws(AtlasError) in
            try client.createSecret(orgId: orgId, clientId: clientId, expiresAfterHours: expiresAfterHours, credential: credential)
        }
    }

    func deleteSecret(orgId: String, clientId: String, secretId: String, credential: AtlasCredential) throws(AtlasError) {
        try paced(orgId) { () throws(AtlasError) in
            try client.deleteSecret(orgId: orgId, clientId: clientId, secretId: secretId, credential: credential)
        }
    }
}
