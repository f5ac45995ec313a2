import Dispatch
import Foundation
import Synchronization

extension CLI.Context {
    /// Runs the worker until SIGINT/SIGTERM (or drained). A second signal cuts the grace short.
    func worker(_ o: WorkerOptions) throws {
        let key = try key()
        let credentials: CredentialStore
        do {
            credentials = try CredentialStore.load(environment: environment, file: o.credentialsFile)
        } catch {
            throw CommandFailure("\(error)", .dataError)
        }
        if credentials.isEmpty {
            throw CommandFailure("""
                no Atlas credentials: pass --credentials FILE (or set ATLAS_SECRETS_CREDENTIALS_FILE), \
                or set MONGODB_ATLAS_CLIENT_ID and MONGODB_ATLAS_CLIENT_SECRET (or MONGODB_ATLAS_PUBLIC_API_KEY \
                and MONGODB_ATLAS_PRIVATE_API_KEY)
                """, .usage)
        }
        let level: LogLevel
        switch environment["ATLAS_SECRETS_LOG_LEVEL"]?.lowercased() {
        case nil, "", "info": level = .info
        case "debug": level = .debug
        case "warning", "warn": level = .warning
        case "error": level = .error
        case let other?:
            throw CommandFailure("ATLAS_SECRETS_LOG_LEVEL must be debug, info, warning or error, not \(other)", .usage)
        }
        var config = Worker.Configuration()
        config.databaseURL = databaseURL
        config.baseURL = baseURL
        config.concurrency = o.concurrency
        config.drain = o.drain
        config.batch = o.batch
        config.leaseSeconds = o.lease
        config.shutdownGrace = o.shutdownGrace
        config.orphanPolicy = o.orphanSecrets
        config.whenFull = o.whenFull
        config.perOrgConcurrency = o.perOrgConcurrency
        config.orgRatePerSecond = o.orgRate?.perSecond
        config.progress = o.progress || (o.drain && Console.isTerminal(2))
        if let cap = try positiveInteger("ATLAS_SECRETS_TOKEN_LIVE_CAP") { config.tokenLiveCap = cap }
        if let rate = try positiveInteger("ATLAS_SECRETS_TOKEN_FETCHES_PER_MINUTE") { config.tokenFetchesPerMinute = rate }
        let logger = Logger(format: o.logFormat, minimumLevel: level)
        let worker = Worker(configuration: config, credentials: credentials, key: key, logger: logger)

        let stoppedBySignal = SignalSeen()
        // Signals: ignore the default action, then handle them on a private queue.
        let signalQueue = DispatchQueue(label: "atlas-secrets.signals")
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: signalQueue)
            source.setEventHandler { @Sendable in
                stoppedBySignal.set()
                logger.warning("worker.signal", ["signal": sig == SIGINT ? "SIGINT" : "SIGTERM"])
                worker.requestStop()
            }
            source.resume()
            sources.append(source)
        }
        defer { sources.forEach { $0.cancel() } }
        do {
            let s = try worker.run()
            // The result of the run, for scripts and people; the log has the details.
            Console.out("\(o.drain && !stoppedBySignal.value ? "drained" : "stopped"): \(s.succeeded) succeeded, \(s.failed) failed, \(s.retried) retried, \(s.superseded) superseded, in \(String(format: "%.1f", s.seconds)) s")
        } catch let error as PGError where error.isConnectionError {
            throw CommandFailure("cannot reach PostgreSQL (DATABASE_URL\(databaseURL == nil ? " unset: using libpq's PG* variables" : "")): \(error.message)", .unavailable)
        } catch let error as WorkerError {
            throw CommandFailure(error.description, .unavailable)
        }
    }
}

extension CLI.Context {
    /// An environment variable holding a whole number > 0 (nil: unset or empty).
    fileprivate func positiveInteger(_ name: String) throws -> Int? {
        guard let text = environment[name]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
        guard let value = Int(text), value > 0 else {
            throw CommandFailure("\(name) must be a whole number greater than 0, not \(text)", .usage)
        }
        return value
    }
}

/// Whether a stop signal arrived (so the exit line says "stopped", not "drained").
private final class SignalSeen: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .relaxed) }
    var value: Bool { flag.load(ordering: .relaxed) }
}
