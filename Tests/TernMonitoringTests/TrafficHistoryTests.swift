import Synchronization
import TernCore
import Testing

@testable import TernMonitoring

@Suite("Traffic history: an hour of per-second counts and latency buckets per version")
struct TrafficHistoryTests {
    final class Clock: Sendable {
        let now = Atomic<Int64>(1_000_000)
        func advance(_ seconds: Int64) { now.add(seconds, ordering: .relaxed) }
    }

    @Test("counts land in their second, by outcome, and percentiles read the buckets' bounds")
    func countsAndPercentiles() {
        let clock = Clock()
        let history = TrafficHistory { clock.now.load(ordering: .relaxed) }
        // 100 answers: 90 at 70 µs (bucket 50-100 µs), 9 at 300 µs (200-400), 1 at 5 ms (3.2-6.4 ms).
        for _ in 0..<90 { history.record(model: "m", version: 1, outcome: .success, microseconds: 70) }
        for _ in 0..<9 { history.record(model: "m", version: 1, outcome: .success, microseconds: 300) }
        history.record(model: "m", version: 1, outcome: .success, microseconds: 5_000)
        history.record(model: "m", version: 1, outcome: .clientError, microseconds: 10)
        history.record(model: "m", version: 2, outcome: .serverError, microseconds: 10)
        clock.advance(1)
        history.record(model: "m", version: 1, outcome: .success, microseconds: 70)
        history.record(model: "other", version: 1, outcome: .success, microseconds: 70)

        let series = history.series(model: "m", span: 60)
        #expect(series.map(\.version) == [1, 2])
        let v1 = series[0]
        #expect(v1.requests.count == 60)
        #expect(Array(v1.requests.suffix(2)) == [101, 1])
        #expect(v1.refused.suffix(2) == [1, 0])
        #expect(v1.total.requests == 102 && v1.total.refused == 1 && v1.total.failed == 0)
        #expect(v1.p50[58] == 0.1 && v1.p95[58] == 0.4 && v1.p99[58] == 0.4)
        #expect(v1.p50[59] == 0.1 && v1.p50[0] == nil)
        #expect(v1.total.p99 == 0.4)
        #expect(series[1].failed.suffix(2) == [1, 0] && series[1].p50.allSatisfy { $0 == nil })
    }

    @Test("seconds without traffic read zero, and an hour later the ring holds only the new hour")
    func wrapsAroundTheHour() {
        let clock = Clock()
        let history = TrafficHistory { clock.now.load(ordering: .relaxed) }
        history.record(model: "m", version: 1, outcome: .success, microseconds: 70)
        clock.advance(10)
        #expect(history.series(model: "m", span: 11)[0].requests == [1] + Array(repeating: 0, count: 10))
        clock.advance(3_600)
        history.record(model: "m", version: 1, outcome: .success, microseconds: 70)
        let hour = history.series(model: "m", span: 3_600)[0]
        #expect(hour.total.requests == 1 && hour.requests.last == 1)
        // A span past the hour is the hour.
        #expect(history.series(model: "m", span: 10_000)[0].requests.count == 3_600)
        #expect(history.series(model: "nothing", span: 60).isEmpty)
    }

    @Test("latency buckets: 50 µs doubling, the last one open")
    func buckets() {
        #expect(TrafficHistory.bucket(microseconds: 10) == 0)
        #expect(TrafficHistory.bucket(microseconds: 50) == 1)
        #expect(TrafficHistory.bucket(microseconds: 99.9) == 1)
        #expect(TrafficHistory.bucket(microseconds: 10_000_000) == 15)
        #expect(TrafficHistory.percentile([0, 0, 0], 0.5) == nil)
    }
}
