@testable import AtlasSecrets
import Testing

/// The throttle notice "<org> <seconds> <schema>" (NOTIFY atlas_secrets_pacing) as the listener
/// reads it, for schema names that are not plain identifiers (any text PostgreSQL allows in a
/// quoted name: spaces, quotes, a name another schema's name begins with).
struct PacingNoticeTests {
    static let org = "4888442a3354817a7320eb61"

    @Test(arguments: ["public", "t_0a1b2c3d4e5f", "My Schema", " lead", "trail ", "two  spaces", "quo\"te", "it's", "ünï cödé", "a b c d"])
    func aNoticeOfThisSchemaIsRead(schema: String) {
        let notice = Worker.pacingNotice("\(Self.org) 12.345678 \(schema)", schema: schema)
        #expect(notice?.org == Self.org, "schema \(schema.debugDescription)")
        #expect(notice?.seconds == 12.345678)
    }

    @Test func aNoticeOfAnotherSchemaIsIgnored() {
        for (mine, theirs) in [("s", "s_other"), ("s_other", "s"), ("My Schema", "My"), ("My", "My Schema"), ("trail", "trail "), ("a", "A")] {
            #expect(Worker.pacingNotice("\(Self.org) 3 \(theirs)", schema: mine) == nil, "\(theirs.debugDescription) read as \(mine.debugDescription)")
        }
    }

    @Test func malformedSecondsAreIgnoredAndLongOnesCapped() {
        for bad in ["-1", "nan", "inf", "", "x"] {
            #expect(Worker.pacingNotice("\(Self.org) \(bad) s", schema: "s") == nil, "seconds \(bad.debugDescription)")
        }
        #expect(Worker.pacingNotice("\(Self.org) 0 s", schema: "s")?.seconds == 0)
        #expect(Worker.pacingNotice("\(Self.org) 99999999 s", schema: "s")?.seconds == 3600)
        #expect(Worker.pacingNotice("\(Self.org) 3", schema: "") == nil)
    }
}
