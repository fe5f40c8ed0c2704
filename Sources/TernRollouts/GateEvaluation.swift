import TernBundle
import TernRegistry

/// A validation gate's checks from the numbers measured (pure: the gate measures, this decides). In order:
/// each absolute bound (`require`: a minimum, or a maximum for the metrics where lower is better), then,
/// when the alias named another version, each allowed regression against it and the p99 latency increase.
/// A metric the model does not have fails its check (a gate never passes on what it could not measure).
package enum GateEvaluation {
    package static func checks(
        policy: GatePolicy, candidate: ValidationMetrics?, current: ValidationMetrics?, currentVersion: Int?,
        candidateP99: Double?, currentP99: Double?
    ) -> [GateResult.Check] {
        var checks: [GateResult.Check] = []
        for (name, bound) in policy.require.sorted(by: { $0.key < $1.key }) {
            let lower = GatePolicy.lowerIsBetter.contains(name)
            guard let value = candidate?.value(named: name) else {
                checks.append(.init(check: "\(name) (not measured for this model)", value: .nan, bound: bound, passed: false))
                continue
            }
            checks.append(.init(check: "\(name) \(lower ? "<=" : ">=")", value: value, bound: bound, passed: lower ? value <= bound : value >= bound))
        }
        guard let currentVersion else { return checks }
        for (name, bound) in policy.maxRegression.sorted(by: { $0.key < $1.key }) {
            guard let mine = candidate?.value(named: name), let theirs = current?.value(named: name) else {
                checks.append(.init(check: "\(name) regression (not measured for this model)", value: .nan, bound: bound, passed: false))
                continue
            }
            let regression = GatePolicy.lowerIsBetter.contains(name) ? mine - theirs : theirs - mine
            checks.append(.init(check: "\(name) regression vs v\(currentVersion) <=", value: regression, bound: bound, passed: regression <= bound))
        }
        if let bound = policy.maxLatencyIncrease, let mine = candidateP99, let theirs = currentP99 {
            let increase = mine / theirs - 1
            checks.append(.init(check: "p99 latency increase vs v\(currentVersion) <=", value: increase, bound: bound, passed: increase <= bound))
        }
        return checks
    }
}
