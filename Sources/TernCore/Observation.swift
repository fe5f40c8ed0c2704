import CoreMetrics
import Synchronization

/// How a request ended, as metrics and logs count it.
public enum RequestOutcome: String, Sendable, CaseIterable {
    case success
    /// The client's mistake: a 4xx (bad input, unknown model, too large).
    case clientError = "client_error"
    /// Tern's or the runtime's fault, or the server not able to take it (not ready, queue full): a 5xx.
    case serverError = "server_error"
    /// The request waited in the queue past its timeout.
    case timeout

    public init(_ error: (any Error)?) {
        guard let error else {
            self = .success
            return
        }
        guard let error = error as? TernError else {
            self = .serverError
            return
        }
        switch error.code {
        case .timedOut: self = .timeout
        case .invalidArgument, .notFound, .payloadTooLarge, .conflict, .unauthenticated, .permissionDenied, .rateLimited: self = .clientError
        default: self = .serverError
        }
    }
}

/// One inference request as it ended: what observers (metrics, logs, traces, the prediction log) see.
/// Built once per request by ``InferenceService``, whatever the protocol.
public struct InferenceEvent: Sendable {
    public var context: CallContext
    /// The version that served it; nil when the request named no loaded model.
    public var served: ServedModel?
    public var outcome: RequestOutcome
    public var error: (any Error)?
    /// From the front-end taking the request to its answer.
    public var duration: Duration
    /// The validated inputs, in the signature's order; empty when the request was refused before.
    public var inputs: [Tensor]
    /// The outputs answered; empty on failure.
    public var outputs: [Tensor]
    /// When the core took the validated request (to run or to queue); nil when it was refused before.
    public var accepted: ContinuousClock.Instant?
    /// When its batch started and ended (filled only when the service times runs, for traces).
    public var timing: RunTiming?
    /// When the core had the answer (the front-end encodes and writes it after).
    public var answered: ContinuousClock.Instant
    /// When the front-end's completion (encoding, and on the event loop writing) returned.
    public var completed: ContinuousClock.Instant
    /// When a fallback answered: the version it answered for, and why.
    public var fallback: FallbackNote? = nil
}

/// Why a fallback answered a request.
public struct FallbackNote: Sendable {
    public enum Kind: String, Sendable {
        /// The version failed.
        case error
        /// It had not answered within the fallback's timeout.
        case timeout
        /// Its circuit was open: it was not called.
        case circuitOpen = "circuit_open"
    }

    /// The version answered for (`served` is the fallback version, or this one for a default answer).
    public var from: ServedModel
    public var kind: Kind
    public var reason: String
}

/// When a request's batch ran, written by the dynamic batcher before it completes the request (so read
/// safely after): what traces show as the queue and run spans.
public final class RunTiming: @unchecked Sendable {
    public private(set) var started: ContinuousClock.Instant?
    public private(set) var ended: ContinuousClock.Instant?
    /// Requests and rows in the batch.
    public private(set) var batchRequests = 0
    public private(set) var batchRows = 0

    public init() {}

    func record(started: ContinuousClock.Instant, ended: ContinuousClock.Instant, requests: Int, rows: Int) {
        self.started = started
        self.ended = ended
        self.batchRequests = requests
        self.batchRows = rows
    }
}

/// Something that watches every inference request: called once per request, when it ends, on the thread
/// that ended it (a runner thread or an event loop). Must return at once: anything slow goes to a queue.
public protocol InferenceObserver: Sendable {
    func requestEnded(_ event: InferenceEvent)
    /// Whether to be called after the front-end has the answer (to see its encoding time, as traces do),
    /// rather than before (the default: a client's next request is then observed after this one, as the
    /// prediction log's order needs).
    var observesAfterAnswer: Bool { get }
}

extension InferenceObserver {
    public var observesAfterAnswer: Bool { false }
}

/// Metric names and their help texts: one place, so that the exposition, the dashboards and the alert rules
/// agree (docs/observability.md lists them).
public enum MetricNames {
    public static let requests = "tern_requests_total"
    public static let inFlight = "tern_requests_in_flight"
    public static let duration = "tern_request_duration_seconds"
    public static let queue = "tern_request_queue_seconds"
    public static let compute = "tern_request_compute_seconds"
    public static let batchSize = "tern_batch_size"
    public static let rows = "tern_rows_predicted_total"
    public static let modelLoaded = "tern_model_loaded"
    public static let modelLoadSeconds = "tern_model_load_seconds"
    public static let modelLoadFailures = "tern_model_load_failures_total"
    public static let registrySyncs = "tern_registry_syncs_total"
    public static let predictionLogRows = "tern_prediction_log_rows_total"
    public static let predictionLogDropped = "tern_prediction_log_dropped_total"
    public static let predictionLogQueue = "tern_prediction_log_queue_rows"
    public static let driftFeatures = "tern_drift_features_drifted"
    public static let driftPSI = "tern_drift_psi"
    public static let driftPValue = "tern_drift_pvalue"
    public static let driftDetected = "tern_drift_detected"
    public static let feedbackQuality = "tern_feedback_quality"
    public static let feedbackRows = "tern_feedback_rows"

