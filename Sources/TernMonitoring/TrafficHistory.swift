import Foundation
import Synchronization
import TernCore

/// The last hour of each served version's requests, second by second, in memory: counts, refusals (4xx),
/// failures (5xx and timeouts) and a latency histogram per second. What the console charts; no query to
/// Prometheus, no database.
///
/// Fed as each request ends (an observer, beside the metrics), one short lock and one lookup per request (the
/// console's reads copy a window out and work on it after the lock); a version's ring
/// (about 160 kB) is made when its first request arrives.
package final class TrafficHistory: InferenceObserver, Sendable {
    package static let seconds = 3_600
    /// Upper bounds of the latency buckets, in microseconds (the last is open): 50 µs doubling to 0.8 s.
    package static let bounds: [Double] = (0..<15).map { 50 * pow(2, Double($0)) }
    static let buckets = 16

    private struct Key: Hashable {
        var model: String
        var version: Int
    }

    private struct Ring {
        var last: Int64
        var requests = [UInt32](repeating: 0, count: TrafficHistory.seconds)
        var refused = [UInt32](repeating: 0, count: TrafficHistory.seconds)
        var failed = [UInt32](repeating: 0, count: TrafficHistory.seconds)
        var latency = [UInt16](repeating: 0, count: TrafficHistory.seconds * TrafficHistory.buckets)

        init(now: Int64) { last = now }

        /// Moves the ring to second `now`, clearing the seconds it skipped.
        mutating func advance(to now: Int64) {
            guard now > last else { return }
            let gap = min(now - last, Int64(TrafficHistory.seconds))
            for step in 1...gap {
                let slot = Int((last + step) % Int64(TrafficHistory.seconds))
                requests[slot] = 0
                refused[slot] = 0
                failed[slot] = 0
                for bucket in 0..<TrafficHistory.buckets { latency[slot * TrafficHistory.buckets + bucket] = 0 }
            }
            last = now
        }

        mutating func add(_ outcome: RequestOutcome, bucket: Int, at now: Int64) {
            advance(to: now)
            let slot = Int(now % Int64(TrafficHistory.seconds))
            requests[slot] &+= 1
            switch outcome {
            case .success:
                let at = slot * TrafficHistory.buckets + bucket
                if latency[at] < UInt16.max { latency[at] += 1 }
            case .clientError: refused[slot] &+= 1
            case .serverError, .timeout: failed[slot] &+= 1
            }
        }

        /// The last `span` seconds' counts, oldest first: copied out, so that their statistics are worked out
        /// without holding the lock requests take.
        mutating func window(_ span: Int, endingAt now: Int64) -> (requests: [UInt32], refused: [UInt32], failed: [UInt32], latency: [UInt16]) {
            advance(to: now)
            var window: (requests: [UInt32], refused: [UInt32], failed: [UInt32], latency: [UInt16]) = ([], [], [], [])
            window.latency.reserveCapacity(span * TrafficHistory.buckets)
            for second in (now - Int64(span) + 1)...now {
                let slot = Int(((second % Int64(TrafficHistory.seconds)) + Int64(TrafficHistory.seconds)) % Int64(TrafficHistory.seconds))
                window.requests.append(requests[slot])
                window.refused.append(refused[slot])
                window.failed.append(failed[slot])
                window.latency += latency[(slot * TrafficHistory.buckets)..<((slot + 1) * TrafficHistory.buckets)]
            }
            return window
        }
    }

    private let rings = Mutex<[Key: Ring]>([:])
    private let clock: @Sendable () -> Int64

    package init(clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }) {
        self.clock = clock
    }

    package func requestEnded(_ event: InferenceEvent) {
        guard event.context.operation == .infer, let served = event.served else { return }
        let micros = Double(event.duration.components.seconds) * 1e6 + Double(event.duration.components.attoseconds) / 1e12
        record(model: served.name, version: served.version, outcome: event.outcome, microseconds: micros)
    }

    func record(model: String, version: Int, outcome: RequestOutcome, microseconds: Double) {
        let now = clock()
        let bucket = Self.bucket(microseconds: microseconds)
        rings.withLock { rings in
            // One lookup; a version's ring is made on its first request.
            rings[Key(model: model, version: version), default: Ring(now: now)].add(outcome, bucket: bucket, at: now)
        }
    }

    static func bucket(microseconds: Double) -> Int {
        var index = 0
        while index < bounds.count, microseconds >= bounds[index] { index += 1 }
        return index
    }

    /// One version's seconds, oldest first, ending at the current second.
    package struct Series: Sendable, Codable {
        package var version: Int
        /// The epoch second of the last element.
        package var end: Int64
        package var requests: [UInt32]
        package var refused: [UInt32]
        package var failed: [UInt32]
        /// Per second, the latency percentiles of its answered requests (the upper bound of the bucket each
        /// falls in, in milliseconds); nil for a second without any.
        package var p50: [Double?]
        package var p95: [Double?]
        package var p99: [Double?]
        /// Over the whole span: the same percentiles, and the totals.
        package var total: Totals
    }

    package struct Totals: Sendable, Codable {
        package var requests: Int
        package var refused: Int
        package var failed: Int
        package var p50: Double?
        package var p95: Double?
        package var p99: Double?
    }

    /// The model's versions' last `span` seconds (at most an hour), by version.
    package func series(model: String, span: Int) -> [Series] {
        let span = max(1, min(span, Self.seconds))
        let now = clock()
        let windows = rings.withLock { rings in
            rings.keys.filter { $0.model == model }.sorted { $0.version < $1.version }.map { key in
                (version: key.version, counts: rings[key]!.window(span, endingAt: now))
            }
        }
        return windows.map { version, counts in
            var series = Series(
                version: version, end: now, requests: counts.requests, refused: counts.refused, failed: counts.failed, p50: [],
                p95: [], p99: [], total: Totals(requests: 0, refused: 0, failed: 0))
            var whole = [Int](repeating: 0, count: Self.buckets)
            for second in 0..<span {
                let histogram = (0..<Self.buckets).map { Int(counts.latency[second * Self.buckets + $0]) }
                for (bucket, count) in histogram.enumerated() { whole[bucket] += count }
                series.p50.append(Self.percentile(histogram, 0.50))
                series.p95.append(Self.percentile(histogram, 0.95))
                series.p99.append(Self.percentile(histogram, 0.99))
            }
            series.total = Totals(
                requests: counts.requests.reduce(0) { $0 + Int($1) }, refused: counts.refused.reduce(0) { $0 + Int($1) },
                failed: counts.failed.reduce(0) { $0 + Int($1) }, p50: Self.percentile(whole, 0.50),
                p95: Self.percentile(whole, 0.95), p99: Self.percentile(whole, 0.99))
            return series
        }
    }

    /// The upper bound (ms) of the bucket holding the `q` quantile; the open last bucket reads as its lower bound.
    static func percentile(_ histogram: [Int], _ q: Double) -> Double? {
        let count = histogram.reduce(0, +)
        guard count > 0 else { return nil }
        let rank = Int((q * Double(count)).rounded(.up))
        var seen = 0
        for (bucket, n) in histogram.enumerated() {
            seen += n
            if seen >= max(1, rank) { return (bucket < bounds.count ? bounds[bucket] : bounds[bounds.count - 1]) / 1000 }
        }
        return bounds[bounds.count - 1] / 1000
    }
}
