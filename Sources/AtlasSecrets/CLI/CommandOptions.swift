/// The options of one subcommand: declared once in `spec`, parsed by `init(_:)`, checked by `validate()`.
public protocol CommandOptions: Sendable, Equatable {
    /// The declaration that parsing and `--help` both read.
    static var spec: CommandSpec { get }
    /// The options with every default.
    init()
    /// Reads the typed values out of `arguments`; throws on a malformed value.
    init(_ arguments: ParsedArguments) throws(UsageError)
    /// Checks the combination of values (e.g. ids and `--batch` together); throws a `UsageError`.
    func validate() throws(UsageError)
}

extension CommandOptions {
    /// No cross-option rules by default.
    public func validate() throws(UsageError) {}

    /// A usage error for this command.
    public static func usageError(_ message: String) -> UsageError {
        UsageError(message: message, usage: spec.usage, command: spec.name)
    }
}

/// `migrate [--dir DIR]`: apply pending migrations.
public struct MigrateOptions: CommandOptions {
    /// The folder holding the numbered `.sql` files.
    public var directory = "migrations"

    /// Every option at its default.
    public init() {}

    /// The declaration parsing and `--help` read.
    public static let spec = CommandSpec(
        name: "migrate", abstract: "Apply pending database migrations.",
        discussion: "Applies each numbered SQL file of DIR once, in order, under an advisory lock; safe when several processes start together. DIR: --dir, else ATLAS_SECRETS_MIGRATIONS_DIR, else ./migrations, else the migrations folder beside the binary. Database: DATABASE_URL.",
        options: [.value("dir", "DIR", "Folder of numbered .sql migration files.", default: Self().directory)]
    )

    /// Reads the typed values; throws on a malformed one.
    public init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.expectNoPositionals()
        if let dir = try arguments.string("dir") { directory = dir }
    }
}

/// `enqueue FILE… [--batch NAME] [--max-attempts N] [--json]`: queue the requests of files.
public struct EnqueueOptions: CommandOptions {
    /// Request files in order; `-` is standard input.
    public var files: [String] = []
    /// The batch name, or nil to let the command choose one.
    public var batch: String?
    /// Attempts each job may spend, or nil for the database default.
    public var maxAttempts: Int?
    /// Print the result as JSON.
    public var json = false

    /// Every option at its default.
    public init() {}

    /// The declaration parsing and `--help` read.
    public static let spec = CommandSpec(
        name: "enqueue", abstract: "Queue the requests of JSON Lines or CSV files.",
        discussion: "Validates every line of every file first and reports all bad lines; queues all or nothing. Idempotency keys make running the same file again harmless. The batch defaults to the first file's name without extension ('stdin' for -); --max-attempts to 5. Database: DATABASE_URL.",
        arguments: [ArgumentSpec("FILE", "A .jsonl/.ndjson/.json (JSON Lines) or .csv file; '-' reads standard input.", repeating: true)],
        options: [
            .value("batch", "NAME", "Name of the batch the jobs belong to."),
            .value("max-attempts", "N", "Attempts each job may spend, 1...100."),
            .flag("json", "Print the result as JSON."),
        ]
    )

    /// Reads the typed values; throws on a malformed one.
    public init(_ arguments: ParsedArguments) throws(UsageError) {
        files = arguments.positionals
        batch = try arguments.batchName("batch")
        maxAttempts = try arguments.int("max-attempts", in: 1...100)
        json = arguments.flag("json")
    }

    /// Checks the combination of options.
    public func validate() throws(UsageError) {
        if files.isEmpty { throw Self.usageError("missing request file (FILE, or '-' for standard input)") }
        if files.filter({ $0 == "-" }).count > 1 { throw Self.usageError("standard input ('-') can be read only once") }
    }
}

