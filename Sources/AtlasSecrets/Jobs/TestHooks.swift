import Foundation

/// TEST-ONLY hooks, read once from the environment when a worker first needs them. They exist
/// so integration tests can hold a lane at an exact point of an attempt; never set them in
/// production (the worker logs a warning each time one fires).
///
/// - `ATLAS_SECRETS_TEST_PAUSE_BEFORE_RESULT_MS`: milliseconds a lane sleeps between the
///   create's 201 and the fenced result write (to race a completion against a rescue, or to
///   kill the database connection during the result write).
enum TestHooks {
    /// Seconds to pause before the result write, or nil (the normal case).
    static let pauseBeforeResult: Double? = {
        guard let text = ProcessInfo.processInfo.environment["ATLAS_SECRETS_TEST_PAUSE_BEFORE_RESULT_MS"],
              let ms = Int(text), ms > 0 else { return nil }
        return Double(ms) / 1000
    }()
}
