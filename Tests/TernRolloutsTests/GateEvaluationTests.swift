import Foundation
import TernBundle
import TernRegistry
import Testing

@testable import TernRollouts

/// The validation gate's decision by table: the numbers measured in, the checks and the verdict out.
@Suite("Gate evaluation: bounds, regressions and latency from the numbers measured")
struct GateEvaluationTests {
    static func metrics(_ json: String) -> ValidationMetrics {
        try! JSONDecoder().decode(
            ValidationMetrics.self, from: Data(("{\"task\": \"classification\", \"rows\": 100, \"label_column\": \"y\", " + json + "}").utf8))
    }

    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let policy: GatePolicy
        let candidate: ValidationMetrics?
        let current: ValidationMetrics?
        let currentVersion: Int?
        var p99: (Double, Double)? = nil
        /// (check, passed) in order.
        let expected: [(String, Bool)]
        var testDescription: String { name }
    }

    static let good = metrics(#""accuracy": 0.90, "log_loss": 0.30"#)
    static let worse = metrics(#""accuracy": 0.87, "log_loss": 0.36"#)

    static let cases: [Case] = [
        Case(
            name: "a minimum met exactly passes; a maximum for log_loss", policy: GatePolicy(require: ["accuracy": 0.90, "log_loss": 0.30]),
            candidate: good, current: nil, currentVersion: nil,
            expected: [("accuracy >=", true), ("log_loss <=", true)]),
        Case(
            name: "a minimum missed fails", policy: GatePolicy(require: ["accuracy": 0.95]), candidate: good, current: nil, currentVersion: nil,
            expected: [("accuracy >=", false)]),
        Case(
            name: "a metric the model does not have fails (regression metrics on a classifier)",
            policy: GatePolicy(require: ["r2": 0.5]), candidate: good, current: nil, currentVersion: nil,
            expected: [("r2 (not measured for this model)", false)]),
        Case(
            name: "no candidate metrics at all fails every bound", policy: GatePolicy(require: ["accuracy": 0.5]),
            candidate: nil, current: nil, currentVersion: nil, expected: [("accuracy (not measured for this model)", false)]),
        Case(
            name: "no current version: regressions and latency are not checked",
            policy: GatePolicy(maxRegression: ["accuracy": 0.01], maxLatencyIncrease: 0.1), candidate: worse, current: nil,
            currentVersion: nil, p99: (5, 1), expected: []),
        Case(
            name: "a regression within its bound passes (a tie is no regression)",
            policy: GatePolicy(maxRegression: ["accuracy": 0.0]), candidate: good, current: good, currentVersion: 3,
            expected: [("accuracy regression vs v3 <=", true)]),
        Case(
            name: "a regression past its bound fails, in the metric's own direction",
            policy: GatePolicy(maxRegression: ["accuracy": 0.02, "log_loss": 0.1]), candidate: worse, current: good, currentVersion: 3,
            expected: [("accuracy regression vs v3 <=", false), ("log_loss regression vs v3 <=", true)]),
        Case(
            name: "a current version without the metric fails the regression check",
            policy: GatePolicy(maxRegression: ["accuracy": 0.02]), candidate: good, current: metrics(#""log_loss": 0.3"#), currentVersion: 3,
            expected: [("accuracy regression (not measured for this model)", false)]),
        Case(
            name: "latency: 40% slower passes a 0.5 bound and fails a 0.3 one",
            policy: GatePolicy(maxLatencyIncrease: 0.5), candidate: good, current: good, currentVersion: 2, p99: (1.4, 1.0),
            expected: [("p99 latency increase vs v2 <=", true)]),
        Case(
            name: "latency past its bound fails",
            policy: GatePolicy(maxLatencyIncrease: 0.3), candidate: good, current: good, currentVersion: 2, p99: (1.4, 1.0),
            expected: [("p99 latency increase vs v2 <=", false)]),
    ]

    @Test(arguments: cases)
    func checks(_ row: Case) {
        let checks = GateEvaluation.checks(
            policy: row.policy, candidate: row.candidate, current: row.current, currentVersion: row.currentVersion,
            candidateP99: row.p99?.0, currentP99: row.p99?.1)
        #expect(checks.map(\.check) == row.expected.map(\.0))
        #expect(checks.map(\.passed) == row.expected.map(\.1))
    }

    @Test func theValuesAreTheNumbersCompared() {
        let checks = GateEvaluation.checks(
            policy: GatePolicy(require: ["accuracy": 0.8], maxRegression: ["accuracy": 0.05], maxLatencyIncrease: 1),
            candidate: Self.worse, current: Self.good, currentVersion: 1, candidateP99: 3, currentP99: 2)
        #expect(checks.map(\.value).enumerated().allSatisfy { abs($0.element - [0.87, 0.03, 0.5][$0.offset]) < 1e-12 })
        #expect(checks.map(\.bound) == [0.8, 0.05, 1])
    }
}
