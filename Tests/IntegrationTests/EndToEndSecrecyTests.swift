import AtlasSim
import Foundation
import Testing

extension EndToEnd {
    /// No plaintext secret anywhere but `reveal`: not in the database (pg_dump of the schema),
    /// not in the worker's output, not in `show`, `list` or `status`.
    @Suite struct Secrecy {
        @Test func noIssuedSecretInTheDatabaseTheLogsOrTheReports() throws {
            let h = try Harness("e2e_secrecy", orgs: 2, accountsPerOrg: 6) {
                $0.failRate = 0.3
                $0.failMode = .mixed
                $0.seed = 5
            }
            defer { h.close() }
            try h.ok(["enqueue", try h.requestFile(h.accounts, name: "secrecy.jsonl")])
            // Debug logs: the most the worker ever says.
            let worker = try h.cli(["worker", "--drain", "--lease", "5", "--log-format", "json"],
                                   extraEnvironment: ["ATLAS_SECRETS_LOG_LEVEL": "debug"])
            try #require(worker.status == 0, "\(worker.both)")
            let jobs = try h.listJobs()
            #expect(jobs.count == 12 && jobs.allSatisfy { $0.state == "succeeded" })

            // Every value the simulator ever issued: the jobs' secrets, those revoked after a
            // lost response, and the orgs' own OAuth client secrets.
            let sim = try h.state()
            let issued = sim.allSecrets.compactMap(\.secret)
            #expect(issued.count >= 12 + 2)
            #expect(sim.allSecrets.contains { $0.createdAfterFailure == true }, "no orphan secret to look for")
            func leaks(_ text: String) -> [String] {
                issued.filter { text.contains($0) || text.contains(Self.hex($0)) }
            }

            let pgDump = try #require(pgDumpPath(), "pg_dump not found (set PG_BINDIR)")
            let dump = try runProcess(pgDump, ["--no-owner", "-n", h.db.schema, "-d", h.db.baseURL])
            try #require(dump.status == 0, "\(dump.both)")
            // The dump holds the results (or it proves nothing): every job's secret id and masked value.
            for job in jobs {
                #expect(dump.stdout.contains(job.secretId ?? "none") && dump.stdout.contains(job.maskedSecret ?? "none"))
            }
            #expect(leaks(dump.stdout).isEmpty, "plaintext secrets in pg_dump: \(leaks(dump.stdout).count)")
            #expect(leaks(worker.stdout + worker.stderr).isEmpty, "plaintext secrets in the worker's output")

            var reports = try h.ok(["status"]) + h.ok(["status", "--json"]) + h.ok(["list"]) + h.ok(["list", "--json"])
            for job in jobs { reports += try h.ok(["show", String(job.id)]) + h.ok(["show", String(job.id), "--json"]) }
            #expect(reports.contains(jobs[0].maskedSecret ?? "none"))
            #expect(leaks(reports).isEmpty, "plaintext secrets in status/list/show")

            // ...while `reveal` still gives the value back.
            #expect(issued.contains(try h.ok(["reveal", String(jobs[0].id)]).trimmingCharacters(in: .newlines)))
        }

        /// Lowercase hex of the UTF-8 bytes: how a bytea column would show a plaintext in a dump.
        static func hex(_ s: String) -> String { s.utf8.map { String(format: "%02x", $0) }.joined() }
    }
}
