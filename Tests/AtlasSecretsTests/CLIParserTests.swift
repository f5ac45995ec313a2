import Testing
@testable import AtlasSecrets

/// Parses and returns the usage error's message, or records a failure if parsing succeeded.
private func usageMessage(_ arguments: [String]) -> String? {
    do {
        let command = try CommandLineParser.parse(arguments)
        Issue.record("expected a usage error for \(arguments), got \(command)")
        return nil
    } catch {
        return error.message
    }
}

@Suite struct CLIParserTests {
    @Test func workerDefaultsMatchTheContract() throws {
        let command = try CommandLineParser.parse(["worker"])
        guard case .worker(let options) = command else { Issue.record("not worker: \(command)"); return }
        #expect(options.concurrency == 16)
        #expect(options.shutdownGrace == 20)
        #expect(options.orphanSecrets == .revoke)
        #expect(options.whenFull == .fail)
        #expect(options.orgRate == nil)
        #expect(options.logFormat == .text)
        #expect(options.lease == 30)
        #expect(!options.drain && !options.progress && options.batch == nil)
    }

    @Test func workerEveryFlagInBothForms() throws {
        let spaced = try CommandLineParser.parse([
            "worker", "--concurrency", "64", "--drain", "--credentials", "creds.json", "--shutdown-grace", "2.5",
            "--orphan-secrets", "keep", "--when-full", "revoke-oldest", "--org-rate", "120/min",
            "--per-org-concurrency", "4", "--log-format", "json", "--lease", "10",
            "--progress", "--batch", "b1",
        ])
        let joined = try CommandLineParser.parse([
            "worker", "--concurrency=64", "--drain", "--credentials=creds.json", "--shutdown-grace=2.5",
            "--orphan-secrets=keep", "--when-full=revoke-oldest", "--org-rate=120/min",
            "--per-org-concurrency=4", "--log-format=json", "--lease=10",
            "--progress", "--batch=b1",
        ])
        var expected = WorkerOptions()
        expected.concurrency = 64
        expected.drain = true
        expected.credentialsFile = "creds.json"
        expected.shutdownGrace = 2.5
        expected.orphanSecrets = .keep
        expected.whenFull = .revokeOldest
        expected.orgRate = OrgRate(perSecond: 2)
        expected.perOrgConcurrency = 4
        expected.logFormat = .json
        expected.lease = 10
        expected.progress = true
        expected.batch = "b1"
        #expect(spaced == .worker(expected))
        #expect(joined == .worker(expected))
    }

    @Test func orgRateUnits() {
        #expect(OrgRate(parsing: "120/min")?.perSecond == 2)
        #expect(OrgRate(parsing: "3/s")?.perSecond == 3)
        #expect(OrgRate(parsing: "7200/h")?.perSecond == 2)
        #expect(OrgRate(parsing: "0/min") == nil)
        #expect(OrgRate(parsing: "10") == nil)
        #expect(OrgRate(parsing: "10/day") == nil)
        #expect(OrgRate(perSecond: 2).description == "120/min")
    }

    @Test func invalidValuesNameTheOptionAndValue() {
        #expect(usageMessage(["worker", "--concurrency", "0"]) == "option '--concurrency' must be an integer in 1...512, got '0'")
        #expect(usageMessage(["worker", "--concurrency=513"]) == "option '--concurrency' must be an integer in 1...512, got '513'")
        #expect(usageMessage(["worker", "--concurrency", "many"]) == "option '--concurrency' must be an integer in 1...512, got 'many'")
        #expect(usageMessage(["worker", "--orphan-secrets", "delete"]) == "option '--orphan-secrets' must be one of revoke|keep, got 'delete'")
        #expect(usageMessage(["worker", "--org-rate", "fast"]) == "option '--org-rate' must look like 100/min, 2/s or 5000/h, got 'fast'")
        #expect(usageMessage(["worker", "--shutdown-grace", "-1"]) == "option '--shutdown-grace' must be a number of seconds in 0...3600, got '-1'")
        #expect(usageMessage(["list", "--state", "done"]) == "option '--state' must be one of queued|running|succeeded|failed|cancelled, got 'done'")
        #expect(usageMessage(["status", "--org", "abc"]) == "option '--org': 'abc' is not an organization id (24 lowercase hex characters)")
        #expect(usageMessage(["enqueue", "a.jsonl", "--batch="]) == "option '--batch' needs a non-empty value")
    }

    @Test func unknownOptionSuggestsTheNearest() {
        #expect(usageMessage(["worker", "--concurency", "4"]) == "unknown option '--concurency'; did you mean '--concurrency'?")
        #expect(usageMessage(["list", "--limt=3"]) == "unknown option '--limt'; did you mean '--limit'?")
        #expect(usageMessage(["status", "--frobnicate"]) == "unknown option '--frobnicate'")
        #expect(usageMessage(["status", "-x"]) == "unknown option '-x'")
    }

