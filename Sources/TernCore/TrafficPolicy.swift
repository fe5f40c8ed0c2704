import Foundation

/// How a model's requests that name no version are shared among its versions: weights (a canary, an A/B
/// test), optionally sticky on a request header so one customer always meets the same version, and shadow
/// versions that get a copy of the requests off the request path.
public struct TrafficPolicy: Codable, Sendable, Equatable {
    /// Version -> weight (any positive numbers; shares are weight / total).
    public var weights: [Int: Double]
    /// A request header whose value picks the version (the same value, the same version); without it, or
    /// when a request lacks the header, the pick is random by weight.
    public var stickyHeader: String?
    /// An input whose values pick the version (a customer id sent as an input): the same values, the same
    /// version. The request is read before the pick, so it applies after the header.
    public var stickyInput: String?
    /// Versions that get a copy of every request, answered to nobody: their outputs are compared with the
    /// answering version's.
    public var shadows: [Int]
    /// What answers when the chosen version fails or is too slow.
    public var fallback: FallbackPolicy?

    public init(
        weights: [Int: Double], stickyHeader: String? = nil, stickyInput: String? = nil, shadows: [Int] = [],
        fallback: FallbackPolicy? = nil
    ) {
        self.weights = weights
        self.stickyHeader = stickyHeader
        self.stickyInput = stickyInput
        self.shadows = shadows
        self.fallback = fallback
    }

    /// The JSON fields it reads: any other in a request is refused.
    public static var fieldNames: Set<String> { Set(CodingKeys.allCases.map(\.stringValue)) }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case weights, shadows, fallback
        case stickyHeader = "sticky_header"
        case stickyInput = "sticky_input"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        // JSON object keys are strings: {"1": 90, "2": 10}.
        let named = try container.decodeIfPresent([String: Double].self, forKey: .weights) ?? [:]
        var weights: [Int: Double] = [:]
        for (key, weight) in named {
            guard let version = Int(key) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .weights, in: container, debugDescription: "weights are keyed by version number, got '\(key)'")
            }
            weights[version] = weight
        }
        self.weights = weights
        stickyHeader = try container.decodeIfPresent(String.self, forKey: .stickyHeader)
        stickyInput = try container.decodeIfPresent(String.self, forKey: .stickyInput)
        shadows = try container.decodeIfPresent([Int].self, forKey: .shadows) ?? []
        fallback = try container.decodeIfPresent(FallbackPolicy.self, forKey: .fallback)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(Dictionary(uniqueKeysWithValues: weights.map { (String($0.key), $0.value) }), forKey: .weights)
        try container.encodeIfPresent(stickyHeader, forKey: .stickyHeader)
        try container.encodeIfPresent(stickyInput, forKey: .stickyInput)
        try container.encode(shadows, forKey: .shadows)
        try container.encodeIfPresent(fallback, forKey: .fallback)
    }

    /// Checks the policy against the versions a model has.
    public func validate(versions: Set<Int>) throws(TernError) {
        guard !weights.isEmpty || fallback != nil || !shadows.isEmpty else {
            throw .invalidArgument("a traffic policy needs weights, shadows or a fallback: {\"weights\": {\"1\": 90, \"2\": 10}}")
        }
        for (version, weight) in weights {
            guard versions.contains(version) else { throw .invalidArgument("weights name version \(version), which the model does not have") }
            // Shares, usually percentages: a bound keeps their sum finite and every share representable.
            _ = try OutsideNumber.finite(weight, "version \(version)'s weight", in: 0...1_000_000)
        }
        guard weights.isEmpty || weights.values.reduce(0, +) > 0 else { throw .invalidArgument("the weights add up to 0: no version would answer") }
        for version in shadows {
            guard versions.contains(version) else { throw .invalidArgument("shadows name version \(version), which the model does not have") }
            guard (weights[version] ?? 0) == 0 else {
                throw .invalidArgument("version \(version) is both weighted and a shadow: a shadow answers nobody")
            }
        }
        try fallback?.validate(versions: versions, weighted: Set(weights.filter { $0.value > 0 }.keys))
        if stickyHeader != nil && stickyInput != nil {
            throw .invalidArgument("give sticky_header or sticky_input, not both")
        }
        if let input = stickyInput, input.isEmpty { throw .invalidArgument("sticky_input must name an input") }
        if let header = stickyHeader {
            guard !header.isEmpty, header.utf8.allSatisfy({ $0 > 32 && $0 < 127 && $0 != UInt8(ascii: ":") }) else {
                throw .invalidArgument("sticky_header must be a header name")
            }
        }
    }

    /// The version for a request: by the sticky key's hash when there is one, else at random, each version
    /// as often as its share of the weights.
    public func pick(key: String?) -> Int? {
        pick(keyBytes: key.map { Array($0.utf8) })
    }

    /// As ``pick(key:)``, by a key's bytes (an input's values).
    public func pick(keyBytes key: [UInt8]?) -> Int? {
        let ordered = weights.filter { $0.value > 0 }.sorted { $0.key < $1.key }
        let total = ordered.reduce(0) { $0 + $1.value }
        guard total > 0 else { return nil }
        let unit: Double
        if let key {
            // FNV-1a: stable across processes and replicas (Swift's Hasher is seeded per process).
            var hash: UInt64 = 0xCBF2_9CE4_8422_2325
            for byte in key {
                hash ^= UInt64(byte)
                hash = hash &* 0x100_0000_01B3
            }
            hash ^= hash >> 33
            hash = hash &* 0xFF51_AFD7_ED55_8CCD
            hash ^= hash >> 33
            unit = Double(hash >> 11) / Double(1 << 53)
        } else {
            unit = Double.random(in: 0..<1)
        }
        var remaining = unit * total
        for (version, weight) in ordered {
            remaining -= weight
            if remaining < 0 { return version }
        }
        return ordered.last?.key
    }
}
