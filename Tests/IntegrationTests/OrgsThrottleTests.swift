import AtlasSecrets
import AtlasSim
import Foundation
import Testing

/// Issue 4, Atlas's limits per organization, through the real `atlas-secrets` binary against the
/// simulator: throttles (429 and 400 RATE_LIMITED), a refused credential, the 2-secret cap.
@Suite(.serialized) struct OrgsThrottleTests {
    /// Two orgs of 3 accounts, one job each, buckets of 2 refilled at one token every 2 s: every
    /// org needs 6 calls, so 8 s of throttling. The worker paces by Atlas's RateLimit headers
    /// but assumes a token a second until told otherwise, so it does meet throttles: it must wait
    /// out every Retry-After, spend no attempt on a throttle, and finish.
    func throttledOrgsWaitThenFinish(style: String, name: String) throws {
        let h = try Harness(name, orgs: 2, accountsPerOrg: 3)
        defer { h.close() }
        try h.rateLimit(capacity: 2, refillPerSecond: 0.5, style: style)
        try h.enqueue(h.accounts.map { OrgsRequest(org: $0.org, client: $0.client) }, batch: "t")
        let started = Date()
        let run = try h.drain(["--concurrency", "8"], timeout: 60)
        let seconds = Date().timeIntervalSince(started)
        #expect(run.status == 0, "worker: \(run.process.stderr.suffix(2000))")

        let jobs = try h.listJobs(batch: "t")
        #expect(jobs.count == 6)
        #expect(jobs.allSatisfy { $0.state == "succeeded" }, "\(jobs.map { "\($0.id) \($0.state) \($0.lastErrorCode ?? "")" })")
        // A throttle never spends an attempt: every job succeeded on its first.
        #expect(jobs.map(\.attempts) == Array(repeating: 1, count: 6))
        // The throttle did happen: the worker logged each one, and every job it hit still
        // succeeded on its first attempt.
        let throttledIds = Set(run.process.stderr.split(separator: "\n").compactMap { line -> Int64? in
            guard line.contains("\"job.throttled\""), let data = String(line).data(using: .utf8),
                  let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
            return (obj["job"] as? String).flatMap { Int64($0) }
        })
        #expect(!throttledIds.isEmpty, "no job.throttled in the log")
        #expect(throttledIds.isSubset(of: Set(jobs.filter { $0.attempts == 1 && $0.state == "succeeded" }.map(\.id))))
        // A throttled create keeps its history row, with Atlas's answer.
        for job in try jobs.map({ try h.showJob($0.id) }) {
            for hit in (job.history ?? []) where hit.outcome == "throttled" {
                #expect(hit.httpStatus == (style == "429" ? 429 : 400))
                #expect(hit.errorCode?.contains("RATE_LIMITED") == true)
            }
        }

        let state = try h.state()
        // Not one request reached an org before the Retry-After it had been given.
        #expect(state.counters.earlyRequests.values.reduce(0, +) == 0, "early: \(state.counters.earlyRequests)")
        let rejected = state.counters.rejected429
        #expect(rejected.values.reduce(0, +) >= 1)
        // At most one rejection per throttle window (4 windows of 2 s); a storm would be dozens.
        #expect(rejected.values.allSatisfy { $0 <= 4 }, "rejected: \(rejected)")
        // One secret per job, no duplicates, no orphans.
        #expect(state.counters.secretsCreated == 6)
        #expect(Set(jobs.compactMap(\.secretId)).count == 6)
        // 4 calls beyond capacity, a token every 2 s: at least 8 s, and not much more.
        #expect(seconds >= 7.5 && seconds < 25, "took \(seconds) s")
        print("orgs.throttle[\(style)]: \(String(format: "%.1f", seconds)) s, rejected \(rejected), throttled jobs \(throttledIds.count)")
    }

    @Test func throttledOrgWaitsForRetryAfterThenFinishes() throws {
        try throttledOrgsWaitThenFinish(style: "429", name: "orgs_429")
    }

    @Test func badRequestRateLimitedIsAThrottle() throws {
        try throttledOrgsWaitThenFinish(style: "400", name: "orgs_400")
    }

