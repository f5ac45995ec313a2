import AtlasSecrets
import Foundation
import Testing

extension EndToEnd {
    /// Other systems queue jobs with plain SQL; an idle worker is woken by the insert trigger's
    /// NOTIFY, not by its 1-second poll.
    @Suite struct Wakeup {
        @Test func rowsInsertedWithSQLByAnotherConnectionAreClaimedWithinASecond() throws {
            let h = try Harness("e2e_wakeup", orgs: 1, accountsPerOrg: 8)
            defer { h.close() }
            let worker = try h.startWorker(["--lease", "5", "--concurrency", "4"])
            defer { worker.stop() }
            try waitFor("the worker to start", timeout: 10) { worker.stderr.contains(#""event":"worker.started""#) }

            let conn = try h.connect()
            defer { conn.close() }
            let org = h.accounts[0].org
            /// Inserts a job for account `i` (plain INSERT or the SQL function); returns its id.
            func insert(_ i: Int) throws -> Int64 {
                let client = h.accounts[i].client
                let row = i % 2 == 0
                    ? try conn.query("""
                        INSERT INTO secret_jobs (org_id, client_id, expires_after_hours, batch)
                        VALUES (\(org), \(client), 24, 'sql') RETURNING id
                        """).rows[0]
                    : try conn.query("SELECT enqueue_secret_job(\(org), \(client), 24, NULL, 'sql') AS id").rows[0]
                return try row["id"].int64()
            }
            /// Seconds from the insert to the claim, both on the database clock; nil until claimed.
            func claimLatency(_ id: Int64) throws -> Double? {
                try conn.query("SELECT extract(epoch FROM started_at - created_at)::float8 AS s FROM secret_jobs WHERE id = \(id)")
                    .rows[0]["s"].optionalDouble()
            }

            // Warm-up: the listener is connected once a first job has gone through.
            let first = try insert(0)
            try waitFor("the first job to be claimed", timeout: 10) { try claimLatency(first) != nil }

            var latencies: [Double] = []
            var ids = [first]
            for i in 1..<8 {
                // Vary the moment relative to the worker's 1 s poll.
                usleep(UInt32.random(in: 100_000...700_000))
                let id = try insert(i)
                ids.append(id)
                var latency: Double?
                try waitFor("job \(id) to be claimed", timeout: 5) {
                    latency = try claimLatency(id)
                    return latency != nil
                }
                latencies.append(latency ?? .infinity)
            }
            let shown = latencies.map { String(format: "%.1f ms", $0 * 1000) }.joined(separator: ", ")
            print("insert → claim latencies: \(shown)")
            #expect(latencies.allSatisfy { $0 < 1.0 }, "\(shown)")
            // A poll-only worker (1 s interval) would show a spread up to 1 s; seven wake-ups all
            // under 250 ms by chance has odds under 1 in 10,000.
            #expect(latencies.max() ?? .infinity < 0.25, "\(shown)")

            try waitFor("every job to succeed", timeout: 10) { try h.jobStates().values.allSatisfy { $0 == "succeeded" } }
            #expect(try h.jobStates().count == 8)
            worker.signal(SIGTERM)
            #expect(worker.wait(timeout: 15) == 0, "\(worker.stderr)")
        }
    }
}
