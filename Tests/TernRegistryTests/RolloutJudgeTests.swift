import TernRegistry
import Testing

/// The rollout judge by table: each row is a step's numbers and the verdict they must give.
@Suite("Rollout judge: a step's verdict from both versions' numbers over the same window")
struct RolloutJudgeTests {
    typealias N = RolloutJudge.Numbers

    static func rollout(step: Int = 0, strikes: Int? = nil, autoPromote: Bool = true, accuracyDrop: Double? = 0.05) -> Rollout {
        var rollout = Rollout(
            model: "credit", candidate: 2, steps: [10, 50, 100], intervalSeconds: 60, minRequests: 100,
            maxErrorRateIncrease: 0.01, maxLatencyRatio: 1.5, maxAccuracyDrop: accuracyDrop, autoPromote: autoPromote)
        rollout.stable = 1
        rollout.step = step
        rollout.strikes = strikes
        return rollout
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var rollout: Rollout
        var window: RolloutJudge.Window
        var expected: String  // "wait", "advance", "promote", "rollBack", "rejudge"
        var reasonHas: String = ""
        var testDescription: String { name }
    }

    static let good = N(succeeded: 500, failed: 0, p99Milliseconds: 2.0)

    static let cases: [Case] = [
        Case(
            name: "an open circuit rolls back at once, whatever the counts", rollout: rollout(),
            window: .init(candidate: N(succeeded: 1, failed: 5, skipped: 3), stable: good, elapsed: 1), expected: "rollBack",
            reasonHas: "circuit opened"),
        Case(
            name: "too few candidate requests: wait", rollout: rollout(),
            window: .init(candidate: N(succeeded: 99), stable: good, elapsed: 600), expected: "wait", reasonHas: "99 of the 100"),
        Case(
            name: "error rate within the bound", rollout: rollout(),
            window: .init(
                candidate: N(succeeded: 495, failed: 5, p99Milliseconds: 2), stable: N(succeeded: 990, failed: 10, p99Milliseconds: 2),
                elapsed: 60), expected: "advance"),
        Case(
            name: "error rate past the bound rolls back before the interval ends", rollout: rollout(),
            window: .init(candidate: N(succeeded: 480, failed: 20), stable: good, elapsed: 5), expected: "rollBack", reasonHas: "error rate"),
        Case(
            name: "a tie on errors is within bounds", rollout: rollout(),
            window: .init(
                candidate: N(succeeded: 450, failed: 50, p99Milliseconds: 2), stable: N(succeeded: 900, failed: 100, p99Milliseconds: 2),
                elapsed: 60), expected: "advance"),
        Case(
            name: "the stable version's earlier window judges errors when it has none in this one (the last step)",
            rollout: rollout(step: 2),
            window: .init(
                candidate: N(succeeded: 970, failed: 30, p99Milliseconds: 2), stable: N(), earlierStable: N(succeeded: 970, failed: 30),
                elapsed: 60), expected: "promote"),
        Case(
            name: "passing before the interval ends: wait", rollout: rollout(),
            window: .init(candidate: good, stable: good, elapsed: 59), expected: "wait", reasonHas: "59 of its 60"),
        Case(
            name: "a first latency breach judges the step again", rollout: rollout(),
            window: .init(candidate: N(succeeded: 500, p99Milliseconds: 9), stable: good, elapsed: 60), expected: "rejudge", reasonHas: "p99"),
        Case(
            name: "a second latency breach in a row rolls back", rollout: rollout(strikes: 1),
            window: .init(candidate: N(succeeded: 500, p99Milliseconds: 9), stable: good, elapsed: 60), expected: "rollBack",
            reasonHas: "two windows in a row"),
        Case(
            name: "latency is not judged when the stable version had too few requests in the same window", rollout: rollout(step: 2),
            window: .init(candidate: N(succeeded: 500, p99Milliseconds: 9), stable: N(succeeded: 3, p99Milliseconds: 1), elapsed: 60),
            expected: "promote"),
        Case(
            name: "a ratio past the bound but within 1 ms is noise", rollout: rollout(),
            window: .init(candidate: N(succeeded: 500, p99Milliseconds: 0.9), stable: N(succeeded: 500, p99Milliseconds: 0.3), elapsed: 60),
            expected: "advance"),
        Case(
            name: "a run time 3x the stable's is a breach though queueing evens the p99s", rollout: rollout(),
            window: .init(
                candidate: N(succeeded: 500, p99Milliseconds: 10, computeMilliseconds: 2.7),
                stable: N(succeeded: 500, p99Milliseconds: 9, computeMilliseconds: 0.95), elapsed: 60),
            expected: "rejudge", reasonHas: "run time 2.70 ms"),
        Case(
            name: "the second run-time breach in a row rolls back", rollout: rollout(strikes: 1),
            window: .init(
                candidate: N(succeeded: 500, p99Milliseconds: 10, computeMilliseconds: 2.7),
                stable: N(succeeded: 500, p99Milliseconds: 9, computeMilliseconds: 0.95), elapsed: 60),
            expected: "rollBack", reasonHas: "two windows in a row"),
        Case(
            name: "run times apart by less than 0.2 ms are noise", rollout: rollout(),
            window: .init(
                candidate: N(succeeded: 500, p99Milliseconds: 2, computeMilliseconds: 0.25),
                stable: N(succeeded: 500, p99Milliseconds: 2, computeMilliseconds: 0.1), elapsed: 60),
            expected: "advance"),
        Case(
            name: "live accuracy far below the stable's rolls back", rollout: rollout(),
            window: .init(
                candidate: good, stable: good, elapsed: 60, candidateQuality: .init(accuracy: 0.31, rows: 40),
                stableQuality: .init(accuracy: 0.74, rows: 40)), expected: "rollBack", reasonHas: "accuracy"),
        Case(
            name: "live accuracy needs feedback rows on both sides", rollout: rollout(),
            window: .init(
                candidate: good, stable: good, elapsed: 60, candidateQuality: .init(accuracy: 0.31, rows: 19),
                stableQuality: .init(accuracy: 0.74, rows: 40)), expected: "advance"),
        Case(
            name: "no feedback at all: judged on errors and latency", rollout: rollout(),
            window: .init(candidate: good, stable: good, elapsed: 60), expected: "advance"),
        Case(
            name: "without a quality bound, accuracy is not judged", rollout: rollout(accuracyDrop: nil),
            window: .init(
                candidate: good, stable: good, elapsed: 60, candidateQuality: .init(accuracy: 0.1, rows: 40),
                stableQuality: .init(accuracy: 0.9, rows: 40)), expected: "advance"),
        Case(
            name: "the last step passed with auto-promote off: wait for a person", rollout: rollout(step: 2, autoPromote: false),
            window: .init(candidate: good, stable: N(), elapsed: 60), expected: "wait", reasonHas: "tern rollout promote"),
    ]

    @Test("verdicts", arguments: cases)
    func verdict(_ row: Case) {
        let verdict = RolloutJudge(rollout: row.rollout).judge(row.window)
        let (kind, reason): (String, String) =
            switch verdict {
            case .wait(let reason): ("wait", reason)
            case .advance: ("advance", "")
            case .promote: ("promote", "")
            case .rollBack(let reason): ("rollBack", reason)
            case .rejudge(let reason): ("rejudge", reason)
            }
        #expect(kind == row.expected, "\(row.name): \(verdict)")
        #expect(row.reasonHas.isEmpty || reason.contains(row.reasonHas), "\(row.name): \(reason)")
    }
}
