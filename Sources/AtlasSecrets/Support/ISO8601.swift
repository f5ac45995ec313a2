public import Foundation

/// ISO-8601 UTC timestamps with milliseconds, `2026-12-03T17:51:51.123Z`, formatted without a
/// shared formatter (thread-safe, cheap).
public enum ISO8601 {
    /// `date` as `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC, to the nearest millisecond.
    public static func string(from date: Date) -> String {
        // Nearest millisecond: `.123` is stored as `.12299…`, and truncating would print `.122`.
        let totalMillis = Int64((date.timeIntervalSince1970 * 1000).rounded())
        var seconds = time_t(totalMillis >= 0 ? totalMillis / 1000 : (totalMillis - 999) / 1000)
        let millis = Int(totalMillis - Int64(seconds) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return pad(Int(parts.tm_year) + 1900, 4) + "-" + pad(Int(parts.tm_mon) + 1, 2) + "-" + pad(Int(parts.tm_mday), 2)
            + "T" + pad(Int(parts.tm_hour), 2) + ":" + pad(Int(parts.tm_min), 2) + ":" + pad(Int(parts.tm_sec), 2)
            + "." + pad(millis, 3) + "Z"
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }
}