    /// The same orgs and buckets, with Atlas's RateLimit headers: the worker keeps under each
    /// org's bucket and is never throttled at all.
    @Test func withRateLimitHeadersTheWorkerIsNeverThrottled() throws {
        let h = try Harness("orgs_paced", orgs: 2, accountsPerOrg: 5)
        defer { h.close() }
        try h.rateLimit(capacity: 2, refillPerSecond: 2)
        try h.enqueue(h.accounts.map { OrgsRequest(org: $0.org, client: $0.client) }, batch: "t")
        let started = Date()
        let run = try h.drain(["--concurrency", "8"], timeout: 60)
        let seconds = Date().timeIntervalSince(started)
        #expect(run.status == 0, "worker: \(run.process.stderr.suffix(2000))")
        let jobs = try h.listJobs(batch: "t")
        #expect(jobs.count == 10 && jobs.allSatisfy { $0.state == "succeeded" && $0.attempts == 1 })
        let state = try h.state()
        #expect(state.counters.rejected429.values.reduce(0, +) == 0, "rejected: \(state.counters.rejected429)")
        #expect(state.counters.earlyRequests.values.reduce(0, +) == 0)
        #expect(state.counters.secretsCreated == 10)
        // 8 calls beyond capacity: 4 s at the bucket's 2/s, 8 s at the token a second the worker
        // assumes until Atlas's counts show more.
        #expect(seconds >= 3.5 && seconds < 12, "took \(seconds) s")
        print("orgs.paced: \(String(format: "%.1f", seconds)) s, no throttle")
    }

    /// Atlas sends only Retry-After, or no header at all: the worker finds the limit by being
    /// throttled, backs off on its own when told nothing, and still finishes, every job on its
    /// first attempt, without a storm of rejections.
    @Test(arguments: ["retry-after", "none"])
    func withFewerHeadersTheWorkerStillFinishes(headers: String) throws {
        let h = try Harness("orgs_bare_\(headers == "none" ? "none" : "ra")", orgs: 2, accountsPerOrg: 5)
        defer { h.close() }
        try h.rateLimit(capacity: 2, refillPerSecond: 2, headers: headers)
        try h.enqueue(h.accounts.map { OrgsRequest(org: $0.org, client: $0.client) }, batch: "t")
        let run = try h.drain(["--concurrency", "8"], timeout: 90)
        #expect(run.status == 0, "worker: \(run.process.stderr.suffix(2000))")
        let jobs = try h.listJobs(batch: "t")
        #expect(jobs.count == 10 && jobs.allSatisfy { $0.state == "succeeded" && $0.attempts == 1 })
        let rejected = try h.state().counters.rejected429
        #expect(rejected.values.allSatisfy { $0 <= 10 }, "rejected: \(rejected)")
    }