/// `worker …`: process jobs until SIGINT/SIGTERM (or until drained).
public struct WorkerOptions: CommandOptions {
    /// Jobs in flight at once, 1...512.
    public var concurrency = 16
    /// Exit when nothing is runnable or scheduled soon.
    public var drain = false
    /// Credentials file (org id → credential), or nil for `ATLAS_SECRETS_CREDENTIALS_FILE` / the environment.
    public var credentialsFile: String?
    /// Seconds in-flight calls get to finish after SIGINT/SIGTERM.
    public var shutdownGrace: Double = 20
    /// What to do with a secret created by a lost attempt.
    public var orphanSecrets: OrphanPolicy = .revoke
    /// What to do when a service account already holds two secrets.
    public var whenFull: WhenFullPolicy = .fail
    /// Request rate limit per organization, or nil for none.
    public var orgRate: OrgRate?
    /// Jobs in flight per organization, or nil for no limit below `concurrency`.
    public var perOrgConcurrency: Int?
    /// Log line format.
    public var logFormat: LogFormat = .text
    /// Lease length in seconds; the heartbeat renews it.
    public var lease: Double = 30
    /// Show progress on stderr: a bar on a terminal, a line every few seconds otherwise (on by default with --drain on a terminal).
    public var progress = false
    /// Only jobs of this batch (with `--drain`), or nil for all.
    public var batch: String?

    /// Every option at its default.
    public init() {}

    /// The declaration parsing and `--help` read.
    public static let spec = CommandSpec(
        name: "worker", abstract: "Process queued jobs until SIGINT/SIGTERM, or until drained.",
        discussion: "Claims jobs from PostgreSQL and creates their secrets through the Atlas Admin API with bounded concurrency, retrying safely. Needs ATLAS_SECRETS_KEY_FILE, credentials (--credentials, ATLAS_SECRETS_CREDENTIALS_FILE or MONGODB_ATLAS_*), DATABASE_URL, and MONGODB_ATLAS_BASE_URL for anything but the real Atlas (e.g. atlas-sim).",
        options: [
            .value("concurrency", "N", "Jobs in flight at once, 1...512.", default: String(Self().concurrency)),
            .flag("drain", "Exit when nothing is runnable or scheduled soon."),
            .value("credentials", "FILE", "JSON file mapping org id to credential (mode 0600); else ATLAS_SECRETS_CREDENTIALS_FILE or MONGODB_ATLAS_* variables."),
            .value("shutdown-grace", "SECONDS", "Time in-flight calls get to finish after SIGINT/SIGTERM.", default: ParsedArguments.format(Self().shutdownGrace)),
            .value("orphan-secrets", "revoke|keep", "What to do with a secret created by a lost attempt.", default: Self().orphanSecrets.rawValue),
            .value("when-full", "fail|revoke-oldest", "What to do when the service account already holds two secrets.", default: Self().whenFull.rawValue),
            .value("org-rate", "N/min", "Jobs started per organization per minute, across all workers (also N/s, N/h)."),
            .value("per-org-concurrency", "N", "Jobs in flight per organization, 1...512."),
            .value("log-format", "text|json", "Log line format on stderr.", default: Self().logFormat.rawValue),
            .value("lease", "SECONDS", "Lease on a claimed job, renewed by the heartbeat, 5...3600.", default: ParsedArguments.format(Self().lease)),
            .flag("progress", "Show progress on stderr: a bar on a terminal, else a line every few seconds (default with --drain on a terminal)."),
            .value("batch", "B", "Only process jobs of this batch (with --drain)."),
        ]
    )

    /// Reads the typed values; throws on a malformed one.
    public init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.expectNoPositionals()
        if let v = try arguments.int("concurrency", in: 1...512) { concurrency = v }
        drain = arguments.flag("drain")
        credentialsFile = try arguments.string("credentials")
        if let v = try arguments.seconds("shutdown-grace", in: 0...3600) { shutdownGrace = v }
        if let v = try arguments.choice("orphan-secrets", as: OrphanPolicy.self) { orphanSecrets = v }
        if let v = try arguments.choice("when-full", as: WhenFullPolicy.self) { whenFull = v }
        if let text = try arguments.string("org-rate") {
            guard let rate = OrgRate(parsing: text) else {
                throw arguments.error("option '--org-rate' must look like 100/min, 2/s or 5000/h, got '\(text)'")
            }
            orgRate = rate
        }
        perOrgConcurrency = try arguments.int("per-org-concurrency", in: 1...512)
        if let v = try arguments.choice("log-format", as: LogFormat.self) { logFormat = v }
        if let v = try arguments.seconds("lease", in: 5...3600) { lease = v }
        progress = arguments.flag("progress")
        batch = try arguments.batchName("batch")
    }

    /// Checks the combination of options.
    public func validate() throws(UsageError) {
        if batch != nil && !drain { throw Self.usageError("option '--batch' needs '--drain'") }
    }
}

