import Logging
import Synchronization

/// Writes inference requests to the log: the core logs every fault (a 5xx the server caused) as an error
/// with everything known of the request (``logFault(_:context:served:duration:)``); this observer, when the
/// access log is on, a sampled share of all requests as one line each.
/// Lines carry `request_id`, `model`, `version`, `protocol`, `status` (the outcome), `code` (the error's),
/// `latency_ms`, `peer` and `trace_id`.
public final class RequestLogger: InferenceObserver {
    private let logger: Logger
    /// The share of requests the access log writes: 0 (off) ... 1 (every one).
    private let accessSampleRate: Double
    private let seen = Atomic<Int>(0)

    public init(accessSampleRate: Double = 0, logger: Logger = Logger(label: "tern.request")) {
        self.accessSampleRate = min(1, max(0, accessSampleRate))
        self.logger = logger
    }

    /// Lines are written once the answer is on its way.
    public var observesAfterAnswer: Bool { true }

    public func requestEnded(_ event: InferenceEvent) {
        if accessSampleRate > 0, sampled() {
            logger.info(
                "request",
                metadata: Self.metadata(
                    event.context, served: event.served, outcome: event.outcome, error: event.error, duration: event.duration))
        }
    }

    /// A fault of the server's, not a refusal it chose (not ready, queue full).
    static func isFault(_ error: any Error) -> Bool {
        guard let error = error as? TernError else { return true }
        return error.code != .unavailable && error.code != .resourceExhausted && error.code != .timedOut
    }

    private static let faultLogger = Logger(label: "tern.request")

    static func logFault(_ error: any Error, context: CallContext, served: ServedModel?, duration: Duration) {
        var metadata = Self.metadata(context, served: served, outcome: .serverError, error: error, duration: duration)
        metadata["error"] = "\(error)"
        faultLogger.error("request failed", metadata: metadata)
    }

    /// Every 1/rate-th request, spread evenly (no random numbers on the request path).
    private func sampled() -> Bool {
        if accessSampleRate >= 1 { return true }
        let count = seen.add(1, ordering: .relaxed).newValue
        return Int(Double(count) * accessSampleRate) != Int(Double(count - 1) * accessSampleRate)
    }

    static func metadata(
        _ context: CallContext, served: ServedModel?, outcome: RequestOutcome, error: (any Error)?, duration: Duration
    ) -> Logger.Metadata {
        var metadata: Logger.Metadata = [
            "request_id": "\(context.requestID)",
            "protocol": "\(context.wire.rawValue)",
            "status": "\(outcome.rawValue)",
            "latency_ms": "\(Double(VersionMetrics.nanoseconds(duration) / 1000) / 1000)",
        ]
        if let served {
            metadata["model"] = "\(served.name)"
            metadata["version"] = "\(served.version)"
        }
        if let error {
            metadata["code"] = "\((error as? TernError)?.code.description ?? "internal error")"
            if outcome != .serverError { metadata["reason"] = "\(error)" }
        }
        if let peer = context.peer { metadata["peer"] = "\(peer)" }
        if let trace = context.trace { metadata["trace_id"] = "\(trace.traceID)" }
        if let caller = context.caller { metadata["caller"] = "\(caller.name)" }
        return metadata
    }
}
