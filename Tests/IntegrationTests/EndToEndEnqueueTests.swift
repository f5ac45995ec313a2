import AtlasSim
import Foundation
import Testing

extension EndToEnd {
    /// `enqueue` as a user meets it: re-running a file is harmless, a bad file names the place
    /// and queues nothing, standard input works.
    @Suite struct Enqueue {
        @Test func reRunningTheSameFileAddsNothing() throws {
            let h = try Harness("e2e_rerun", orgs: 2, accountsPerOrg: 5)
            defer { h.close() }
            let file = try h.requestFile(h.accounts, name: "rotate.jsonl")
            #expect(try h.ok(["enqueue", file]) == "enqueued 10 new jobs in batch rotate\n")
            #expect(try h.ok(["enqueue", file]) == "enqueued 0 new jobs in batch rotate; 10 requests already had a job (same idempotency key, in any batch), left as they were\n")
            #expect(try h.jobCount() == 10)
            // Also after the jobs ran: nothing is queued again.
            try h.drain()
            #expect(try h.ok(["enqueue", file]) == "enqueued 0 new jobs in batch rotate; 10 requests already had a job (same idempotency key, in any batch), left as they were\n")
            #expect(try h.jobCount() == 10)
            #expect(try h.status().counts.succeeded == 10)
            #expect(try h.state().counters.secretsCreated == 10)
        }

        @Test func malformedFilesExit65NameTheLineAndQueueNothing() throws {
            let h = try Harness("e2e_badfiles", orgs: 1, accountsPerOrg: 3)
            defer { h.close() }
            let (org, c0) = h.accounts[0]
            let c1 = h.accounts[1].client, c2 = h.accounts[2].client
            func line(_ org: String, _ client: String, _ hours: String) -> String {
                #"{"orgId": "\#(org)", "clientId": "\#(client)", "secretExpiresAfterHours": \#(hours)}"#
            }
            try h.ok(["enqueue", try h.requestFile([h.accounts[0]], name: "existing.jsonl")])
            let before = try h.jobCount()

            let cases: [(name: String, text: String, place: String, says: String)] = [
                ("bad-org.jsonl", [line(org, c0, "24"), line("12345", c1, "24"), line(org, c2, "24")].joined(separator: "\n"),
                 ":2: ", #"orgId "12345" is not 24 lowercase hex characters"#),
                ("bad-hours.jsonl", [line(org, c0, "24"), line(org, c1, "48"), line(org, c2, "9000")].joined(separator: "\n"),
                 ":3: ", "secretExpiresAfterHours 9000 is outside 8...8760 hours"),
                ("broken.jsonl", line(org, c0, "24") + "\n" + #"{"orgId": "\#(org)", "clientId": "\#(c1)""#,
                 ":2: ", "broken JSON"),
                ("header.csv", "org,clientId,secretExpiresAfterHours\n\(org),\(c0),24\n", ":1: ", "header has unknown column org"),
                ("empty.jsonl", "", ": ", "file is empty"),
            ]
            for c in cases {
                let path = try h.writeFile(c.name, c.text)
                let out = try h.cli(["enqueue", path])
                #expect(out.status == 65, "\(c.name): \(out.both)")
                #expect(out.stderr.contains(path + c.place), "\(c.name) should be named as \(path)\(c.place)…: \(out.stderr)")
                #expect(out.stderr.contains(c.says), "\(c.name): \(out.stderr)")
                #expect(out.stderr.contains("nothing was queued"), "\(c.name): \(out.stderr)")
                #expect(out.stdout.isEmpty)
                #expect(try h.jobCount() == before, "\(c.name) queued something")
            }
            // A good file beside a bad one: nothing from either.
            let good = try h.requestFile(Array(h.accounts[1...]), name: "good.jsonl")
            let out = try h.cli(["enqueue", good, h.dir.appendingPathComponent("bad-org.jsonl").path])
            #expect(out.status == 65)
            #expect(try h.jobCount() == before)
        }

        @Test func standardInputIsReadForADash() throws {
            let h = try Harness("e2e_stdin", orgs: 1, accountsPerOrg: 3)
            defer { h.close() }
            let lines = h.accounts.map { #"{"orgId": "\#($0.org)", "clientId": "\#($0.client)", "secretExpiresAfterHours": 72}"# }
            let input = lines.joined(separator: "\n") + "\n"
            #expect(try h.ok(["enqueue", "-"], stdin: input) == "enqueued 3 new jobs in batch stdin\n")
            #expect(try h.ok(["enqueue", "-", "--batch", "stdin"], stdin: input).hasPrefix("enqueued 0 new jobs"))
            #expect(try h.jobCount() == 3)
            let bad = try h.cli(["enqueue", "-"], stdin: lines[0] + "\nnot json\n")
            #expect(bad.status == 65)
            #expect(bad.stderr.contains("<stdin>:2: "), "\(bad.stderr)")
            #expect(try h.jobCount() == 3)
            let jobs = try h.listJobs()
            #expect(jobs.allSatisfy { $0.batch == "stdin" })
        }
    }
}
