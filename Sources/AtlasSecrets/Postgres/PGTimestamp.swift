import Foundation

/// Formatting and parsing of PostgreSQL timestamps in ISO form, without Foundation formatters
/// (which are slow and not Sendable) and without the C library's time zone state.
enum PGTimestamp {
    /// `2026-12-03T17:51:51.123456Z`, rounded to the microsecond.
    static func format(_ date: Date) -> String {
        let totalMicros = (date.timeIntervalSince1970 * 1_000_000).rounded()
        var micros = Int64(totalMicros)
        var seconds = micros / 1_000_000
        micros %= 1_000_000
        if micros < 0 {
            micros += 1_000_000
            seconds -= 1
        }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        let (y, m, d) = civil(fromDays: days)
        func pad(_ v: Int64, _ width: Int) -> String {
            let s = String(v)
            return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2))"
            + ":\(pad(secondOfDay % 60, 2)).\(pad(micros, 6))Z"
    }

    /// Parses ISO DateStyle output: `2026-12-03 17:51:51.123456+00`, with or without fraction,
    /// offset (`+05:30`, `-08`, `Z`; none means UTC), `T` separator, a bare date, `BC`,
    /// and `infinity`/`-infinity` (as distant future/past). Nil when malformed.
    static func parse(_ text: String) -> Date? {
        switch text {
        case "infinity": return .distantFuture
        case "-infinity": return .distantPast
        default: break
        }
        var s = Array(text.utf8)
        var bc = false
        if s.count > 3, s.suffix(3) == Array(" BC".utf8) {
            bc = true
            s.removeLast(3)
        }
        var i = 0
        func digits(min: Int, max: Int) -> Int64? {
            var value: Int64 = 0
            var n = 0
            while i < s.count, n < max, s[i] >= UInt8(ascii: "0"), s[i] <= UInt8(ascii: "9") {
                value = value * 10 + Int64(s[i] - UInt8(ascii: "0"))
                i += 1
                n += 1
            }
            return n >= min ? value : nil
        }
        func expect(_ c: Character) -> Bool {
            guard i < s.count, s[i] == c.asciiValue! else { return false }
            i += 1
            return true
        }
        guard var year = digits(min: 4, max: 9), expect("-"), let month = digits(min: 2, max: 2), expect("-"),
            let day = digits(min: 2, max: 2), (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        if bc { year = 1 - year }
        var secondOfDay: Int64 = 0
        var fraction = 0.0
        var offset: Int64 = 0
        if i < s.count {
            guard expect(" ") || expect("T"), let h = digits(min: 2, max: 2), expect(":"),
                let mi = digits(min: 2, max: 2), expect(":"), let se = digits(min: 2, max: 2),
                h <= 24, mi < 60, se <= 60
            else { return nil }
            secondOfDay = h * 3600 + mi * 60 + se
            if expect(".") {
                let start = i
                guard let f = digits(min: 1, max: 9) else { return nil }
                fraction = Double(f) / pow(10, Double(i - start))
            }
            if i < s.count {
                if expect("Z") {
                    offset = 0
                } else {
                    let sign: Int64
                    if expect("+") { sign = 1 } else if expect("-") { sign = -1 } else { return nil }
                    guard let oh = digits(min: 2, max: 2) else { return nil }
                    var om: Int64 = 0
                    var os: Int64 = 0
                    if expect(":") {
                        guard let m = digits(min: 2, max: 2) else { return nil }
                        om = m
                        if expect(":") {
                            guard let sec = digits(min: 2, max: 2) else { return nil }
                            os = sec
                        }
                    } else if let m = digits(min: 2, max: 2) {
                        om = m
                    }
                    offset = sign * (oh * 3600 + om * 60 + os)
                }
            }
        }
        guard i == s.count else { return nil }
        let seconds = days(fromCivil: year, month, day) * 86_400 + secondOfDay - offset
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The proleptic Gregorian date of a day count since 1970-01-01.
    static func civil(fromDays days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? yoe + era * 400 + 1 : yoe + era * 400, m, d)
    }
}
