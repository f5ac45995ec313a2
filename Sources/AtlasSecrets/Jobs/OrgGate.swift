import Foundation
import Synchronization

/// Per-organization admission of Atlas calls inside one worker process (the database's
/// `secret_org_pacing` does the same across processes, at claim time). Thread-safe.
///
/// - A throttled org is closed until the time Atlas gave: no lane calls it before.
/// - Lanes of one org do not fire blindly into its bucket: until Atlas has answered the org once,
///   and again after every throttle, one call at a time goes out (a probe); after that, as many
///   at once as Atlas's `RateLimit-Remaining` allows (the calls in flight counted against it).
///   When Atlas sends no such header, calls are not held back (only throttles close the org).
///   Without this, lanes waiting on a throttled org all fired when it reopened, into a bucket
///   that held one token: one got through, the others were rejected after Atlas had already
///   given a Retry-After (the simulator's `earlyRequests`).
final class OrgGate: Sendable {
    private let orgs = GateState()

    /// Holds the org back for `seconds` (never shortens an existing hold).
    func close(_ org: String, for seconds: Double) {
        let until = ContinuousClock.now + .milliseconds(Int((seconds * 1000).rounded(.up)))
        orgs.withLock { map in
            if let existing = map[org]?.closedUntil, existing >= until { return }
            map[org, default: GateOrg()].closedUntil = until
            map[org, default: GateOrg()].probing = true
        }
    }

    /// Blocks the calling lane until the org may be called; the caller must `finish` the call.
    /// With `holdAtMost`, returns instead (the seconds until the org reopens, not admitted) when
    /// the org is closed for longer than that: the lane can give its job back and take another.
    @discardableResult
    func admit(_ org: String, holdAtMost: Double = .infinity) -> Double? {
        orgs.lock()
        defer { orgs.unlock() }
        while true {
            var o = orgs.value[org] ?? GateOrg()
            if let until = o.closedUntil {
                let wait = until - ContinuousClock.now
                if wait > .zero {
                    let seconds = Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18
                    if seconds > holdAtMost { return seconds }
                    orgs.wait(seconds: seconds)
                    continue
                }
                o.closedUntil = nil
            }
            let mayGo: Bool
            if o.probing || o.allowance.map({ $0 <= 0 }) == true {
                mayGo = o.inFlight == 0
            } else {
                mayGo = true
            }
            if mayGo {
                o.inFlight += 1
                if let a = o.allowance { o.allowance = a - 1 }
                orgs.value[org] = o
                return nil
            }
            orgs.value[org] = o
            orgs.wait(seconds: 1)
        }
    }

    /// The admitted call ended: `throttledFor` seconds when Atlas throttled it, `remaining` its
    /// `RateLimit-Remaining` header (nil: absent, or no answer at all when `answered` is false).
    func finish(_ org: String, answered: Bool, remaining: Int?, throttledFor: Double?) {
        orgs.withLock { map in
            var o = map[org] ?? GateOrg()
            o.inFlight = max(0, o.inFlight - 1)
            if let seconds = throttledFor {
                let until = ContinuousClock.now + .milliseconds(Int((seconds * 1000).rounded(.up)))
                if o.closedUntil.map({ $0 < until }) ?? true { o.closedUntil = until }
                o.probing = true
                o.allowance = 0
                o.refillSeconds = seconds
            } else if answered {
                o.probing = false
                // The calls still in flight will spend tokens too.
                o.allowance = remaining.map { $0 - o.inFlight }
                // The bucket is empty: the next call would only be throttled. Wait as long as
                // Atlas last said a token takes to come back, instead of finding out with a 429.
                if let allowance = o.allowance, allowance <= 0, let refill = o.refillSeconds {
                    let until = ContinuousClock.now + .milliseconds(Int((refill * 1000).rounded(.up)))
                    if o.closedUntil.map({ $0 < until }) ?? true { o.closedUntil = until }
                }
            }
            map[org] = o
        }
        orgs.broadcast()
    }

    /// Seconds until the next org closed by this process reopens (nil: none closed), counting
    /// orgs that reopened up to `grace` seconds ago as 0: the claimer wakes then, instead of at
    /// its next poll, to claim the jobs given back while the org was closed.
    func secondsUntilNextReopen(grace: Double = 0.2) -> Double? {
        let now = ContinuousClock.now
        let next = orgs.withLock { map in
            map.values.compactMap(\.closedUntil).filter { $0 > now - .milliseconds(Int(grace * 1000)) }.min()
        }
        guard let next else { return nil }
        let wait = next - now
        return max(0, Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18)
    }
}

/// One org's admission state.
struct GateOrg {
    var closedUntil: ContinuousClock.Instant?
    var inFlight = 0
    /// Calls that may still start before an answer: Atlas's last `RateLimit-Remaining` minus
    /// the calls started since; nil when Atlas gave no header.
    var allowance: Int?
    /// One call at a time until Atlas answers the org (start, and after each throttle).
    var probing = true
    /// The last Retry-After Atlas gave this org: how long a token takes to come back.
    var refillSeconds: Double?
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
        do {
            let result = try body()
            gate.finish(org, answered: true, remaining: client.lastRateLimitRemaining, throttledFor: nil)
            return result
        } catch {
            if error.code == .rateLimited {
                gate.finish(org, answered: true, remaining: 0, throttledFor: error.retryAfter ?? fallbackDelay())
            } else {
                gate.finish(org, answered: error.httpStatus != nil, remaining: client.lastRateLimitRemaining, throttledFor: nil)
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
