import Foundation
import SQLKit
import TernCore

/// One version's requests, failures and latency over a window: mergeable, so that every replica's numbers
/// add up to what the whole fleet served (the rollout judge's input). Latency is a histogram of fixed
/// buckets: bucket i holds latencies below 10 µs x 1.1^(i+1) (about 1% wide at 10 µs, 10% at every scale).
public struct VersionTally: Codable, Sendable, Equatable {
    public static let bucketCount = 200

    public var succeeded = 0
    public var failed = 0
    /// Requests sent to the fallback because the version's circuit was open.
    public var skipped = 0
    public var buckets = [Int](repeating: 0, count: VersionTally.bucketCount)
    /// The model's own run time for the requests it ran (no queueing: a slow version sharing the cores
    /// with the other cannot hide behind its waits), summed.
    public var computeRequests = 0
    public var computeNanoseconds = 0

    public init() {}

    /// The bucket of a latency in microseconds.
    public static func bucket(microseconds: Double) -> Int {
        min(bucketCount - 1, max(0, Int(log(max(microseconds, 10) / 10) / log(1.1))))
    }

    public static func + (a: VersionTally, b: VersionTally) -> VersionTally {
        var sum = a
        sum.succeeded += b.succeeded
        sum.failed += b.failed
        sum.skipped += b.skipped
        sum.computeRequests += b.computeRequests
        sum.computeNanoseconds += b.computeNanoseconds
        for index in sum.buckets.indices { sum.buckets[index] += b.buckets[index] }
        return sum
    }

    public static func - (a: VersionTally, b: VersionTally) -> VersionTally {
        var difference = a
        difference.succeeded -= b.succeeded
        difference.failed -= b.failed
        difference.skipped -= b.skipped
        difference.computeRequests -= b.computeRequests
        difference.computeNanoseconds -= b.computeNanoseconds
        for index in difference.buckets.indices { difference.buckets[index] -= b.buckets[index] }
        return difference
    }

    public var requests: Int { succeeded + failed }
    public var errorRate: Double { requests == 0 ? 0 : Double(failed) / Double(requests) }

    /// The 99th percentile of the successes' latency (its bucket's upper bound), in milliseconds.
    public var p99Milliseconds: Double? {
        guard succeeded > 0 else { return nil }
        let rank = Int((Double(succeeded) * 0.99).rounded(.up))
        var seen = 0
        for (index, count) in buckets.enumerated() {
            seen += count
            if seen >= rank { return 0.01 * pow(1.1, Double(index + 1)) }
        }
        return nil
    }

    /// The mean run time of the model per request, in milliseconds.
    public var computeMilliseconds: Double? {
        computeRequests > 0 && computeNanoseconds >= 0 ? Double(computeNanoseconds) / Double(computeRequests) / 1e6 : nil
    }

    /// What the judge reads of it.
    public var numbers: RolloutJudge.Numbers {
        .init(
            succeeded: succeeded, failed: failed, skipped: skipped, p99Milliseconds: p99Milliseconds,
            computeMilliseconds: computeMilliseconds)
    }

    // Stored sparsely: a window's latencies fill a few buckets of the 200.
    enum CodingKeys: String, CodingKey {
        case succeeded, failed, skipped, buckets
        case computeRequests = "compute_requests"
        case computeNanoseconds = "compute_ns"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        succeeded = try container.decode(Int.self, forKey: .succeeded)
        failed = try container.decode(Int.self, forKey: .failed)
        skipped = try container.decode(Int.self, forKey: .skipped)
        computeRequests = try container.decodeIfPresent(Int.self, forKey: .computeRequests) ?? 0
        computeNanoseconds = try container.decodeIfPresent(Int.self, forKey: .computeNanoseconds) ?? 0
        for (index, count) in try container.decode([String: Int].self, forKey: .buckets) {
            if let i = Int(index), buckets.indices.contains(i) { buckets[i] = count }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(succeeded, forKey: .succeeded)
        try container.encode(failed, forKey: .failed)
        try container.encode(skipped, forKey: .skipped)
        try container.encode(computeRequests, forKey: .computeRequests)
        try container.encode(computeNanoseconds, forKey: .computeNanoseconds)
        var sparse: [String: Int] = [:]
        for (index, count) in buckets.enumerated() where count != 0 { sparse[String(index)] = count }
        try container.encode(sparse, forKey: .buckets)
    }
}

extension Registry {
    /// Records this replica's numbers for a rollout's window (replacing what it recorded before for it).
    public func recordRolloutTallies(model: String, window: String, replica: String, tallies: [Int: VersionTally]) async throws(TernError) {
        let encoder = JSONEncoder()
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var rows: [(Int, String)] = []
        for (version, tally) in tallies {
            guard let data = try? encoder.encode(tally) else { throw .internalError("cannot encode a rollout tally") }
            rows.append((version, String(decoding: data, as: UTF8.self)))
        }
        let encoded = rows
        try await write {
            try await self.sql.raw(
                """
                DELETE FROM tern_rollout_tallies WHERE model = \(bind: model) AND window_key = \(bind: window) AND replica = \(bind: replica)
                """
            ).run()
            for (version, text) in encoded {
                try await self.sql.raw(
                    """
                    INSERT INTO tern_rollout_tallies (model, window_key, replica, version, tally, updated_at)
                    VALUES (\(bind: model), \(bind: window), \(bind: replica), \(bind: version), \(bind: text), \(bind: now))
                    """
                ).run()
            }
        }
    }

    /// Every replica's numbers for a rollout's window, summed by version; and how many replicas reported.
    public func rolloutTallies(model: String, window: String) async throws(TernError) -> (tallies: [Int: VersionTally], replicas: Int) {
        try await run {
            let rows = try await self.sql.raw(
                """
                SELECT replica, version, tally FROM tern_rollout_tallies WHERE model = \(bind: model) AND window_key = \(bind: window)
                """
            ).all()
            var sums: [Int: VersionTally] = [:]
            var replicas = Set<String>()
            for row in rows {
                let tally = try JSONDecoder().decode(VersionTally.self, from: Data(try row.decode(column: "tally", as: String.self).utf8))
                let version = try row.decode(column: "version", as: Int.self)
                sums[version] = (sums[version] ?? VersionTally()) + tally
                replicas.insert(try row.decode(column: "replica", as: String.self))
            }
            return (sums, replicas.count)
        }
    }

    /// Forgets a model's windows other than `keeping` (all of them with nil).
    public func pruneRolloutTallies(model: String, keeping window: String?) async throws(TernError) {
        try await write {
            if let window {
                try await self.sql.raw("DELETE FROM tern_rollout_tallies WHERE model = \(bind: model) AND window_key <> \(bind: window)").run()
            } else {
                try await self.sql.raw("DELETE FROM tern_rollout_tallies WHERE model = \(bind: model)").run()
            }
        }
    }
}

extension Rollout {
    /// The key of the current step's window: every replica counts its requests under it.
    public var windowKey: String { "\(step)@\(stepStartedAt)" }
}
