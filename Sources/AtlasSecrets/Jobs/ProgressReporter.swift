import Foundation

/// The worker's progress line: jobs of the batch (or all jobs) finished since the worker
/// started, from the counters table, redrawn at most four times a second. Claimer thread only.
final class ProgressReporter {
    private let batch: String?
    private var bar: ProgressBar?
    private var doneAtStart = 0
    private var lastPoll = ContinuousClock.now - .seconds(1)

    init(batch: String?) {
        self.batch = batch
    }

    func update(_ conn: PGConnection) {
        guard ContinuousClock.now - lastPoll >= .milliseconds(250) else { return }
        lastPoll = ContinuousClock.now
        guard let counts = try? JobQueries.counts(conn, batch: batch) else { return }
        if bar == nil {
            doneAtStart = counts.done
            // A redrawn bar on a terminal; plain lines every few seconds when stderr is a file.
            bar = ProgressBar(total: counts.total - doneAtStart, label: "jobs",
                              mode: Console.isTerminal(2) ? .bar : .lines, plainInterval: 5)
        }
        bar?.setTotal(counts.total - doneAtStart)
        bar?.setDone(counts.done - doneAtStart)
    }

    func finish(_ conn: PGConnection) {
        lastPoll = ContinuousClock.now - .seconds(1)
        update(conn)
        bar?.finish()
    }
}
