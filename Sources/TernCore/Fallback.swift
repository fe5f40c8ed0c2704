import Synchronization

/// What answers when a model's version fails or is too slow (a traffic policy's `fallback`): another version,
/// or a fixed default answer; and a circuit breaker that stops calling a version that keeps failing and
/// probes it again later. An answer given this way carries `fallback: true` and why in its parameters.
///
/// ```json
/// {"version": 1, "timeout_ms": 250, "failures_to_open": 5, "open_seconds": 30,
///  "default": {"label": [0], "probabilities": [0.9, 0.1]}}
/// ```
public struct FallbackPolicy: Codable, Sendable, Equatable {
    /// The version that answers instead; tried before `defaultOutputs`.
    public var version: Int?
    /// A fixed answer per row, by output name: the values one row gets (a scalar or a list).
    public var defaultOutputs: [String: [FallbackValue]]?
    /// A version that has not answered after this long is answered for (its own answer is dropped).
    public var timeoutMilliseconds: Int?
    /// Failures in a row that open the circuit: the version is not called until `openSeconds` pass.
    public var failuresToOpen: Int
    public var openSeconds: Double

    public init(
        version: Int? = nil, defaultOutputs: [String: [FallbackValue]]? = nil, timeoutMilliseconds: Int? = nil,
        failuresToOpen: Int = 5, openSeconds: Double = 30
    ) {
        self.version = version
        self.defaultOutputs = defaultOutputs
        self.timeoutMilliseconds = timeoutMilliseconds
        self.failuresToOpen = failuresToOpen
        self.openSeconds = openSeconds
    }

    /// The JSON fields it reads: any other in a request is refused.
    public static var fieldNames: Set<String> { Set(CodingKeys.allCases.map(\.stringValue)) }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case version
        case defaultOutputs = "default"
        case timeoutMilliseconds = "timeout_ms"
        case failuresToOpen = "failures_to_open"
        case openSeconds = "open_seconds"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        version = try container.decodeIfPresent(Int.self, forKey: .version)
        timeoutMilliseconds = try container.decodeIfPresent(Int.self, forKey: .timeoutMilliseconds)
        failuresToOpen = try container.decodeIfPresent(Int.self, forKey: .failuresToOpen) ?? 5
        openSeconds = try container.decodeIfPresent(Double.self, forKey: .openSeconds) ?? 30
        if container.contains(.defaultOutputs) {
            let nested = try container.nestedContainer(keyedBy: AnyKey.self, forKey: .defaultOutputs)
            var outputs: [String: [FallbackValue]] = [:]
            for key in nested.allKeys {
                if let list = try? nested.decode([FallbackValue].self, forKey: key) {
                    outputs[key.stringValue] = list
                } else {
                    outputs[key.stringValue] = [try nested.decode(FallbackValue.self, forKey: key)]
                }
            }
            defaultOutputs = outputs
        }
    }

    /// Checks the settings against the model's versions.
    public func validate(versions: Set<Int>, weighted: Set<Int>) throws(TernError) {
        if let version {
            guard versions.contains(version) else { throw .invalidArgument("fallback.version \(version) is not a version of the model") }
        }
        guard version != nil || !(defaultOutputs ?? [:]).isEmpty else {
            throw .invalidArgument("a fallback needs a version or a default answer: {\"version\": 1} or {\"default\": {\"label\": 0}}")
        }
        if let timeoutMilliseconds, !(1...600_000).contains(timeoutMilliseconds) {
            throw .invalidArgument("fallback.timeout_ms must be 1...600000")
        }
        guard failuresToOpen >= 1 else { throw .invalidArgument("fallback.failures_to_open must be 1 or more") }
        guard openSeconds > 0, openSeconds.isFinite, openSeconds <= 86_400 else {
            throw .invalidArgument("fallback.open_seconds must be more than 0 and at most 86400")
        }
        for (name, values) in defaultOutputs ?? [:] where values.isEmpty {
            throw .invalidArgument("fallback.default.\(name) has no values")
        }
    }

    /// Checks the default answer against a version's outputs: each named output exists and its values fit its type.
    public func validateDefault(outputs: [TensorSpec]) throws(TernError) {
        for (name, values) in defaultOutputs ?? [:] {
            guard let spec = outputs.first(where: { $0.name == name }) else {
                throw .invalidArgument(
                    "fallback.default names output '\(name)', which the model does not have (outputs: "
                        + outputs.map(\.name).joined(separator: ", ") + ")")
            }
            _ = try Self.tensor(spec, values: values, rows: 1)
        }
    }

    /// The default answer for a request of `rows` rows: each named output's per-row values repeated, in the
    /// model's output order, only the outputs `requested` (all when empty).
    public func defaultAnswer(outputs: [TensorSpec], rows: Int, requested: [String]) throws(TernError) -> [Tensor]? {
        guard let defaults = defaultOutputs, !defaults.isEmpty else { return nil }
        var tensors: [Tensor] = []
        for spec in outputs {
            guard let values = defaults[spec.name], requested.isEmpty || requested.contains(spec.name) else { continue }
            tensors.append(try Self.tensor(spec, values: values, rows: rows))
        }
        return tensors
    }

    static func tensor(_ spec: TensorSpec, values: [FallbackValue], rows: Int) throws(TernError) -> Tensor {
        let perRow = values.count
        let shape = spec.shape.count <= 1 && perRow == 1 ? [rows] : [rows, perRow]
        let repeated = (0..<rows).flatMap { _ in values }
        func numbers() throws(TernError) -> [Double] {
            var result: [Double] = []
            for value in repeated {
                switch value {
                case .number(let x): result.append(x)
                case .bool(let b): result.append(b ? 1 : 0)
                case .string: throw .invalidArgument("fallback.default.\(spec.name) must be numbers: the output is \(spec.datatype)")
                }
            }
            return result
        }
        switch spec.datatype {
        case .bytes:
            return try Tensor(
                name: spec.name, shape: shape,
                strings: repeated.map {
                    switch $0 {
                    case .string(let s): s
                    case .number(let x): x == x.rounded() && abs(x) < 1e15 ? String(Int64(x)) : String(x)
                    case .bool(let b): String(b)
                    }
                })
        case .fp32: return try Tensor(name: spec.name, shape: shape, values: try numbers().map(Float.init))
        case .fp64: return try Tensor(name: spec.name, shape: shape, values: try numbers())
        case .int64: return try Tensor(name: spec.name, shape: shape, values: try numbers().map { Int64(exactly: $0.rounded()) ?? 0 })
        case .int32: return try Tensor(name: spec.name, shape: shape, values: try numbers().map { Int32(exactly: $0.rounded()) ?? 0 })
        case .bool: return try Tensor(name: spec.name, shape: shape, values: try numbers().map { $0 != 0 })
        default:
            throw .invalidArgument("fallback.default.\(spec.name): a \(spec.datatype) output cannot take a default answer")
        }
    }
}

