import Foundation
import TernCore
import TernRegistry
import Testing

@testable import TernRollouts

@Suite("Rollout tallies")
struct RolloutTallyTests {
    @Test func p99IsTheBucketBoundOfTheNinetyNinthPercentile() {
        var tally = RolloutWatch.Tally()
        // 99 fast requests in the first bucket (under 11 µs), one slow one far above.
        tally.succeeded = 100
        tally.buckets[0] = 99
        tally.buckets[100] = 1
        #expect(abs(tally.p99Milliseconds! - 0.01 * 1.1) < 1e-12)
        tally.buckets[0] = 98
        tally.buckets[100] = 2
        #expect(abs(tally.p99Milliseconds! - 0.01 * pow(1.1, 101)) < 1e-9)
        #expect(RolloutWatch.Tally().p99Milliseconds == nil)
    }

    @Test func aStepsNumbersAreTheDifferenceSinceItBegan() {
        var before = RolloutWatch.Tally()
        before.succeeded = 10
        before.failed = 1
        var now = before
        now.succeeded = 110
        now.failed = 6
        now.skipped = 2
        let step = now - before
        #expect(step.requests == 105 && step.failed == 5 && step.skipped == 2)
        #expect(abs(step.errorRate - 5.0 / 105.0) < 1e-12)
    }
}
