import Foundation
import Testing
@testable import AtlasSecrets

@Suite struct AtlasTimeTests {
    @Test func parsesWhatFoundationParses() throws {
        let plain = ISO8601DateFormatter()
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            // 1900..2200, whole seconds.
            let t = Double(Int64.random(in: -2_208_988_800...7_258_118_400, using: &generator))
            let text = plain.string(from: Date(timeIntervalSince1970: t))
            #expect(AtlasTime.parse(text) == plain.date(from: text), "\(text)")
            #expect(AtlasTime.format(Date(timeIntervalSince1970: t)) == text)
            let withMillis = fractional.string(from: Date(timeIntervalSince1970: t + 0.25))
            #expect(AtlasTime.parse(withMillis)?.timeIntervalSince1970 == t + 0.25, "\(withMillis)")
        }
    }

    @Test func offsetsLeapDaysAndBadInput() {
        #expect(AtlasTime.parse("2024-08-05T10:00:00Z")?.timeIntervalSince1970 == 1_722_852_000)
        #expect(AtlasTime.parse("2024-08-05T12:00:00+02:00")?.timeIntervalSince1970 == 1_722_852_000)
        #expect(AtlasTime.parse("2024-08-05T05:30:00-04:30")?.timeIntervalSince1970 == 1_722_852_000)
        #expect(AtlasTime.parse("2024-02-29T00:00:00Z") != nil)
        #expect(AtlasTime.format(AtlasTime.parse("2024-02-29T23:59:59Z")!) == "2024-02-29T23:59:59Z")
        for bad in ["", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-08-05 10:00:00Z", "2024-08-05T10:00:00",
                    "2024-08-05T10:00:00.Z", "2024-08-05T24:00:00Z", "2024-08-05T10:00:00Zjunk", "2024-8-05T10:00:00Z"] {
            #expect(AtlasTime.parse(bad) == nil, "\(bad)")
        }
    }
}
