import Foundation

extension CLI.Context {
    func status(_ o: StatusOptions) throws {
        let s = try withDatabase { conn in try JobQueries.status(conn, batch: o.batch, org: o.org) }
        if o.json { return try json(s) }
        let c = s.counts
        if c.total == 0 {
            let scope = [o.batch.map { "batch \($0)" }, o.org.map { "org \($0)" }].compactMap { $0 }.joined(separator: ", ")
            Console.out(scope.isEmpty ? "no jobs yet" : "no jobs in \(scope)")
            return
        }
        let scope = [o.batch.map { "batch \($0)" }, o.org.map { "org \($0)" }].compactMap { $0 }.joined(separator: ", ")
        var out = ""
        let percent = c.total == 0 ? 100 : Int((Double(c.done) / Double(c.total) * 100).rounded(.down))
        out += "\(scope.isEmpty ? "all jobs" : scope): \(c.done) of \(c.total) done (\(percent) %)"
        // A count, not a rate: a 4-second drain a minute ago is not "9 jobs/s".
        out += ", \(Int((s.ratePerSecond * 60).rounded())) finished in the last minute"
        if let age = s.oldestQueuedSeconds { out += String(format: ", oldest runnable job waiting %.0f s", age) }
        out += "\n\n"
        var t = Table(["state", "jobs"])
        for (name, n) in [("queued", c.queued), ("running", c.running), ("succeeded", c.succeeded), ("failed", c.failed), ("cancelled", c.cancelled)] {
            t.append([color ? Style.state(JobState(rawValue: name)!, enabled: true) : name, "\(n)"])
        }
        out += t.render(color: color)
        if !s.topErrors.isEmpty {
            var e = Table(["failed with", "jobs"])
            for err in s.topErrors { e.append([err.code, "\(err.count)"]) }
            out += "\n" + e.render(color: color)
        }
        // Organizations with work left (or held back); finished ones are only counted.
        let active = s.orgs.filter { $0.counts.queued + $0.counts.running > 0 || $0.throttledUntil != nil || $0.pausedReason != nil }
        if !active.isEmpty {
            var t = Table(["org", "queued", "running", "succeeded", "failed", "cancelled", "throttled until", "paused"])
            for org in active.prefix(100) {
                t.append([org.orgId, "\(org.counts.queued)", "\(org.counts.running)", "\(org.counts.succeeded)",
                          "\(org.counts.failed)", "\(org.counts.cancelled)",
                          org.throttledUntil.map { ISO8601.string(from: $0) } ?? "-", org.pausedReason ?? "-"])
            }
            out += "\n" + t.render(color: color)
            if active.count > 100 { out += "… and \(active.count - 100) more organizations with work (use --org or --json)\n" }
        }
        out += "\n\(s.orgs.count) organization\(s.orgs.count == 1 ? "" : "s"), \(active.count) with work left\n"
        Console.out(out, terminator: "")
    }

    func list(_ o: ListOptions) throws {
        let jobs = try withDatabase { conn in try JobQueries.list(conn, state: o.state, batch: o.batch, org: o.org, limit: o.limit) }
        if o.json { return try json(jobs.map(JobView.init)) }
        var t = Table(["id", "state", "batch", "org", "client", "hours", "attempts", "secret", "last error"])
        for j in jobs {
            t.append(["\(j.id)", color ? Style.state(j.state, enabled: true) : j.state.rawValue, j.batch, j.orgId, j.clientId,
                      "\(j.expiresAfterHours)", "\(j.attempts)/\(j.maxAttempts)", j.maskedSecret ?? "-",
                      j.lastErrorCode.map { $0 + (j.lastHTTPStatus.map { " (HTTP \($0))" } ?? "") } ?? "-"])
        }
        Console.out(t.render(color: color), terminator: "")
    }