/// `status [--batch B] [--org O] [--json]`: counts by state, progress, rates, top errors.
public struct StatusOptions: CommandOptions {
    /// Only this batch, or nil for all.
    public var batch: String?
    /// Only this organization, or nil for all.
    public var org: String?
    /// Print the result as JSON.
    public var json = false

    /// Every option at its default.
    public init() {}

    /// The declaration parsing and `--help` read.
    public static let spec = CommandSpec(
        name: "status", abstract: "Show counts by state, progress, rates and top error codes.",
        options: [
            .value("batch", "B", "Only jobs of this batch."),
            .value("org", "O", "Only jobs of this organization id."),
            .flag("json", "Print the result as JSON."),
        ]
    )

    /// Reads the typed values; throws on a malformed one.
    public init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.expectNoPositionals()
        batch = try arguments.batchName("batch")
        org = try arguments.orgId("org")
        json = arguments.flag("json")
    }
}

/// `list [--state S] [--batch B] [--org O] [--limit N] [--json]`: jobs, one a line.
public struct ListOptions: CommandOptions {
    /// Only jobs in this state, or nil for all.
    public var state: JobState?
    /// Only this batch, or nil for all.
    public var batch: String?
    /// Only this organization, or nil for all.
    public var org: String?
    /// At most this many jobs.
    public var limit = 50
    /// Print the result as JSON.
    public var json = false

    /// Every option at its default.
    public init() {}

    /// The declaration parsing and `--help` read.
    public static let spec = CommandSpec(
        name: "list", abstract: "List jobs, one a line.",
        options: [
            .value("state", "S", "Only jobs in this state: " + JobState.allCases.map(\.rawValue).joined(separator: "|") + "."),
            .value("batch", "B", "Only jobs of this batch."),
            .value("org", "O", "Only jobs of this organization id."),
            .value("limit", "N", "At most N jobs, 1...100000.", default: String(Self().limit)),
            .flag("json", "Print the result as JSON."),
        ]
    )

    /// Reads the typed values; throws on a malformed one.
    public init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.expectNoPositionals()
        state = try arguments.choice("state", as: JobState.self)
        batch = try arguments.batchName("batch")
        org = try arguments.orgId("org")
        if let v = try arguments.int("limit", in: 1...100_000) { limit = v }
        json = arguments.flag("json")
    }
}

/// `show JOB_ID [--json]`: one job with its attempt history (masked secret only).
public struct ShowOptions: CommandOptions {
    /// The job to show.
    public var jobID: Int64 = 0
    /// Print the result as JSON.
    public var json = false

    /// Every option at its default.
    public init() {}

    /// The declaration parsing and `--help` read.
    public static let spec = CommandSpec(
        name: "show", abstract: "Show one job with its attempt history (masked secret only).",
        arguments: [ArgumentSpec("JOB_ID", "The job's id.")],
        options: [.flag("json", "Print the result as JSON.")]
    )

    /// Reads the typed values; throws on a malformed one.
    public init(_ arguments: ParsedArguments) throws(UsageError) {
        jobID = try arguments.singleJobID()
        json = arguments.flag("json")
    }
}

/// `retry JOB_ID…` or `retry --failed [--batch B]`: put jobs back in the queue.
public struct RetryOptions: CommandOptions {
    /// The jobs to requeue (empty with `failed`).
    public var jobIDs: [Int64] = []
    /// Requeue every failed job (of `batch` when given).
    public var failed = false
    /// With `failed`: only this batch.
    public var batch: String?

    /// Every option at its default.
    public init() {}