    @Test func revokedCredentialPausesOnlyItsOrg() throws {
        let h = try Harness("orgs_paused", orgs: 3, accountsPerOrg: 3)
        defer { h.close() }
        let revoked = AtlasSimulator.orgId(index: 1)
        try h.control("POST", "/_sim/credentials/revoke", #"{"orgId": "\#(revoked)"}"#)
        try h.enqueue(h.accounts.map { OrgsRequest(org: $0.org, client: $0.client) }, batch: "p")

        // --drain exits: the paused org's jobs are not runnable for 5 minutes.
        let run = try h.drain(["--concurrency", "4"], timeout: 30)
        #expect(run.status == 0, "worker: \(run.process.stderr.suffix(2000))")

        let jobs = try h.listJobs(batch: "p")
        for job in jobs {
            if job.orgId == revoked {
                #expect(job.state == "queued" && job.attempts == 0, "job \(job.id): \(job.state), \(job.attempts) attempts")
            } else {
                #expect(job.state == "succeeded" && job.attempts == 1, "job \(job.id): \(job.state) \(job.lastErrorDetail ?? "")")
            }
        }
        #expect(jobs.filter { $0.state == "succeeded" }.count == 6)
        let status = try h.status(["--batch", "p"])
        let paused = try #require(status.org(revoked))
        #expect(paused.counts.queued == 3)
        #expect(paused.pausedReason?.contains("credential refused") == true, "reason: \(paused.pausedReason ?? "none")")
        for i in [0, 2] {
            let org = try #require(status.org(AtlasSimulator.orgId(index: i)))
            #expect(org.pausedReason == nil && org.counts.succeeded == 3)
        }
        // The human table says it too.
        let text = try h.cli(["status", "--batch", "p"])
        #expect(text.stdout.contains(revoked) && text.stdout.contains("credential refused"))
        // Nothing was created for the paused org.
        let state = try h.state()
        let revokedAccounts = h.accounts.filter { $0.org == revoked }.map(\.client)
        #expect(revokedAccounts.count == 3 && revokedAccounts.allSatisfy { state.liveSecrets($0).isEmpty })
    }

    /// Account 0 gets two secrets (30-day ones, so the second shortens the first), then a third
    /// job under `--when-full revoke-oldest`, then a fourth under `--when-full fail`.
    @Test func fullAccountRevokeOldestThenFail() throws {
        let h = try Harness("orgs_full", orgs: 1, accountsPerOrg: 2)
        defer { h.close() }
        let (org, client) = h.accounts[0]
        let other = h.accounts[1].client
        try h.enqueue([OrgsRequest(org: org, client: client, hours: 720, key: "first"),
                       OrgsRequest(org: org, client: client, hours: 720, key: "second"),
                       OrgsRequest(org: org, client: other, hours: 720, key: "fresh")], batch: "fill")
        #expect(try h.drain(["--concurrency", "2"], timeout: 30).status == 0)
        let fill = try h.listJobs(batch: "fill").sorted { $0.id < $1.id }
        #expect(fill.map(\.state) == ["succeeded", "succeeded", "succeeded"])
        let first = try h.showJob(fill[0].id), second = try h.showJob(fill[1].id), fresh = try h.showJob(fill[2].id)
        let firstSecret = try #require(first.secretId), secondSecret = try #require(second.secretId)

        // The 7-day shortening: the second create shortened the first secret, and says so.
        #expect(first.shortenedSecrets.isEmpty && fresh.shortenedSecrets.isEmpty)
        #expect(second.shortenedSecrets.map { $0["id"] } == [firstSecret])
        let created = try #require(second.secretCreatedAt.flatMap(Self.date))
        let shortenedTo = try #require(second.shortenedSecrets.first?["expiresAt"].flatMap(Self.date))
        #expect(abs(shortenedTo.timeIntervalSince(created) - 7 * 24 * 3600) < 2)
        // ... as Atlas (the simulator) did.
        let simFirst = try #require(try h.state().account(client)?.secrets.first { $0.id == firstSecret })
        #expect(abs(try #require(Self.date(simFirst.expiresAt)).timeIntervalSince(shortenedTo)) < 2)
        #expect(try h.cli(["show", "\(second.id)"]).stdout.contains("shortened"))

        // Full, revoke-oldest: the first secret goes, recorded on the job; the new one is created.
        try h.enqueue([OrgsRequest(org: org, client: client, hours: 24, key: "third")], batch: "revoke")
        #expect(try h.drain(["--concurrency", "2", "--when-full", "revoke-oldest"], timeout: 30).status == 0)
        let third = try h.showJob(try #require(try h.listJobs(batch: "revoke").first).id)
        #expect(third.state == "succeeded" && third.attempts == 1, "\(third.state): \(third.lastErrorDetail ?? "")")
        #expect(third.revokedSecrets.map { $0["id"] } == [firstSecret])
        #expect(third.revokedSecrets.first?["reason"]?.contains("revoke-oldest") == true)
        // The second secret (30 days) is now shortened by the third's create.
        #expect(third.shortenedSecrets.map { $0["id"] } == [secondSecret])
        var live = try h.state().liveSecrets(client).map(\.id)
        #expect(Set(live) == [secondSecret, try #require(third.secretId)])
        #expect(try h.state().account(client)?.secrets.first { $0.id == firstSecret }?.revokedAt != nil)

        // Full, fail (the default): nothing revoked, the message lists the secrets and expiries.
        try h.enqueue([OrgsRequest(org: org, client: client, hours: 24, key: "fourth")], batch: "fail")
        #expect(try h.drain(["--concurrency", "2", "--when-full", "fail"], timeout: 30).status == 0)
        let fourth = try h.showJob(try #require(try h.listJobs(batch: "fail").first).id)
        #expect(fourth.state == "failed")
        let detail = fourth.lastErrorDetail ?? ""
        for id in live {
            #expect(detail.contains(id), "detail: \(detail)")
        }
        #expect(detail.contains("expires") && detail.contains("--when-full revoke-oldest"), "detail: \(detail)")
        live = try h.state().liveSecrets(client).map(\.id)
        #expect(live.count == 2 && fourth.revokedSecrets.isEmpty)
    }

    static func date(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        if let d = f.date(from: text) { return d }
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: text)
    }
}