    @Test func missingValueAndMisusedFlag() {
        #expect(usageMessage(["enqueue", "a.jsonl", "--batch"]) == "option '--batch' needs a value (--batch NAME)")
        #expect(usageMessage(["worker", "--concurrency", "--drain"]) == "option '--concurrency' needs a value (--concurrency N)")
        #expect(usageMessage(["worker", "--drain=yes"]) == "option '--drain' takes no value, got '--drain=yes'")
        #expect(usageMessage(["worker", "--lease", "10", "--lease", "20"]) == "option '--lease' is given more than once")
    }

    @Test func unknownCommandSuggests() throws {
        #expect(usageMessage(["wroker"]) == "unknown command 'wroker'; did you mean 'worker'?")
        #expect(usageMessage(["frobnicate"]) == "unknown command 'frobnicate'")
        #expect(usageMessage([]) == "missing command")
        do {
            _ = try CommandLineParser.parse(["wroker"])
        } catch {
            #expect(error.exitCode == .usage)
            #expect(error.description.contains("Usage: atlas-secrets <command> [options]"))
        }
    }

    @Test func enqueueFilesAndStdin() throws {
        var expected = EnqueueOptions()
        expected.files = ["a.jsonl", "-", "b.csv"]
        expected.batch = "nightly"
        expected.maxAttempts = 7
        expected.json = true
        #expect(try CommandLineParser.parse(["enqueue", "a.jsonl", "-", "--batch", "nightly", "b.csv", "--max-attempts=7", "--json"]) == .enqueue(expected))
        #expect(usageMessage(["enqueue"]) == "missing request file (FILE, or '-' for standard input)")
        #expect(usageMessage(["enqueue", "-", "-"]) == "standard input ('-') can be read only once")
        var dashed = EnqueueOptions()
        dashed.files = ["--weird.jsonl"]
        #expect(try CommandLineParser.parse(["enqueue", "--", "--weird.jsonl"]) == .enqueue(dashed))
    }

    @Test func listStatusShowAndFilters() throws {
        var list = ListOptions()
        list.state = .failed
        list.batch = "b"
        list.org = "4888442a3354817a7320eb61"
        list.limit = 10
        list.json = true
        #expect(try CommandLineParser.parse(["list", "--state", "failed", "--batch", "b", "--org", "4888442a3354817a7320eb61", "--limit", "10", "--json"]) == .list(list))
        #expect(try CommandLineParser.parse(["list"]) == .list(ListOptions()))
        #expect(ListOptions().limit == 50)
        var show = ShowOptions()
        show.jobID = 42
        show.json = true
        #expect(try CommandLineParser.parse(["show", "42", "--json"]) == .show(show))
        #expect(usageMessage(["show"]) == "missing JOB_ID")
        #expect(usageMessage(["show", "1", "2"]) == "expected one JOB_ID, got 2")
        #expect(usageMessage(["status", "extra"]) == "unexpected argument 'extra'")
    }

    @Test func badJobIDIsNamed() {
        #expect(usageMessage(["show", "abc"]) == "job id 'abc' is not a positive integer")
        #expect(usageMessage(["retry", "1", "x2", "3"]) == "job id 'x2' is not a positive integer")
        #expect(usageMessage(["cancel", "-5"]) == "job id '-5' is not a positive integer")
        #expect(usageMessage(["reveal", "0"]) == "job id '0' is not a positive integer")
    }

    @Test func retryForms() throws {
        var ids = RetryOptions()
        ids.jobIDs = [3, 9]
        #expect(try CommandLineParser.parse(["retry", "3", "9"]) == .retry(ids))
        var failed = RetryOptions()
        failed.failed = true
        failed.batch = "b"
        #expect(try CommandLineParser.parse(["retry", "--failed", "--batch", "b"]) == .retry(failed))
        #expect(usageMessage(["retry"]) == "give job ids or --failed")
        #expect(usageMessage(["retry", "3", "--failed"]) == "give job ids or --failed, not both")
        #expect(usageMessage(["retry", "3", "--batch", "b"]) == "option '--batch' needs '--failed'")
    }

    @Test func cancelForms() throws {
        var ids = CancelOptions()
        ids.jobIDs = [5]
        #expect(try CommandLineParser.parse(["cancel", "5"]) == .cancel(ids))
        var batch = CancelOptions()
        batch.batch = "b"
        #expect(try CommandLineParser.parse(["cancel", "--batch=b"]) == .cancel(batch))
        #expect(usageMessage(["cancel"]) == "give job ids or --batch")
        #expect(usageMessage(["cancel", "5", "--batch", "b"]) == "give job ids or --batch, not both")
    }

    @Test func workerBatchNeedsDrain() {
        #expect(usageMessage(["worker", "--batch", "b"]) == "option '--batch' needs '--drain'")
    }

