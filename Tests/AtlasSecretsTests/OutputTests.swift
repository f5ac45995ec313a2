import Foundation
import Testing
@testable import AtlasSecrets

@Suite struct OutputTests {
    @Test func tableAlignsColumnsAndRightAlignsNumbers() {
        var table = Table(["STATE", "JOBS", "SHARE", "TOP ERROR"])
        table.append(["succeeded", "1234", "95.1%", ""])
        table.append(["failed", "7", "0.5%", "INVALID_ATTRIBUTE"])
        table.append(["queued", "56", "4.3%", "-"])
        #expect(table.render() == """
            STATE      JOBS  SHARE  TOP ERROR
            succeeded  1234  95.1%
            failed        7   0.5%  INVALID_ATTRIBUTE
            queued       56   4.3%  -

            """)
    }

    @Test func forcedAlignmentBoldHeaderAndShortRows() {
        var table = Table(["ID", "ORG"], alignments: [.left])
        table.append(["7"])
        table.append(["1024", "4888442a3354817a7320eb61"])
        #expect(table.render() == "ID    ORG\n7\n1024  4888442a3354817a7320eb61\n")
        #expect(table.render(color: true).hasPrefix("\u{1B}[1mID    ORG\u{1B}[0m\n"))
        #expect(!table.render(color: false).contains("\u{1B}"))
    }

    @Test func cellsWithLineBreaksStayOnOneLine() {
        var table = Table(["A", "B"])
        table.append(["x\ny", "z"])
        #expect(table.render() == "A    B\nx y  z\n")
    }

    @Test func numericDetection() {
        for cell in ["42", "-1.5", "12%", "1,024", "3.2/s", "250ms", "+3"] { #expect(Table.looksNumeric(cell), "\(cell)") }
        for cell in ["abc", "4888442a", "-", "%", "v1.2"] { #expect(!Table.looksNumeric(cell), "\(cell)") }
    }

    @Test func noColorAndNonTerminalDisableColour() {
        // Tests run with stdout piped, so colour is off whatever NO_COLOR says; and NO_COLOR alone turns it off.
        #expect(!Console.colorEnabled(fd: 1, environment: [:]) || Console.isTerminal(1))
        #expect(!Console.colorEnabled(fd: 1, environment: ["NO_COLOR": "1"]))
    }

    @Test func iso8601WithMilliseconds() {
        #expect(ISO8601.string(from: Date(timeIntervalSince1970: 1_796_320_311.123)) == "2026-12-03T17:51:51.123Z")
        #expect(ISO8601.string(from: Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(ISO8601.string(from: Date(timeIntervalSince1970: 1_796_320_311.9996)) == "2026-12-03T17:51:52.000Z")
        #expect(ISO8601.string(from: Date(timeIntervalSince1970: -0.5)) == "1969-12-31T23:59:59.500Z")
    }

    @Test func jsonOutputSortsKeysAndWritesISODates() throws {
        struct Row: Encodable {
            var state = "failed"
            var id = 42
            var url = "https://cloud.mongodb.com/x"
            var createdAt = Date(timeIntervalSince1970: 1_796_320_311.123)
        }
        #expect(try JSONOutput.string(Row()) == #"{"createdAt":"2026-12-03T17:51:51.123Z","id":42,"state":"failed","url":"https://cloud.mongodb.com/x"}"#)
    }

    @Test func jsonQuoteEscapes() throws {
        let nasty = "a\"b\\c\nd\re\tf\u{01}g\u{7F}é😀"
        let quoted = JSONOutput.quote(nasty)
        #expect(quoted == #""a\"b\\c\nd\re\tf\u0001g\u007fé😀""#)
        let decoded = try JSONDecoder().decode(String.self, from: Data(quoted.utf8))
        #expect(decoded == nasty)
    }

    @Test func progressLinePlainAndBar() {
        #expect(ProgressBar.render(done: 312, total: 520, elapsed: 10, label: "jobs") == "jobs 312/520 (60%) 31.2/s ETA 0:07")
        #expect(ProgressBar.render(done: 5, total: 0, elapsed: 2) == "jobs 5 2.5/s")
        let bar = ProgressBar.render(done: 260, total: 520, elapsed: 2, width: 60)
        #expect(bar == "[=============>            ] 260/520   50%  130/s  ETA 0:02")
        #expect(bar.count == 59)  // one short of the width: a full last column would wrap
        let full = ProgressBar.render(done: 520, total: 520, elapsed: 4, width: 60)
        #expect(full == "[" + String(repeating: "=", count: 36) + "] 520/520  100%  130/s")
        #expect(!full.contains("ETA"))
    }

    @Test func durations() {
        #expect(ProgressBar.formatDuration(5) == "0:05")
        #expect(ProgressBar.formatDuration(750) == "12:30")
        #expect(ProgressBar.formatDuration(3723) == "1:02:03")
    }
}
