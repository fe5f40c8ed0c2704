import CoreMetrics
import TernCore

/// Model loads and registry syncs, as metrics: made per event (loads are rare), kept by the registry.
public struct LoadMetrics: Sendable {
    package let factory: any MetricsFactory

    public init(factory: any MetricsFactory) { self.factory = factory }

    public func loaded(_ model: String, _ version: Int, seconds: Double) {
        let labels = [("model", model), ("version", String(version))]
        Gauge(label: MetricNames.modelLoaded, dimensions: labels, factory: factory).record(1)
        Gauge(label: MetricNames.modelLoadSeconds, dimensions: labels, factory: factory).record(seconds)
    }

    public func failed(_ model: String, _ version: Int) {
        let labels = [("model", model), ("version", String(version))]
        Gauge(label: MetricNames.modelLoaded, dimensions: labels, factory: factory).record(0)
        CoreMetrics.Counter(label: MetricNames.modelLoadFailures, dimensions: labels, factory: factory).increment()
    }

    public func unloaded(_ model: String, _ version: Int) {
        Gauge(label: MetricNames.modelLoaded, dimensions: [("model", model), ("version", String(version))], factory: factory)
            .record(0)
    }

    public static func seconds(since started: ContinuousClock.Instant) -> Double {
        let (seconds, attoseconds) = started.duration(to: .now).components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    public func synced(succeeded: Bool) {
        CoreMetrics.Counter(
            label: MetricNames.registrySyncs, dimensions: [("outcome", succeeded ? "success" : "failure")],
            factory: factory
        ).increment()
    }
}
