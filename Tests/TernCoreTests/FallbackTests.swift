import Foundation
import Testing

@testable import TernCore

@Suite struct CircuitBreakerTests {
    @Test func opensAfterFailuresInARowThenOneProbeClosesIt() {
        let breaker = CircuitBreaker()
        let start = ContinuousClock.now
        #expect(breaker.decide(openFor: .seconds(10), now: start) == .call)
        #expect(!breaker.failed(threshold: 3, now: start))
        #expect(!breaker.failed(threshold: 3, now: start))
        breaker.succeeded()  // a success resets the count: failures must be in a row
        #expect(!breaker.failed(threshold: 3, now: start))
        #expect(!breaker.failed(threshold: 3, now: start))
        #expect(breaker.failed(threshold: 3, now: start))
        #expect(breaker.isOpen)
        #expect(breaker.decide(openFor: .seconds(10), now: start + .seconds(9)) == .skip)
        #expect(breaker.decide(openFor: .seconds(10), now: start + .seconds(10)) == .probe)
        // While the probe runs, others still skip.
        #expect(breaker.decide(openFor: .seconds(10), now: start + .seconds(11)) == .skip)
        #expect(breaker.succeeded())
        #expect(!breaker.isOpen)
        #expect(breaker.decide(openFor: .seconds(10), now: start + .seconds(11)) == .call)
    }

    @Test func aFailedProbeOpensItAgainForAnotherPeriod() {
        let breaker = CircuitBreaker()
        let start = ContinuousClock.now
        #expect(breaker.failed(threshold: 1, now: start))
        #expect(breaker.decide(openFor: .seconds(5), now: start + .seconds(5)) == .probe)
        #expect(breaker.failed(threshold: 1, now: start + .seconds(5)))  // the probe failed: open again from now
        #expect(breaker.decide(openFor: .seconds(5), now: start + .seconds(9)) == .skip)
        #expect(breaker.decide(openFor: .seconds(5), now: start + .seconds(10)) == .probe)
    }
}

@Suite struct FallbackPolicyTests {
    let outputs = [
        TensorSpec(name: "label", datatype: .int64, shape: [-1]),
        TensorSpec(name: "probabilities", datatype: .fp32, shape: [-1, 2]),
        TensorSpec(name: "class", datatype: .bytes, shape: [-1]),
    ]

    @Test func theDefaultAnswerRepeatsEachRowsValuesInOutputOrder() throws {
        let json = #"{"default": {"probabilities": [0.9, 0.1], "label": 0, "class": "good"}}"#
        let policy = try JSONDecoder().decode(FallbackPolicy.self, from: Data(json.utf8))
        try policy.validate(versions: [1], weighted: [])
        let tensors = try #require(try policy.defaultAnswer(outputs: outputs, rows: 3, requested: []))
        #expect(tensors.map(\.name) == ["label", "probabilities", "class"])
        #expect(tensors[0].shape == [3] && tensors[0].values(as: Int64.self) == [0, 0, 0])
        #expect(tensors[1].shape == [3, 2] && tensors[1].values(as: Float.self) == [0.9, 0.1, 0.9, 0.1, 0.9, 0.1])
        #expect(tensors[2].strings == ["good", "good", "good"])
        let asked = try #require(try policy.defaultAnswer(outputs: outputs, rows: 1, requested: ["label"]))
        #expect(asked.map(\.name) == ["label"])
    }

    @Test func badDefaultsAndSettingsAreNamed() throws {
        func refusal(_ json: String) throws -> String? {
            let policy = try JSONDecoder().decode(FallbackPolicy.self, from: Data(json.utf8))
            do {
                try policy.validate(versions: [1, 2], weighted: [2])
                try policy.validateDefault(outputs: outputs)
                return nil
            } catch {
                return error.message
            }
        }
        #expect(try refusal(#"{"version": 1}"#) == nil)
        #expect(try refusal(#"{}"#)?.contains("needs a version or a default") == true)
        #expect(try refusal(#"{"version": 3}"#)?.contains("not a version") == true)
        #expect(try refusal(#"{"default": {"score": 1}}"#)?.contains("does not have") == true)
        #expect(try refusal(#"{"default": {"label": "x"}}"#)?.contains("must be numbers") == true)
        #expect(try refusal(#"{"version": 1, "open_seconds": 0}"#)?.contains("open_seconds") == true)
    }
}
