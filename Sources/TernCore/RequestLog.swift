import Logging
import Synchronization

/// Writes inference requests to the log: every fault (a 5xx the server caused) as an error with everything
/// known of the request, and, when the access log is on, a sampled share of all requests as one line each.
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
        let fault = event.outcome == .serverError && (event.error as? TernError)?.code != .unavailable
            && (event.error as? TernError)?.code != .resourceExhausted
        if fault {
            var metadata = Self.metadata(event)
            metadata["error"] = "\(event.error.map { "\($0)" } ?? "")"
            logger.error("request failed", metadata: metadata)
        } else if accessSampleRate > 0, sampled() {
            logger.info("request", metadata: Self.metadata(event))
        }
    }

    /// Every 1/rate-th request, spread evenly (no random numbers on the request path).
    private func sampled() -> Bool {
        if accessSampleRate >= 1 { return true }
        let count = seen.add(1, ordering: .relaxed).newValue
        return Int(Double(count) * accessSampleRate) != Int(Double(count - 1) * accessSampleRate)
    }

    static func metadata(_ event: InferenceEvent) -> Logger.Metadata {
        var metadata: Logger.Metadata = [
            "request_id": "\(event.context.requestID)",
            "protocol": "\(event.context.wire.rawValue)",
            "status": "\(event.outcome.rawValue)",
            "latency_ms": "\(Double(VersionMetrics.nanoseconds(event.duration) / 1000) / 1000)",
        ]
        if let served = event.served {
            metadata["model"] = "\(served.name)"
            metadata["version"] = "\(served.version)"
        }
        if let error = event.error {
            metadata["code"] = "\((error as? TernError)?.code.description ?? "internal error")"
            if event.outcome != .serverError { metadata["reason"] = "\(error)" }
        }
        if let peer = event.context.peer { metadata["peer"] = "\(peer)" }
        if let trace = event.context.trace { metadata["trace_id"] = "\(trace.traceID)" }
        if let caller = event.context.caller { metadata["caller"] = "\(caller)" }
        return metadata
    }
}