    func show(_ o: ShowOptions) throws {
        let found = try withDatabase { conn in try JobQueries.show(conn, id: o.jobID) }
        guard let (job, attempts) = found else { throw CommandFailure("job \(o.jobID) does not exist", .dataError) }
        let view = JobView(job, attempts: attempts)
        if o.json { return try json(view) }
        func date(_ d: Date?) -> String { d.map { ISO8601.string(from: $0) } ?? "-" }
        var rows: [(String, String)] = [
            ("job", "\(job.id)"), ("state", job.state.rawValue), ("batch", job.batch), ("org", job.orgId),
            ("client", job.clientId), ("expires after", "\(job.expiresAfterHours) hours"),
            ("idempotency key", job.idempotencyKey), ("priority", "\(job.priority)"),
            ("attempts", "\(job.attempts) of \(job.maxAttempts)"), ("created", date(job.createdAt)),
            ("run at", date(job.runAt)), ("finished", date(job.finishedAt)),
        ]
        if let owner = job.leaseOwner { rows.append(("lease", "\(owner) until \(date(job.leaseExpiresAt))")) }
        if job.state == .succeeded {
            rows += [("secret id", job.secretId ?? "-"), ("secret (masked)", job.maskedSecret ?? "-"),
                     ("secret created", date(job.secretCreatedAt)), ("secret expires", date(job.secretExpiresAt)),
                     ("encrypted with key", job.secretKeyId ?? "-")]
        }
        if let code = job.lastErrorCode {
            rows.append(("last error", "\(code)\(job.lastHTTPStatus.map { " (HTTP \($0))" } ?? ""): \(job.lastErrorDetail ?? "")"))
        }
        rows.append(("orphan secrets", job.orphanPolicy.map { "\($0) (policy of the worker that ran it)" } ?? "-"))
        for r in view.revokedSecrets {
            rows.append(((r["action"] ?? "revoked") == "kept" ? "orphan kept" : "revoked", "\(r["id"] ?? "?") at \(r["at"] ?? "?"): \(r["reason"] ?? "")"))
        }
        for s in view.shortenedSecrets {
            rows.append(("shortened", "older secret \(s["id"] ?? "?") now expires by \(s["expiresAt"] ?? "?") (Atlas shortens older secrets to 7 days)"))
        }
        if job.needsReconcile { rows.append(("reconcile", "the last attempt's outcome is unknown; the next attempt checks the account first")) }
        let width = rows.map(\.0.count).max() ?? 0
        var out = rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n") + "\n"
        if !attempts.isEmpty {
            var t = Table(["attempt", "owner", "started", "outcome", "status", "error", "ms", "detail"])
            for a in attempts {
                t.append(["\(a.attempt)", a.owner, date(a.startedAt), a.outcome, a.httpStatus.map(String.init) ?? "-",
                          a.errorCode ?? "-", a.durationMs.map(String.init) ?? "-", a.detail.map { $0.count > 100 ? String($0.prefix(99)) + "…" : $0 } ?? "-"])
            }
            out += "\n" + t.render(color: color)
        }
        Console.out(out, terminator: "")
    }
}

/// A job as `list --json` and `show --json` print it (the masked secret only, never the value).
struct JobView: Encodable {
    var id: Int64
    var state: String
    var batch: String
    var orgId: String
    var clientId: String
    var secretExpiresAfterHours: Int
    var idempotencyKey: String
    var priority: Int
    var attempts: Int
    var maxAttempts: Int
    var runAt: Date
    var createdAt: Date
    var finishedAt: Date?
    var leaseOwner: String?
    var leaseExpiresAt: Date?
    var secretId: String?
    var maskedSecret: String?
    var secretCreatedAt: Date?
    var secretExpiresAt: Date?
    var secretKeyId: String?
    var lastErrorCode: String?
    var lastErrorDetail: String?
    var lastHttpStatus: Int?
    var needsReconcile: Bool
    var orphanPolicy: String?
    var revokedSecrets: [[String: String]]
    var shortenedSecrets: [[String: String]]
    var history: [AttemptView]?

    struct AttemptView: Encodable {
        var attempt: Int
        var owner: String
        var startedAt: Date
        var finishedAt: Date?
        var outcome: String
        var httpStatus: Int?
        var errorCode: String?
        var detail: String?
        var durationMs: Int?
        var secretId: String?
    }

    init(_ j: Job) { self.init(j, attempts: nil) }

    init(_ j: Job, attempts: [JobAttempt]?) {
        func decode(_ text: String) -> [[String: String]] {
            (try? JSONDecoder().decode([[String: String]].self, from: Data(text.utf8))) ?? []
        }
        id = j.id; state = j.state.rawValue; batch = j.batch; orgId = j.orgId; clientId = j.clientId
        secretExpiresAfterHours = j.expiresAfterHours; idempotencyKey = j.idempotencyKey; priority = j.priority
        self.attempts = j.attempts; maxAttempts = j.maxAttempts; runAt = j.runAt; createdAt = j.createdAt
        finishedAt = j.finishedAt; leaseOwner = j.leaseOwner; leaseExpiresAt = j.leaseExpiresAt; secretId = j.secretId
        maskedSecret = j.maskedSecret; secretCreatedAt = j.secretCreatedAt; secretExpiresAt = j.secretExpiresAt
        secretKeyId = j.secretKeyId; lastErrorCode = j.lastErrorCode; lastErrorDetail = j.lastErrorDetail
        lastHttpStatus = j.lastHTTPStatus; needsReconcile = j.needsReconcile; orphanPolicy = j.orphanPolicy
        revokedSecrets = decode(j.revokedSecrets); shortenedSecrets = decode(j.shortenedSecrets)
        history = attempts?.map {
            AttemptView(attempt: $0.attempt, owner: $0.owner, startedAt: $0.startedAt, finishedAt: $0.finishedAt,
                        outcome: $0.outcome, httpStatus: $0.httpStatus, errorCode: $0.errorCode, detail: $0.detail,
                        durationMs: $0.durationMs, secretId: $0.secretId)
        }
    }
}
