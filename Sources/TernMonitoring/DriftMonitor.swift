import CoreMetrics
import Logging
import ServiceLifecycle
import TernCore
import TernModels

/// Drift as Prometheus gauges: every interval, each served model's default version's newest predictions
/// against its bundle's reference (``LiveDrift/drift(of:window:since:until:)``), exported as
/// `tern_drift_psi{model,version,feature}`, `tern_drift_ks_pvalue{...}` (numeric features),
/// `tern_drift_detected{...}` (0 or 1) and `tern_drift_features_drifted{model,version}`.
/// Computed off the request path, from the prediction log: serving never waits for it.
///
/// With feedback, each version's live quality too: `tern_feedback_quality{model,version,metric}` (accuracy,
/// precision, recall, f1, roc_auc, log_loss; mae, rmse, r2) over the newest `window` predictions with
/// ground truth, and `tern_feedback_rows{model,version}`.
package struct DriftMonitor: Service {
    package let drift: LiveDrift
    package let feedback: LiveFeedback?
    package let service: InferenceService
    package let interval: Duration
    package let window: Int
    package let factory: any MetricsFactory
    package let logger: Logger

    package init(
        drift: LiveDrift, feedback: LiveFeedback?, service: InferenceService, interval: Duration, window: Int, factory: any MetricsFactory,
        logger: Logger
    ) {
        self.drift = drift
        self.feedback = feedback
        self.service = service
        self.interval = interval
        self.window = window
        self.factory = factory
        self.logger = logger
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                await measure()
            }
        }
    }

    package func measure() async {
        for name in service.catalog.modelNames {
            if let feedback, let versions = try? await feedback.performance(of: name, since: nil, newest: window) {
                for version in versions {
                    guard let live = version.live else { continue }
                    let labels = [("model", name), ("version", String(version.version))]
                    Gauge(label: MetricNames.feedbackRows, dimensions: labels, factory: factory).record(version.rows)
                    let values: [(String, Double?)] = [
                        ("accuracy", live.accuracy), ("precision", live.precision), ("recall", live.recall), ("f1", live.f1),
                        ("roc_auc", live.rocAuc), ("log_loss", live.logLoss), ("mae", live.mae), ("rmse", live.rmse), ("r2", live.r2),
                    ]
                    for (metric, value) in values {
                        if let value {
                            Gauge(label: MetricNames.feedbackQuality, dimensions: labels + [("metric", metric)], factory: factory).record(value)
                        }
                    }
                }
            }
            guard let served = try? service.catalog.resolveStable(name: name, version: nil),
                let answer = try? await drift.drift(of: served, window: window), answer.predictions > 0
            else { continue }
            let labels = [("model", served.name), ("version", String(served.version))]
            Gauge(label: MetricNames.driftFeatures, dimensions: labels, factory: factory).record(answer.drifted.count)
            for feature in answer.features {
                let featureLabels = labels + [("feature", feature.feature)]
                if let psi = feature.psi { Gauge(label: MetricNames.driftPSI, dimensions: featureLabels, factory: factory).record(psi) }
                if let p = feature.ksPValue ?? feature.chiSquaredPValue {
                    Gauge(label: MetricNames.driftPValue, dimensions: featureLabels, factory: factory).record(p)
                }
                Gauge(label: MetricNames.driftDetected, dimensions: featureLabels, factory: factory).record(feature.drifted ? 1 : 0)
            }
        }
    }
}