    public static let help: [String: String] = [
        requests: "Inference requests by model, version, protocol and outcome (success, client_error, server_error, timeout).",
        inFlight: "Inference requests being served now.",
        duration: "Inference request latency, from the front-end taking the request to its answer.",
        queue: "Time inference requests waited in the dynamic batcher's queue.",
        compute: "Time the model ran for inference requests (the run of the batch each was in).",
        batchSize: "Rows in each batch the model ran.",
        rows: "Rows (inferences) predicted.",
        modelLoaded: "1 when the model version is loaded and serving, 0 when it failed to load or was unloaded.",
        modelLoadSeconds: "How long the model version took to load.",
        modelLoadFailures: "Failed attempts to load a model version.",
        registrySyncs: "Registry polls that brought the loaded models in line with the registry, by outcome.",
        predictionLogRows: "Predictions written to the prediction log.",
        predictionLogDropped: "Predictions the prediction log dropped because its queue was full.",
        predictionLogQueue: "Predicted rows waiting for the prediction log's writer (what --prediction-log-queue bounds).",
        driftFeatures: "Features of the version whose newest predictions drifted from its reference data.",
        driftPSI: "Population stability index of a feature, newest predictions against the reference data.",
        driftPValue: "The drift test's p-value of a feature (Kolmogorov-Smirnov, or chi-squared for categories).",
        driftDetected: "1 when the feature drifted by the thresholds (docs/drift.md), else 0.",
        feedbackQuality: "A version's live quality from ground-truth feedback, by metric (accuracy, roc_auc, rmse, ...).",
        feedbackRows: "Rows with ground-truth feedback behind the version's live quality.",
        "tern_alert_firing": "1 while the alert rule fires, else 0.",
        "tern_alert_value": "The alert rule's metric at its last evaluation.",
    ]
}

/// A model version's metric handles, made once when the version loads (never per request).
public final class VersionMetrics: Sendable {
    /// Each served protocol's counters by outcome (a handful: found by comparing the protocols' short names).
    private let requests: [(wire: WireProtocol, counters: [CoreMetrics.Counter])]
    private let inFlight: Meter
    private let duration: CoreMetrics.Timer
    let queue: CoreMetrics.Timer
    let compute: CoreMetrics.Timer
    let batchSize: Recorder
    let rows: CoreMetrics.Counter

    public init(model: String, version: Int, factory: any MetricsFactory, protocols: [WireProtocol] = []) {
        let labels = [("model", model), ("version", String(version))]
        requests = protocols.map { wire in
            (
                wire,
                RequestOutcome.allCases.map { outcome in
                    CoreMetrics.Counter(
                        label: MetricNames.requests,
                        dimensions: labels + [("protocol", wire.rawValue), ("outcome", outcome.rawValue)], factory: factory)
                }
            )
        }
        inFlight = Meter(label: MetricNames.inFlight, dimensions: labels, factory: factory)
        duration = CoreMetrics.Timer(label: MetricNames.duration, dimensions: labels, factory: factory)
        queue = CoreMetrics.Timer(label: MetricNames.queue, dimensions: labels, factory: factory)
        compute = CoreMetrics.Timer(label: MetricNames.compute, dimensions: labels, factory: factory)
        batchSize = Recorder(label: MetricNames.batchSize, dimensions: labels, aggregate: true, factory: factory)
        rows = CoreMetrics.Counter(label: MetricNames.rows, dimensions: labels, factory: factory)
    }

    func started() { inFlight.increment() }

    func ended(_ wire: WireProtocol, _ outcome: RequestOutcome, duration: Duration, rows: Int) {
        inFlight.decrement()
        Self.counters(requests, wire)?[Self.index(outcome)].increment()
        self.duration.recordNanoseconds(Self.nanoseconds(duration))
        if outcome == .success { self.rows.increment(by: rows) }
    }

    /// The counters of `wire` (nil for a protocol the server does not serve, such as `local`).
    static func counters(_ requests: [(wire: WireProtocol, counters: [CoreMetrics.Counter])], _ wire: WireProtocol) -> [CoreMetrics.Counter]? {
        for entry in requests where entry.wire == wire { return entry.counters }
        return nil
    }

    // The position in `allCases` (checked by a test), without building `allCases` per request.
    static func index(_ outcome: RequestOutcome) -> Int {
        switch outcome {
        case .success: 0
        case .clientError: 1
        case .serverError: 2
        case .timeout: 3
        }
    }

    public static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// Requests that named no loaded model: counted with empty model and version labels, so that unknown
/// names never create series.
final class UnresolvedMetrics: Sendable {
    private let requests: [(wire: WireProtocol, counters: [CoreMetrics.Counter])]

    init(factory: any MetricsFactory, protocols: [WireProtocol]) {
        requests = protocols.map { wire in
            (
                wire,
                RequestOutcome.allCases.map { outcome in
                    CoreMetrics.Counter(
                        label: MetricNames.requests,
                        dimensions: [
                            ("model", ""), ("version", ""), ("protocol", wire.rawValue), ("outcome", outcome.rawValue),
                        ], factory: factory)
                }
            )
        }
    }

    func ended(_ wire: WireProtocol, _ outcome: RequestOutcome) {
        VersionMetrics.counters(requests, wire)?[VersionMetrics.index(outcome)].increment()
    }
}
