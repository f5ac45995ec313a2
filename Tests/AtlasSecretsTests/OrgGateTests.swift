@testable import AtlasSecrets
import Testing

/// The per-org gate's bucket bound, against answers that arrive out of order.
struct OrgGateTests {
    /// Two calls in flight on a bucket of 2: the later one's answer (0 left) comes first, then the
    /// earlier one's, counted before the later call reached Atlas (1 left). That older count must
    /// not raise the bound: the bucket is empty, and the next call waits for a token.
    /// Without `sentAt` (an answer of unknown age) the header wins, as before: the control.
    @Test(arguments: [true, false])
    func anOvertakenAnswerDoesNotRaiseTheBound(known: Bool) {
        let gate = OrgGate()
        let org = "org"
        #expect(gate.admit(org) == nil)  // the first call: a probe
        gate.finish(org, answered: true, remaining: 2, limit: 2, throttledFor: nil, sentAt: .now)
        #expect(gate.admit(org, holdAtMost: 0.05) == nil)
        let first = ContinuousClock.now
        #expect(gate.admit(org, holdAtMost: 0.05) == nil)
        let second = ContinuousClock.now
        gate.finish(org, answered: true, remaining: 0, limit: 2, throttledFor: nil, sentAt: second)
        gate.finish(org, answered: true, remaining: 1, limit: 2, throttledFor: nil, sentAt: known ? first : nil)
        let wait = gate.admit(org, holdAtMost: 0.05)
        if known {
            #expect(wait != nil && wait! > 0.5, "a call was let out into an empty bucket (wait \(String(describing: wait)))")
        } else {
            #expect(wait == nil)
        }
    }
}
