/// How long to wait before the next attempt of a job that failed in a retryable way.
public protocol RetryPolicy: Sendable {
    /// The delay in seconds before attempt `attempt + 1`, after attempt `attempt` (1-based) failed.
    /// `retryAfter` is the server's own `Retry-After`, which wins when it is longer (even past the cap).
    func delay(afterAttempt attempt: Int, retryAfter: Double?) -> Double
}

/// Capped exponential backoff with jitter: base × 2^(attempt−1), capped, then scaled by a random
/// factor in [1 − jitter, 1] so that workers that failed together do not retry together.
public struct ExponentialJitterRetry: RetryPolicy {
    public var base: Double
    public var cap: Double
    public var jitter: Double

    public init(base: Double, cap: Double, jitter: Double = 0.5) {
        precondition(base > 0 && cap >= base && (0...1).contains(jitter))
        self.base = base
        self.cap = cap
        self.jitter = jitter
    }

    public func delay(afterAttempt attempt: Int, retryAfter: Double?) -> Double {
        let exponent = Double(max(0, min(attempt - 1, 30)))
        let raw = min(cap, base * Double(1 << Int(exponent)))
        let jittered = raw * Double.random(in: (1 - jitter)...1)
        guard let retryAfter, retryAfter > 0 else { return jittered }
        return max(jittered, retryAfter)
    }
}

extension RetryPolicy where Self == ExponentialJitterRetry {
    /// `.exponentialJitter(base: 1, cap: 300)`: seconds.
    public static func exponentialJitter(base: Double, cap: Double, jitter: Double = 0.5) -> ExponentialJitterRetry {
        ExponentialJitterRetry(base: base, cap: cap, jitter: jitter)
    }
}