/// One value of a fallback's default answer.
public enum FallbackValue: Codable, Sendable, Equatable {
    case number(Double)
    case string(String)
    case bool(Bool)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let bool = try? container.decode(Bool.self) {
            self = .bool(bool)
        } else if let number = try? container.decode(Double.self) {
            self = .number(number)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .number(let x): try container.encode(x)
        case .string(let s): try container.encode(s)
        case .bool(let b): try container.encode(b)
        }
    }
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// A version's circuit breaker: closed (calls go through), open after `failuresToOpen` failures in a row
/// (calls go to the fallback), half-open once `openSeconds` have passed (one call probes the version: success
/// closes the circuit, failure opens it again).
public final class CircuitBreaker: Sendable {
    public enum Decision: Sendable, Equatable {
        /// Call the version.
        case call
        /// Call the version as the probe of an open circuit.
        case probe
        /// Do not call it: the circuit is open.
        case skip
    }

    private struct State {
        var failures = 0
        var openedAt: ContinuousClock.Instant?
        var probing = false
    }

    private let state = Mutex(State())

    public init() {}

    public var isOpen: Bool { state.withLock { $0.openedAt != nil } }

    public func decide(openFor: Duration, now: ContinuousClock.Instant = .now) -> Decision {
        state.withLock { state in
            guard let opened = state.openedAt else { return .call }
            guard !state.probing, opened.duration(to: now) >= openFor else { return .skip }
            state.probing = true
            return .probe
        }
    }

    /// Records a success; returns true when it closed an open circuit.
    @discardableResult
    public func succeeded() -> Bool {
        state.withLock { state in
            let wasOpen = state.openedAt != nil
            state = State()
            return wasOpen
        }
    }

    /// Records a failure; returns true when it opened the circuit (or re-opened it after a failed probe).
    @discardableResult
    public func failed(threshold: Int, now: ContinuousClock.Instant = .now) -> Bool {
        state.withLock { state in
            state.failures += 1
            if state.openedAt != nil {
                guard state.probing else { return false }
                state.probing = false
                state.openedAt = now
                return true
            }
            guard state.failures >= threshold else { return false }
            state.openedAt = now
            return true
        }
    }
}