    @Test func migrateKeygenReveal() throws {
        #expect(try CommandLineParser.parse(["migrate"]) == .migrate(MigrateOptions()))
        #expect(MigrateOptions().directory == "migrations")
        var migrate = MigrateOptions()
        migrate.directory = "db/sql"
        #expect(try CommandLineParser.parse(["migrate", "--dir", "db/sql"]) == .migrate(migrate))
        var keygen = KeygenOptions()
        keygen.path = "secrets.key"
        #expect(try CommandLineParser.parse(["keygen", "secrets.key"]) == .keygen(keygen))
        #expect(usageMessage(["keygen"]) == "missing PATH")
        var reveal = RevealOptions()
        reveal.jobID = 12
        #expect(try CommandLineParser.parse(["reveal", "12"]) == .reveal(reveal))
    }

    @Test func usageErrorCarriesTheCommandsUsageLine() {
        do {
            _ = try CommandLineParser.parse(["show", "x"])
            Issue.record("expected an error")
        } catch {
            #expect(error.usage == "atlas-secrets show JOB_ID [--json]")
            #expect(error.description == "Error: job id 'x' is not a positive integer\nUsage: atlas-secrets show JOB_ID [--json]\n  See 'atlas-secrets show --help' for more information.")
        }
    }

    @Test func exitCodes() {
        #expect(ExitCode.success.rawValue == 0)
        #expect(ExitCode.failure.rawValue == 1)
        #expect(ExitCode.usage.rawValue == 64)
        #expect(ExitCode.dataError.rawValue == 65)
        #expect(ExitCode.unavailable.rawValue == 69)
        #expect(ExitCode.forError(UsageError(message: "m", usage: "u")) == .usage)
        #expect(ExitCode.forError(RequestFileErrors([])) == .dataError)
        #expect(ExitCode.forError(ExitCode.unavailable) == .unavailable)
        struct Other: Error {}
        #expect(ExitCode.forError(Other()) == .failure)
    }
}

@Suite struct CLIHelpTests {
    @Test func rootHelpListsEveryCommand() throws {
        guard case .help(let text) = try CommandLineParser.parse(["--help"]) else { Issue.record("no help"); return }
        for spec in CommandLineParser.commands {
            #expect(text.contains("  \(spec.name)"), "root help lacks \(spec.name)")
            #expect(text.contains(spec.abstract.prefix(30)), "root help lacks the summary of \(spec.name)")
        }
        #expect(try CommandLineParser.parse(["-h"]) == .help(text))
        #expect(try CommandLineParser.parse(["help"]) == .help(text))
    }

    @Test func everyCommandHelpShowsEveryFlagAndDefault() throws {
        for spec in CommandLineParser.commands {
            guard case .help(let text) = try CommandLineParser.parse([spec.name, "--help"]) else {
                Issue.record("\(spec.name) --help gave no help")
                continue
            }
            #expect(try CommandLineParser.parse([spec.name, "-h"]) == .help(text))
            #expect(try CommandLineParser.parse(["help", spec.name]) == .help(text))
            #expect(text.contains("USAGE: atlas-secrets \(spec.name)"))
            for option in spec.options {
                #expect(text.contains(option.synopsis), "\(spec.name) help lacks \(option.synopsis)")
                if let value = option.defaultValue {
                    #expect(text.contains("(default: \(value))"), "\(spec.name) help lacks default of --\(option.name)")
                }
            }
            for argument in spec.arguments {
                #expect(text.contains("<\(argument.name)>"), "\(spec.name) help lacks \(argument.name)")
            }
        }
    }

    @Test func workerHelpDefaultsComeFromTheOptionsStruct() throws {
        let text = try #require(CommandLineParser.help(for: "worker"))
        #expect(text.contains("(default: 16)"))
        #expect(text.contains("(default: 20)"))
        #expect(text.contains("(default: revoke)"))
        #expect(text.contains("(default: fail)"))
        #expect(text.contains("(default: text)"))
        #expect(text.contains("(default: 30)"))
        #expect(!text.contains("(default: 16.0)"))
    }

    @Test func helpWinsOverOtherErrors() throws {
        #expect(try CommandLineParser.parse(["worker", "--concurrency", "0", "--help"]) == .help(WorkerOptions.spec.helpText))
    }

    @Test func retryShowsBothForms() {
        let text = RetryOptions.spec.helpText
        #expect(text.contains("atlas-secrets retry JOB_ID…"))
        #expect(text.contains("atlas-secrets retry --failed [--batch B]"))
    }

    @Test func versionAndHelpOfUnknown() throws {
        #expect(try CommandLineParser.parse(["--version"]) == .help("atlas-secrets 0.1.0\n"))
        #expect(usageMessage(["help", "wrker"]) == "unknown command 'wrker'; did you mean 'worker'?")
    }

    @Test func helpOfHelpIsTheRootHelp() throws {
        let root = try CommandLineParser.parse(["--help"])
        #expect(try CommandLineParser.parse(["help", "--help"]) == root)
        #expect(try CommandLineParser.parse(["help", "-h"]) == root)
    }

    @Test func helpLinesFitEightyColumns() {
        for spec in CommandLineParser.commands {
            for line in spec.helpText.split(separator: "\n") {
                #expect(line.count <= 80 || !line.contains(" "), "\(spec.name): too long: \(line)")
            }
        }
    }
}
