import AtlasSim
import Foundation
import Testing

extension EndToEnd {
    /// The command line as a user meets it: help, bad flags, missing configuration, a job no
    /// credential covers, `retry --failed`, `cancel --batch`.
    @Suite struct Commands {
        static let commands = ["migrate", "enqueue", "worker", "status", "list", "show", "retry", "cancel", "reveal", "keygen"]

        @Test func helpOnEveryCommandExits0AndBadFlagsExit64() throws {
            let h = try Harness("e2e_cli_help", orgs: 1, accountsPerOrg: 1)
            defer { h.close() }
            let root = try h.cli(["--help"])
            #expect(root.status == 0)
            for command in Self.commands {
                #expect(root.stdout.contains("  \(command) "), "root help lists \(command)")
                let out = try h.cli([command, "--help"])
                #expect(out.status == 0, "\(command) --help: \(out.both)")
                #expect(out.stdout.hasPrefix("OVERVIEW: "), "\(command) --help: \(out.stdout)")
                #expect(out.stdout.contains("USAGE: atlas-secrets \(command)"), "\(command) --help")
                #expect(try h.cli(["help", command]).stdout == out.stdout)

                let bad = try h.cli([command, "--no-such-flag"])
                #expect(bad.status == 64, "\(command) --no-such-flag: \(bad.both)")
                #expect(bad.stderr.contains("--no-such-flag"), "\(command): \(bad.stderr)")
            }
            let badValues: [[String]] = [
                ["worker", "--concurrency", "0"], ["worker", "--lease", "1"], ["list", "--state", "done"],
                ["status", "--org", "nope"], ["show", "abc"], ["retry"], ["cancel", "1", "--batch", "b"], ["frobnicate"],
            ]
            for args in badValues {
                let out = try h.cli(args)
                #expect(out.status == 64, "\(args.joined(separator: " ")): \(out.both)")
                #expect(!out.stderr.isEmpty)
            }
            #expect(try h.jobCount() == 0)
        }

        @Test func workerWithoutAKeyFileExits64NamingTheVariable() throws {
            let h = try Harness("e2e_cli_key", orgs: 1, accountsPerOrg: 1)
            defer { h.close() }
            try h.ok(["enqueue", try h.requestFile(h.accounts)])
            let out = try h.cli(["worker", "--drain"], extraEnvironment: ["ATLAS_SECRETS_KEY_FILE": ""])
            #expect(out.status == 64, "\(out.both)")
            #expect(out.stderr.contains("ATLAS_SECRETS_KEY_FILE"), "\(out.stderr)")
            // It did not touch the queue, nor Atlas.
            #expect(try h.status().counts.queued == 1)
            #expect(try h.state().counters.requests == 0)
        }

        @Test func workerOnAnOlderSchemaRefusesToStartAndSaysToMigrate() throws {
            let h = try Harness("e2e_cli_schema", orgs: 1, accountsPerOrg: 1)
            defer { h.close() }
            try h.ok(["enqueue", try h.requestFile(h.accounts)])
            let conn = try h.connect()
            defer { conn.close() }
            // As if the database was migrated by an older release.
            // One migration behind (no token ledger): the worker must not run without it.
            try conn.execute("DELETE FROM atlas_secrets_migrations WHERE version >= 5")
            let out = try h.cli(["worker", "--drain"])
            #expect(out.status == 69, "\(out.both)")
            #expect(out.stderr.contains("at migration 4") && out.stderr.contains("needs migration 5")
                    && out.stderr.contains("atlas-secrets migrate"), "\(out.stderr)")
            #expect(try h.status().counts.queued == 1)
            #expect(try h.state().counters.requests == 0)
        }

