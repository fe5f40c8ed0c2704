import Foundation
import TernCore
import TernRegistry

/// `POST /api/v1/models/{model}/rollout`'s body (and `tern rollout start`'s options).
public struct RolloutStart: Codable, Sendable {
    public var to: Int
    public var alias: String?
    public var steps: [Double]?
    /// Seconds, or a duration such as "10m".
    public var interval: IntervalValue?
    public var minRequests: Int?
    public var maxErrorRateIncrease: Double?
    public var maxLatencyRatio: Double?
    public var maxAccuracyDrop: Double?
    public var autoPromote: Bool?
    /// Start without running the validation gate first (audited).
    public var skipGate: Bool?

    public enum IntervalValue: Codable, Sendable {
        case seconds(Double)
        case text(String)

        public init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let seconds = try? container.decode(Double.self) { self = .seconds(seconds) } else { self = .text(try container.decode(String.self)) }
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .seconds(let seconds): try container.encode(seconds)
            case .text(let text): try container.encode(text)
            }
        }
    }

    /// The JSON fields it reads: any other in a request is refused.
    public static var fieldNames: Set<String> { Set(CodingKeys.allCases.map(\.stringValue)) }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case to, alias, steps, interval
        case minRequests = "min_requests"
        case maxErrorRateIncrease = "max_error_rate_increase"
        case maxLatencyRatio = "max_latency_ratio"
        case maxAccuracyDrop = "max_accuracy_drop"
        case autoPromote = "auto_promote"
        case skipGate = "skip_gate"
    }

    public init(to: Int) { self.to = to }

    public func rollout(model: String) throws(TernError) -> Rollout {
        var rollout = Rollout(model: model, candidate: to)
        if let alias { rollout.alias = alias }
        if let steps { rollout.steps = steps }
        switch interval {
        case .seconds(let seconds)?: rollout.intervalSeconds = seconds
        case .text(let text)?:
            rollout.intervalSeconds = OutsideNumber.seconds(try OutsideNumber.duration(text: text, "interval"))
        case nil: break
        }
        if let minRequests { rollout.minRequests = minRequests }
        if let maxErrorRateIncrease { rollout.maxErrorRateIncrease = maxErrorRateIncrease }
        if let maxLatencyRatio { rollout.maxLatencyRatio = maxLatencyRatio }
        rollout.maxAccuracyDrop = maxAccuracyDrop ?? Rollout.defaultMaxAccuracyDrop
        if let autoPromote { rollout.autoPromote = autoPromote }
        try rollout.validate()
        return rollout
    }
}
