/// The states of a job: `queued` → `running` → `succeeded` | `failed` | `cancelled`.
public enum JobState: String, Sendable, Equatable, Hashable, CaseIterable, Codable {
    case queued, running, succeeded, failed, cancelled
}

/// What the worker does with a secret it created but could not keep (`--orphan-secrets`).
public enum OrphanPolicy: String, Sendable, Equatable, CaseIterable {
    /// Delete it in Atlas and record the revocation.
    case revoke
    /// Leave it in Atlas (it expires on its own) and record that it was left.
    case keep
}

/// What the worker does when a service account already holds two secrets (`--when-full`).
public enum WhenFullPolicy: String, Sendable, Equatable, CaseIterable {
    /// Fail the job.
    case fail
    /// Delete the oldest secret, then create the new one.
    case revokeOldest = "revoke-oldest"
}

/// A pace per organization (`--org-rate 100/min`: jobs started), kept per second.
public struct OrgRate: Sendable, Equatable, CustomStringConvertible {
    /// Jobs per second (100/min is 1.666…).
    public var perSecond: Double

    /// A rate of `perSecond` requests per second.
    public init(perSecond: Double) { self.perSecond = perSecond }

    /// Parses `N/s`, `N/min` or `N/h` (also `sec`, `second`, `m`, `minute`, `hour`); N a positive number.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let count = Double(parts[0].trimmingSpaces), count.isFinite, count > 0 else { return nil }
        let seconds: Double
        switch parts[1].trimmingSpaces.lowercased() {
        case "s", "sec", "second": seconds = 1
        case "m", "min", "minute": seconds = 60
        case "h", "hour": seconds = 3600
        default: return nil
        }
        self.perSecond = count / seconds
    }

    /// The rate per minute, e.g. `100/min`.
    public var description: String { "\(ParsedArguments.format((perSecond * 60 * 1e6).rounded() / 1e6))/min" }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return s
    }
}
