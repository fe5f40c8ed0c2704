/// One alert rule's state over time, as Prometheus's alerting rules behave: a breached value makes the rule
/// `pending`, and `firing` once it has stayed breached for the rule's `for` (at once when `for` is zero); a
/// firing rule resolves only when the value no longer breaches `resolve_threshold` (hysteresis: with `>`, a
/// value between the two thresholds keeps it firing, one at or below the resolve threshold resolves it). A missing value (no data in the window) keeps a firing
/// rule firing and makes any other inactive, its pending time forgotten.
package struct AlertStateMachine: Sendable, Equatable {
    package enum State: String, Sendable {
        case inactive, pending, firing
    }

    /// What a webhook is told.
    package enum Transition: String, Sendable {
        case firing, resolved
    }

    package private(set) var state = State.inactive
    /// When the value was first seen breached in the current run of breaches.
    package private(set) var pendingSince: ContinuousClock.Instant?

    package init() {}

    /// The state after seeing `value` at `now`; the transition a webhook hears of, if any.
    package mutating func observe(_ value: Double?, at now: ContinuousClock.Instant, rule: AlertRule) -> Transition? {
        if state == .firing {
            guard let value, !rule.breached(value, threshold: rule.resolveThreshold) else { return nil }
            state = .inactive
            return .resolved
        }
        guard let value, rule.breached(value, threshold: rule.threshold) else {
            state = .inactive
            pendingSince = nil
            return nil
        }
        let started = pendingSince ?? now
        guard started.duration(to: now) >= rule.forDuration else {
            state = .pending
            pendingSince = started
            return nil
        }
        state = .firing
        pendingSince = nil
        return .firing
    }
}
