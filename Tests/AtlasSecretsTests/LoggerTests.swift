import Foundation
import Synchronization
import Testing
@testable import AtlasSecrets

/// Collects logged lines for assertions.
final class LineCollector: Sendable {
    let lines = Mutex<[String]>([])
    var sink: Logger.Sink { Logger.Sink { line in self.lines.withLock { $0.append(line) } } }
    var all: [String] { lines.withLock { $0 } }
}

private let fixedDate = Date(timeIntervalSince1970: 1_796_320_311.123)

@Suite struct LoggerTests {
    @Test func textLineMatchesTheContract() {
        let line = Logger.format(.text, date: fixedDate, level: .info, event: "job.succeeded",
                                 fields: [("job", "42"), ("org", "4888442a3354817a7320eb61"), ("attempt", "1"), ("ms", "12")])
        #expect(line == "2026-12-03T17:51:51.123Z info  job.succeeded job=42 org=4888442a3354817a7320eb61 attempt=1 ms=12\n")
        #expect(Logger.format(.text, date: fixedDate, level: .warning, event: "e", fields: []) == "2026-12-03T17:51:51.123Z warn  e\n")
        #expect(Logger.format(.text, date: fixedDate, level: .error, event: "e", fields: []) == "2026-12-03T17:51:51.123Z error e\n")
    }

    @Test func textEscapesQuotesNewlinesAndSpaces() {
        let line = Logger.format(.text, date: fixedDate, level: .error, event: "job.failed",
                                 fields: [("detail", "bad \"id\"\nnext line"), ("empty", ""), ("url", "https://x/y?a=1"), ("we ird", "ok")])
        #expect(line == #"2026-12-03T17:51:51.123Z error job.failed detail="bad \"id\"\nnext line" empty="" url="https://x/y?a=1" we_ird=ok"# + "\n")
        #expect(line.filter { $0 == "\n" }.count == 1)
    }

    @Test func jsonLineIsOneValidObjectWithFieldsInOrder() throws {
        let line = Logger.format(.json, date: fixedDate, level: .info, event: "job.succeeded",
                                 fields: [("job", "42"), ("detail", "quote \" backslash \\ newline \n tab \t ctl \u{01}"), ("level", "spoof")])
        #expect(line == #"{"ts":"2026-12-03T17:51:51.123Z","level":"info","event":"job.succeeded","job":"42","detail":"quote \" backslash \\ newline \n tab \t ctl \u0001","_level":"spoof"}"# + "\n")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object["detail"] == "quote \" backslash \\ newline \n tab \t ctl \u{01}")
        #expect(object["level"] == "info")
    }

    @Test func linesFromManyThreadsNeverInterleave() {
        let collector = LineCollector()
        let logger = Logger(format: .json, sink: collector.sink, clock: { fixedDate })
        DispatchQueue.concurrentPerform(iterations: 400) { i in
            logger.info("job.succeeded", ["job": String(i), "padding": String(repeating: "x", count: 200)])
        }
        logger.flush()
        let lines = collector.all
        #expect(lines.count == 400)
        let jobs = lines.compactMap { line -> String? in
            guard line.hasSuffix("}\n"), line.hasPrefix("{"), let data = line.data(using: .utf8),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: String] else { return nil }
            return object["job"]
        }
        #expect(Set(jobs) == Set((0..<400).map(String.init)))
    }

    @Test func sinkIsNeverEnteredByTwoThreadsAtOnce() {
        let inside = Atomic<Int>(0)
        let overlaps = Atomic<Int>(0)
        let written = Atomic<Int>(0)
        let logger = Logger(sink: Logger.Sink { _ in
            if inside.add(1, ordering: .sequentiallyConsistent).newValue > 1 { overlaps.add(1, ordering: .relaxed) }
            usleep(100)
            inside.subtract(1, ordering: .sequentiallyConsistent)
            written.add(1, ordering: .relaxed)
        })
        DispatchQueue.concurrentPerform(iterations: 200) { i in logger.info("e", ["i": String(i)]) }
        logger.flush()
        #expect(written.load(ordering: .relaxed) == 200)
        #expect(overlaps.load(ordering: .relaxed) == 0)
    }

    @Test func levelsBelowTheMinimumAreDropped() {
        let collector = LineCollector()
        let logger = Logger(format: .text, minimumLevel: .warning, sink: collector.sink, clock: { fixedDate })
        logger.debug("a")
        logger.info("b")
        logger.warning("c", ["k": "v"])
        logger.error("d")
        logger.flush()
        #expect(collector.all == ["2026-12-03T17:51:51.123Z warn  c k=v\n", "2026-12-03T17:51:51.123Z error d\n"])
    }

    @Test func flushWaitsForPendingLines() {
        let collector = LineCollector()
        let logger = Logger(sink: collector.sink)
        Console.queue.async { usleep(50_000) }
        logger.info("after.sleep")
        logger.flush()
        #expect(collector.all.count == 1)
    }
}