        @Test func aJobWhoseOrgHasNoCredentialFailsAtOnceNamingTheOrg() throws {
            let h = try Harness("e2e_cli_nocred", orgs: 1, accountsPerOrg: 1)
            defer { h.close() }
            let stranger = (org: "0123456789abcdef01234567", client: "mdb_sa_id_0123456789abcdef01234567")
            try h.ok(["enqueue", try h.requestFile([h.accounts[0], stranger], name: "mixed.jsonl")])
            try h.drain()
            let jobs = try h.listJobs()
            let failed = try #require(jobs.first { $0.orgId == stranger.org })
            let show = try h.showJob(failed.id)
            #expect(show.state == "failed")
            #expect(show.attempts == 1)
            // The spent attempt is in the history, though it never reached Atlas.
            #expect(show.history?.map(\.outcome) == ["failed"])
            #expect(show.history?.map(\.errorCode) == ["NO_CREDENTIAL"])
            #expect(show.lastErrorCode == "NO_CREDENTIAL")
            #expect(show.lastErrorDetail?.contains(stranger.org) == true, "\(show.lastErrorDetail ?? "nil")")
            // The other org's job is unaffected.
            #expect(jobs.first { $0.orgId == h.accounts[0].org }?.state == "succeeded")
            #expect(try h.state().counters.createSecret == 1)
        }

        @Test func retryFailedRequeuesOnlyFailedJobsOfTheBatch() throws {
            let h = try Harness("e2e_cli_retry", orgs: 1, accountsPerOrg: 4)
            defer { h.close() }
            try h.ok(["enqueue", try h.requestFile(Array(h.accounts[0..<3]), name: "a.jsonl")])
            try h.ok(["enqueue", try h.requestFile([h.accounts[3]], name: "b.jsonl")])
            // Atlas refuses the first two creates: two jobs fail (of whichever batch).
            try h.faults(#"[{"method": "POST", "pathContains": "/secrets", "status": 400, "errorCode": "INVALID_ATTRIBUTE", "times": 2}]"#)
            try h.drain(["--concurrency", "1"])
            let failed = try h.listJobs(["--state", "failed"])
            #expect(failed.count == 2)
            let failedInA = failed.filter { $0.batch == "a" }.map(\.id)

            let out = try h.ok(["retry", "--failed", "--batch", "a"])
            #expect(out == "requeued \(failedInA.count) job\(failedInA.count == 1 ? "" : "s")\(failedInA.isEmpty ? "" : ": " + failedInA.map(String.init).joined(separator: " "))\n")
            try h.drain()
            let after = try h.listJobs()
            #expect(after.filter { $0.batch == "a" }.allSatisfy { $0.state == "succeeded" })
            // Failed jobs of batch b stayed failed; `retry --failed` without a batch takes them too.
            #expect(after.filter { $0.batch == "b" && $0.state == "failed" }.count == 2 - failedInA.count)
            try h.ok(["retry", "--failed"])
            try h.drain()
            #expect(try h.status().counts == .init(queued: 0, running: 0, succeeded: 4, failed: 0, cancelled: 0))
            // A job that is not failed is refused, by name.
            let notFailed = try h.cli(["retry", String(after[0].id)])
            #expect(notFailed.status == 65)
            #expect(notFailed.stderr.contains("job \(after[0].id) is succeeded"), "\(notFailed.stderr)")
        }

        @Test func cancelBatchCancelsWhatHasNotStarted() throws {
            let h = try Harness("e2e_cli_cancel", orgs: 1, accountsPerOrg: 4)
            defer { h.close() }
            try h.ok(["enqueue", try h.requestFile([h.accounts[0]], name: "now.jsonl")])
            try h.drain()
            try h.ok(["enqueue", try h.requestFile(Array(h.accounts[1...]), name: "later.jsonl")])
            let queued = try h.listJobs(["--batch", "later"]).map(\.id)
            #expect(queued.count == 3)

            #expect(try h.ok(["cancel", "--batch", "later"]) == "cancelled 3 jobs: \(queued.map(String.init).joined(separator: " "))\n")
            try h.drain()
            let status = try h.status(["--batch", "later"])
            #expect(status.counts == .init(queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 3))
            for a in h.accounts[1...] { #expect(try h.state().liveSecrets(a.client).isEmpty) }
            // A finished job cannot be cancelled, and the refusal says why.
            let first = try #require(try h.listJobs(["--batch", "now"]).first)
            let out = try h.cli(["cancel", String(first.id)])
            #expect(out.status == 65)
            #expect(out.stderr.contains("job \(first.id) is succeeded: only queued jobs not settling an unknown outcome can be cancelled"), "\(out.stderr)")
            #expect(try h.showJob(first.id).state == "succeeded")
        }
    }
}
