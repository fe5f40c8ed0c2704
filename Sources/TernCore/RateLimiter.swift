import Synchronization

/// A rate: so many requests a second on average, bursts of up to `burst` at once.
public struct RateLimit: Sendable, Equatable {
    public var perSecond: Double
    public var burst: Double

    /// `burst` defaults to one second's worth (at least 1).
    public init(perSecond: Double, burst: Double? = nil) {
        self.perSecond = perSecond
        self.burst = burst ?? max(1, perSecond)
    }
}

/// Token buckets by key (an API key's name, a client address): each request takes a token; a bucket refills
/// at the rate and holds at most the burst. A refused request learns how long until a token is there (the
/// `Retry-After` it is told).
public final class RateLimiter: Sendable {
    public let limit: RateLimit
    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }
    private let buckets = Mutex<[String: Bucket]>([:])
    /// Past this many keys, full (idle) buckets are dropped: a full bucket and no bucket mean the same.
    private let keysKept = 100_000

    public init(_ limit: RateLimit) { self.limit = limit }

    /// Takes a token for `key`: nil when there was one, else how long until there is.
    public func take(_ key: String, now: ContinuousClock.Instant = .now) -> Duration? {
        buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: limit.burst, updated: now)
            let elapsed = bucket.updated.duration(to: now)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(limit.burst, bucket.tokens + max(0, seconds) * limit.perSecond)
            bucket.updated = now
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                if buckets.count >= keysKept, buckets[key] == nil { Self.dropFull(&buckets, limit: limit, now: now) }
                buckets[key] = bucket
                return nil
            }
            buckets[key] = bucket
            return .milliseconds(Int(((1 - bucket.tokens) / limit.perSecond * 1000).rounded(.up)))
        }
    }

    private static func dropFull(_ buckets: inout [String: Bucket], limit: RateLimit, now: ContinuousClock.Instant) {
        let refill = limit.burst / limit.perSecond
        buckets = buckets.filter { _, bucket in
            let elapsed = bucket.updated.duration(to: now)
            return Double(elapsed.components.seconds) < refill
        }
    }

    /// The refusal of a request over its rate: 429 (gRPC RESOURCE_EXHAUSTED) with the seconds to wait.
    public func refusal(_ who: String, wait: Duration, flag: String) -> TernError {
        var error = TernError(
            .rateLimited,
            "\(who) is over its rate limit of \(Self.format(limit.perSecond)) requests a second "
                + "(\(flag)); retry in \(Self.format(Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18)) s")
        error.retryAfter = wait
        return error
    }

    private static func format(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(format3: value)
    }
}

extension String {
    /// Three decimals, without Foundation.
    init(format3 value: Double) {
        let thousandths = Int((value * 1000).rounded())
        let fraction = String(thousandths % 1000)
        self = "\(thousandths / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }
}
