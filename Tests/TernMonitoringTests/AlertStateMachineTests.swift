import Testing

@testable import TernMonitoring

/// The alert state machine by table: each row is a rule and a sequence of (seconds, value) observations,
/// with the state after each and the transitions a webhook hears of.
@Suite("Alert state machine: pending, firing and resolved with `for` and resolve thresholds")
struct AlertStateMachineTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let rule: String
        /// (seconds since the first observation, value; nil: no data in the window)
        let observations: [(Int, Double?)]
        let states: [AlertStateMachine.State]
        /// The transition after each observation (nil: none).
        let transitions: [AlertStateMachine.Transition?]
        var testDescription: String { name }
    }

    static func rule(_ settings: String) throws -> AlertRule {
        let yaml = "rules:\n  - {name: r, model: m, metric: error_rate, \(settings)}\n"
        return try AlertConfiguration.parse(yaml: yaml, source: "rules.yaml").rules[0]
    }

    static let cases: [Case] = [
        Case(
            name: "for 0 fires on the first breach, resolves on the first good value",
            rule: "threshold: 0.1", observations: [(0, 0.05), (10, 0.2), (20, 0.2), (30, 0.05)],
            states: [.inactive, .firing, .firing, .inactive], transitions: [nil, .firing, nil, .resolved]),
        Case(
            name: "for 60s: pending until breached for the whole minute, then firing once",
            rule: "threshold: 0.1, for: 60s", observations: [(0, 0.2), (30, 0.2), (59, 0.2), (60, 0.2), (90, 0.2)],
            states: [.pending, .pending, .pending, .firing, .firing], transitions: [nil, nil, nil, .firing, nil]),
        Case(
            name: "a good value while pending starts the wait again",
            rule: "threshold: 0.1, for: 60s", observations: [(0, 0.2), (50, 0.0), (70, 0.2), (120, 0.2), (130, 0.2)],
            states: [.pending, .inactive, .pending, .pending, .firing], transitions: [nil, nil, nil, nil, .firing]),
        Case(
            name: "no data while pending makes it inactive and forgets the wait",
            rule: "threshold: 0.1, for: 60s", observations: [(0, 0.2), (40, nil), (61, 0.2), (100, 0.2)],
            states: [.pending, .inactive, .pending, .pending], transitions: [nil, nil, nil, nil]),
        Case(
            name: "no data while firing keeps it firing (no resolved message without a good value)",
            rule: "threshold: 0.1", observations: [(0, 0.5), (10, nil), (20, nil), (30, 0.0)],
            states: [.firing, .firing, .firing, .inactive], transitions: [.firing, nil, nil, .resolved]),
        Case(
            name: "hysteresis: between the thresholds it stays firing; at the resolve threshold (no longer above it) it resolves",
            rule: "threshold: 0.3, resolve_threshold: 0.2", observations: [(0, 0.35), (10, 0.25), (20, 0.21), (30, 0.2), (40, 0.25)],
            states: [.firing, .firing, .firing, .inactive, .inactive], transitions: [.firing, nil, nil, .resolved, nil]),
        Case(
            name: "below: a quality floor fires under it and resolves above its resolve threshold",
            rule: "op: '<', threshold: 0.8, resolve_threshold: 0.85", observations: [(0, 0.9), (10, 0.79), (20, 0.84), (30, 0.86)],
            states: [.inactive, .firing, .firing, .inactive], transitions: [nil, .firing, nil, .resolved]),
        Case(
            name: "> is strict and >= is not: a value equal to the threshold",
            rule: "op: '>=', threshold: 0.1", observations: [(0, 0.1), (10, 0.099)],
            states: [.firing, .inactive], transitions: [.firing, .resolved]),
        Case(
            name: "a strict threshold is not breached by an equal value",
            rule: "threshold: 0.1", observations: [(0, 0.1), (10, 0.1000001)],
            states: [.inactive, .firing], transitions: [nil, .firing]),
        Case(
            name: "fires again after resolving, waiting its for again",
            rule: "threshold: 0.1, for: 30s", observations: [(0, 0.2), (30, 0.2), (40, 0.0), (50, 0.2), (70, 0.2), (80, 0.2)],
            states: [.pending, .firing, .inactive, .pending, .pending, .firing], transitions: [nil, .firing, .resolved, nil, nil, .firing]),
    ]

    @Test(arguments: cases)
    func sequence(_ row: Case) throws {
        let rule = try Self.rule(row.rule)
        let start = ContinuousClock.now
        var machine = AlertStateMachine()
        for (index, (seconds, value)) in row.observations.enumerated() {
            let transition = machine.observe(value, at: start.advanced(by: .seconds(seconds)), rule: rule)
            #expect(machine.state == row.states[index], "after observation \(index + 1)")
            #expect(transition == row.transitions[index], "after observation \(index + 1)")
        }
    }
}
