import Foundation
import Synchronization

/// Per-organization "not before" times inside one worker process: when Atlas throttles an org,
/// no lane of this process sends that org another request before the time Atlas gave (the
/// database's `secret_org_pacing` does the same across processes, at claim time). Thread-safe.
final class OrgGate: Sendable {
    private let closedUntil = Mutex<[String: ContinuousClock.Instant]>([:])

    /// Holds the org back for `seconds` (never shortens an existing hold).
    func close(_ org: String, for seconds: Double) {
        let until = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        closedUntil.withLock { map in
            if let existing = map[org], existing >= until { return }
            map[org] = until
        }
    }

    /// Blocks the calling lane until the org may be called again.
    func waitUntilOpen(_ org: String) {
        while true {
            let until: ContinuousClock.Instant? = closedUntil.withLock { map in
                guard let until = map[org] else { return nil }
                if until <= ContinuousClock.now {
                    map[org] = nil
                    return nil
                }
                return until
            }
            guard let until else { return }
            let wait = until - ContinuousClock.now
            Thread.sleep(forTimeInterval: Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18)
        }
    }
}

/// The lane's Atlas client, holding each call back while its org is throttled and closing the
/// org's gate when Atlas answers with a throttle. Not thread-safe (one lane).
struct PacedAtlas {
    let client: AtlasClient
    let gate: OrgGate
    let fallbackDelay: @Sendable () -> Double

    private func paced<T>(_ org: String, _ body: () throws(AtlasError) -> T) throws(AtlasError) -> T {
        gate.waitUntilOpen(org)
        do {
            return try body()
        } catch {
            if error.code == .rateLimited { gate.close(org, for: error.retryAfter ?? fallbackDelay()) }
            throw error
        }
    }

    func getServiceAccount(orgId: String, clientId: String, credential: AtlasCredential) throws(AtlasError) -> OrgServiceAccount {
        try paced(orgId) { () throws(AtlasError) in try client.getServiceAccount(orgId: orgId, clientId: clientId, credential: credential) }
    }

    func createSecret(orgId: String, clientId: String, expiresAfterHours: Int, credential: AtlasCredential) throws(AtlasError) -> ServiceAccountSecret {
        try paced(orgId) { () throws(AtlasError) in
            try client.createSecret(orgId: orgId, clientId: clientId, expiresAfterHours: expiresAfterHours, credential: credential)
        }
    }

    func deleteSecret(orgId: String, clientId: String, secretId: String, credential: AtlasCredential) throws(AtlasError) {
        try paced(orgId) { () throws(AtlasError) in
            try client.deleteSecret(orgId: orgId, clientId: clientId, secretId: secretId, credential: credential)
        }
    }
}
