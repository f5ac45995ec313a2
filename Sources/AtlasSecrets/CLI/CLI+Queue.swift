import Foundation

extension CLI.Context {
    /// The migrations folder: as given when it exists, else beside the installed binary
    /// (`.build/<config>/atlas-secrets` → `../../migrations`), else ATLAS_SECRETS_MIGRATIONS_DIR.
    func migrationsDirectory(_ given: String) -> String {
        var candidates = [given]
        if let env = environment["ATLAS_SECRETS_MIGRATIONS_DIR"], !env.isEmpty { candidates.insert(env, at: 0) }
        if given == MigrateOptions().directory {
            let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            candidates.append(exe.appendingPathComponent("../../migrations").standardized.path)
            candidates.append(exe.appendingPathComponent("../../../migrations").standardized.path)
            candidates.append(exe.appendingPathComponent("../share/atlas-secrets/migrations").standardized.path)
        }
        var isDir: ObjCBool = false
        return candidates.first { FileManager.default.fileExists(atPath: $0, isDirectory: &isDir) && isDir.boolValue } ?? given
    }

    func migrate(_ o: MigrateOptions) throws {
        let directory = migrationsDirectory(o.directory)
        let migrator = Migrator(directory: directory)
        do {
            _ = try migrator.migrations()
        } catch {
            throw CommandFailure("\(error) (pass --dir DIR or set ATLAS_SECRETS_MIGRATIONS_DIR)", .dataError)
        }
        let conn = try connect()
        defer { conn.close() }
        let applied = try migrator.migrate(conn)
        for m in applied { Console.out("applied \(m.fileName)") }
        let version = try migrator.appliedVersion(conn)
        Console.out(applied.isEmpty ? "schema up to date (version \(version))" : "schema at version \(version)")
    }

    func enqueue(_ o: EnqueueOptions) throws {
        let requests = try RequestFile.load(paths: o.files)
        let batch = o.batch ?? Self.defaultBatch(o.files)
        let result: JobQueries.EnqueueResult
        do {
            let conn = try connect()
            defer { conn.close() }
            result = try JobQueries.enqueue(conn, requests, batch: batch, maxAttempts: o.maxAttempts ?? 5)
        } catch let error as JobQueries.EnqueueConflicts {
            let lines = error.conflicts.map {
                "\($0.request.file):\($0.request.line): idempotency key \($0.request.request.effectiveIdempotencyKey(batch: batch)) is already used by job \($0.existingJobId) for a different request (\($0.existing))"
            }
            throw CommandFailure((lines + ["\(lines.count) conflicting keys; nothing was queued."]).joined(separator: "\n"), .dataError)
        } catch let error as PGError where error.sqlState == .undefinedTable {
            throw CommandFailure("the database has no atlas-secrets tables: run `atlas-secrets migrate` first (\(error.message))", .unavailable)
        } catch let error as PGError where error.sqlState == .checkViolation || error.sqlState == .raiseException {
            throw CommandFailure("the database refused the requests: \(error.message); nothing was queued", .dataError)
        }
        if o.json {
            try json(result)
        } else {
            let jobs = result.inserted == 1 ? "job" : "jobs"
            var line = "enqueued \(result.inserted) new \(jobs) in batch \(batch)"
            if result.alreadyPresent > 0 {
                line += "; \(result.alreadyPresent) request\(result.alreadyPresent == 1 ? "" : "s") already had a job (same idempotency key, in any batch), left as \(result.alreadyPresent == 1 ? "it was" : "they were")"
            }
            Console.out(line)
        }
    }

    /// The batch of a run without --batch: the first file's name without extension ("stdin" for -),
    /// stable so that re-running the same file adds nothing.
    static func defaultBatch(_ files: [String]) -> String {
        guard let first = files.first, first != "-" else { return "stdin" }
        return URL(fileURLWithPath: first).deletingPathExtension().lastPathComponent
    }

    func retry(_ o: RetryOptions) throws {
        try withDatabase { conn in
            let ids = try JobQueries.retry(conn, ids: o.jobIDs.isEmpty ? nil : o.jobIDs, batch: o.batch)
            try explain(conn, requested: o.jobIDs, done: ids, verb: "requeued", allowed: "failed or cancelled jobs")
        }
    }

    func cancel(_ o: CancelOptions) throws {
        try withDatabase { conn in
            let ids = try JobQueries.cancel(conn, ids: o.jobIDs.isEmpty ? nil : o.jobIDs, batch: o.batch)
            try explain(conn, requested: o.jobIDs, done: ids, verb: "cancelled", allowed: "queued jobs not settling an unknown outcome")
        }
    }

    /// Reports what retry/cancel did, and why named jobs were left alone (exit 65 if any was).
    private func explain(_ conn: PGConnection, requested: [Int64], done: [Int64], verb: String, allowed: String) throws {
        Console.out("\(verb) \(done.count) job\(done.count == 1 ? "" : "s")\(done.isEmpty ? "" : ": " + done.prefix(50).map(String.init).joined(separator: " "))\(done.count > 50 ? " …" : "")")
        let skipped = requested.filter { !done.contains($0) }
        guard !skipped.isEmpty else { return }
        let states = try JobQueries.states(conn, ids: skipped)
        let reasons = skipped.map { id in
            states[id].map { "job \(id) is \($0.rawValue): only \(allowed) can be \(verb)" } ?? "job \(id) does not exist"
        }
        throw CommandFailure(reasons.joined(separator: "\n"), .dataError)
    }
}
