import CoreMetrics
import Foundation
import Logging
import Synchronization
import TernCore
import TernModels
import TernMonitoring

/// Shadow versions (a traffic policy's `shadows`): each answered request of the model is copied to them off
/// the request path, through a bounded queue (full: the copy is dropped and counted, never the client
/// delayed), and their outputs are compared with the answering version's: for label outputs (integers,
/// strings) the agreement rate, for scores the mean and largest absolute difference. The comparison is in
/// `GET /api/v1/models/{m}/traffic` and in the metrics.
package final class ShadowTraffic: InferenceObserver, Sendable {
    /// One shadow version's comparison so far.
    package struct Comparison: Sendable {
        var requests = 0
        var failed = 0
        var dropped = 0
        var labels = 0
        var agreeing = 0
        var scores = 0
        var differenceSum = 0.0
        var differenceMax = 0.0

        var object: [String: Any] {
            var object: [String: Any] = ["requests": requests, "failed": failed, "dropped": dropped]
            if labels > 0 { object["label_agreement"] = Double(agreeing) / Double(labels) }
            if scores > 0 {
                object["score_mean_abs_difference"] = differenceSum / Double(scores)
                object["score_max_abs_difference"] = differenceMax
            }
            return object
        }
    }

    package let catalog: ModelCatalog
    package let factory: any MetricsFactory
    package let logger: Logger
    /// Copies waiting or running at most; past it, copies are dropped.
    package let capacity: Int
    private let pending = Atomic<Int>(0)
    private let comparisons = Mutex<[String: [Int: Comparison]]>([:])

    package init(catalog: ModelCatalog, factory: any MetricsFactory, capacity: Int = 64, logger: Logger) {
        self.catalog = catalog
        self.factory = factory
        self.capacity = capacity
        self.logger = logger
    }

    package func requestEnded(_ event: InferenceEvent) {
        guard catalog.hasShadows, event.error == nil, event.context.operation == .infer, let served = event.served, !event.inputs.isEmpty else {
            return
        }
        let (policy, shadows): (TrafficPolicy?, [ServedModel]) = catalog.read { state in
            guard let policy = state.traffic[served.name], !policy.shadows.isEmpty,
                !policy.shadows.contains(served.version)
            else { return (nil, []) }
            return (policy, policy.shadows.compactMap { state.models[served.name]?[$0] })
        }
        guard policy != nil else { return }
        let inputs = event.inputs, primary = event.outputs
        for shadow in shadows {
            guard pending.add(1, ordering: .relaxed).newValue <= capacity else {
                pending.subtract(1, ordering: .relaxed)
                record(served.name, shadow.version) { $0.dropped += 1 }
                Counter(
                    label: "tern_shadow_dropped_total", dimensions: [("model", served.name), ("version", String(shadow.version))],
                    factory: factory
                ).increment()
                continue
            }
            Task.detached(priority: .background) { [self] in
                defer { pending.subtract(1, ordering: .relaxed) }
                do {
                    let outputs = try await shadow.model.run(inputs: inputs, outputs: primary.map(\.name))
                    compare(served.name, shadow.version, primary: primary, shadow: outputs)
                } catch {
                    record(served.name, shadow.version) { $0.failed += 1 }
                    logger.debug("shadow run failed", metadata: ["model": "\(served.name)", "version": "\(shadow.version)", "error": "\(error)"])
                }
            }
        }
    }

    private func record(_ model: String, _ version: Int, _ change: (inout Comparison) -> Void) {
        comparisons.withLock { change(&$0[model, default: [:]][version, default: Comparison()]) }
    }

    private func compare(_ model: String, _ version: Int, primary: [Tensor], shadow: [Tensor]) {
        var labels = 0, agreeing = 0, scores = 0, sum = 0.0, largest = 0.0
        for (a, b) in zip(primary, shadow) where a.name == b.name {
            switch a.datatype {
            case .fp32, .fp64, .fp16:
                let x = Self.doubles(a), y = Self.doubles(b)
                guard x.count == y.count else { continue }
                for (p, q) in zip(x, y) {
                    let difference = abs(p - q)
                    scores += 1
                    sum += difference
                    largest = max(largest, difference)
                }
            default:
                let x = Self.labels(a), y = Self.labels(b)
                guard x.count == y.count else { continue }
                labels += x.count
                agreeing += zip(x, y).filter { $0 == $1 }.count
            }
        }
        record(model, version) { comparison in
            comparison.requests += 1
            comparison.labels += labels
            comparison.agreeing += agreeing
            comparison.scores += scores
            comparison.differenceSum += sum
            comparison.differenceMax = max(comparison.differenceMax, largest)
        }
        let dimensions = [("model", model), ("version", String(version))]
        Counter(label: "tern_shadow_requests_total", dimensions: dimensions, factory: factory).increment()
        if labels > 0 {
            Counter(label: "tern_shadow_labels_total", dimensions: dimensions, factory: factory).increment(by: labels)
            Counter(label: "tern_shadow_labels_agreeing_total", dimensions: dimensions, factory: factory).increment(by: agreeing)
        }
        if scores > 0 {
            Recorder(label: "tern_shadow_score_abs_difference", dimensions: dimensions, factory: factory).record(sum / Double(scores))
        }
    }

    /// Each shadow version's comparison for a model, keyed by version.
    package func comparison(model: String) -> [String: Any] {
        comparisons.withLock { $0[model] ?? [:] }.reduce(into: [String: Any]()) { $0[String($1.key)] = $1.value.object }
    }

    private static func doubles(_ tensor: Tensor) -> [Double] {
        if let v = tensor.values(as: Float.self) { return v.map(Double.init) }
        if let v = tensor.values(as: Double.self) { return v }
        if let v = tensor.values(as: Float16.self) { return v.map { Double(Float($0)) } }
        return []
    }

    private static func labels(_ tensor: Tensor) -> [String] {
        if let strings = tensor.strings { return strings }
        guard case .raw(let bytes) = tensor.contents, let size = tensor.datatype.byteSize, size > 0 else { return [] }
        return stride(from: 0, to: bytes.count, by: size).map { bytes[$0..<min($0 + size, bytes.count)].map { String($0) }.joined(separator: ".") }
    }
}