    /// The declaration parsing and `--help` read.
    public static let spec = CommandSpec(
        name: "retry", abstract: "Put failed or cancelled jobs back in the queue.",
        arguments: [ArgumentSpec("JOB_ID", "A job to requeue.", repeating: true)],
        options: [
            .flag("failed", "Requeue every failed job."),
            .value("batch", "B", "With --failed: only jobs of this batch."),
        ],
        usageForms: ["JOB_ID…", "--failed [--batch B]"]
    )

    /// Reads the typed values; throws on a malformed one.
    public init(_ arguments: ParsedArguments) throws(UsageError) {
        jobIDs = try arguments.jobIDs()
        failed = arguments.flag("failed")
        batch = try arguments.batchName("batch")
    }

    /// Checks the combination of options.
    public func validate() throws(UsageError) {
        if jobIDs.isEmpty && !failed { throw Self.usageError("give job ids or --failed") }
        if !jobIDs.isEmpty && failed { throw Self.usageError("give job ids or --failed, not both") }
        if batch != nil && !failed { throw Self.usageError("option '--batch' needs '--failed'") }
    }
}

/// `cancel JOB_ID…` or `cancel --batch B`: cancel jobs that have not started.
public struct CancelOptions: CommandOptions {
    /// The jobs to cancel (empty with `batch`).
    public var jobIDs: [Int64] = []
    /// Cancel every queued job of this batch.
    public var batch: String?

    /// Every option at its default.
    public init() {}

    /// The declaration parsing and `--help` read.
    public static let spec = CommandSpec(
        name: "cancel", abstract: "Cancel jobs that have not started.",
        arguments: [ArgumentSpec("JOB_ID", "A job to cancel.", repeating: true)],
        options: [.value("batch", "B", "Cancel every queued job of this batch.")],
        usageForms: ["JOB_ID…", "--batch B"]
    )

    /// Reads the typed values; throws on a malformed one.
    public init(_ arguments: ParsedArguments) throws(UsageError) {
        jobIDs = try arguments.jobIDs()
        batch = try arguments.batchName("batch")
    }

    /// Checks the combination of options.
    public func validate() throws(UsageError) {
        if jobIDs.isEmpty && batch == nil { throw Self.usageError("give job ids or --batch") }
        if !jobIDs.isEmpty && batch != nil { throw Self.usageError("give job ids or --batch, not both") }
    }
}

/// `reveal JOB_ID`: print the decrypted secret to stdout.
public struct RevealOptions: CommandOptions {
    /// The job whose secret to print.
    public var jobID: Int64 = 0

    /// Every option at its default.
    public init() {}

    /// The declaration parsing and `--help` read.
    public static let spec = CommandSpec(
        name: "reveal", abstract: "Print a job's secret, decrypted, to stdout: the one way to read it.",
        discussion: "Decrypts with the key in ATLAS_SECRETS_KEY_FILE (the one the worker used).",
        arguments: [ArgumentSpec("JOB_ID", "The job's id.")]
    )

    /// Reads the typed values; throws on a malformed one.
    public init(_ arguments: ParsedArguments) throws(UsageError) {
        jobID = try arguments.singleJobID()
    }
}

/// `keygen PATH`: write a new AES-256 key file, mode 0600.
public struct KeygenOptions: CommandOptions {
    /// Where to write the key file.
    public var path = ""

    /// Every option at its default.
    public init() {}

    /// The declaration parsing and `--help` read.
    public static let spec = CommandSpec(
        name: "keygen", abstract: "Write a new encryption key file, mode 0600.",
        arguments: [ArgumentSpec("PATH", "Where to write the key file.")]
    )

    /// Reads the typed values; throws on a malformed one.
    public init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.count == 1, let path = arguments.positionals.first, !path.isEmpty else {
            throw arguments.error(arguments.positionals.isEmpty ? "missing PATH" : "expected one PATH, got \(arguments.positionals.count) arguments")
        }
        self.path = path
    }
}

extension ParsedArguments {
    /// Exactly one positional job id.
    func singleJobID() throws(UsageError) -> Int64 {
        let ids = try jobIDs()
        guard ids.count == 1 else {
            throw error(ids.isEmpty ? "missing JOB_ID" : "expected one JOB_ID, got \(ids.count)")
        }
        return ids[0]
    }
}
