import Foundation
import Instrumentation
import ServiceContextModule
import TernCore
import TernGRPC
import Tracing

/// Spans for every inference request, made when it ends from the times the core recorded, joined to the
/// caller's trace (W3C `traceparent` on REST and gRPC):
///
/// ```
/// infer credit-risk (server)      received → answered and written
///   ├─ receive                    the head → the whole body read
///   ├─ decode                     body → request tensors
///   ├─ queue                      validated → its batch starts
///   ├─ run                        the batch (batch.requests, batch.rows)
///   └─ encode                     the answer → encoded (and, on the event loop, written)
/// ```
/// Off unless an OTLP endpoint is configured; then exported by swift-otel's batch processor.
struct SpanObserver: InferenceObserver {
    let tracer: any Tracer
    var observesAfterAnswer: Bool { true }

    func requestEnded(_ event: InferenceEvent) {
        // ContinuousClock has no epoch: map its instants to the wall clock through one pair of readings.
        let nowContinuous = ContinuousClock.now
        let nowWall = UInt64(max(0, Date().timeIntervalSince1970 * 1e9))
        func at(_ instant: ContinuousClock.Instant) -> EpochInstant {
            let offset = instant.duration(to: nowContinuous)
            let (seconds, attoseconds) = offset.components
            let nanoseconds = Int64(seconds) * 1_000_000_000 + attoseconds / 1_000_000_000
            return EpochInstant(nanosecondsSinceEpoch: UInt64(max(0, Int64(nowWall) - nanoseconds)))
        }
        let context = event.context
        var parent = ServiceContext.topLevel
        if let trace = context.trace {
            tracer.extract(["traceparent": trace.header], into: &parent, using: HeaderExtractor())
        }
        let name = "infer " + (event.served?.name ?? "(unknown model)")
        let root = tracer.startAnySpan(
            name, context: parent, ofKind: .server, at: at(context.received),
            function: #function, file: #fileID, line: #line)
        root.attributes["tern.request_id"] = context.requestID
        root.attributes["rpc.system"] = context.wire == .v2GRPC ? "grpc" : "http"
        root.attributes["tern.protocol"] = context.wire.rawValue
        root.attributes["tern.outcome"] = event.outcome.rawValue
        if let served = event.served {
            root.attributes["tern.model"] = served.name
            root.attributes["tern.model_version"] = served.version
        }
        if let peer = context.peer { root.attributes["net.peer.address"] = peer }
        if let error = event.error {
            root.setStatus(SpanStatus(code: .error, message: "\(error)"))
        }
        func child(
            _ name: String, _ start: ContinuousClock.Instant?, _ end: ContinuousClock.Instant?,
            _ configure: (any Span) -> Void = { _ in }
        ) {
            guard let start, let end, start <= end else { return }
            let span = tracer.startAnySpan(
                name, context: root.context, ofKind: .internal, at: at(start),
                function: #function, file: #fileID, line: #line)
            configure(span)
            span.end(at: at(end))
        }
        child("receive", context.received, context.read)
        child("decode", context.read ?? context.received, context.decoded)
        if let timing = event.timing, let started = timing.started {
            child("queue", event.accepted, started)
            child("run", started, timing.ended) { span in
                span.attributes["tern.batch.requests"] = timing.batchRequests
                span.attributes["tern.batch.rows"] = timing.batchRows
            }
        } else {
            child("run", event.accepted, event.answered)
        }
        child("encode", event.answered, event.completed)
        root.end(at: at(event.completed))
    }
}

/// A point in time as tracers want it: nanoseconds since the Unix epoch.
struct EpochInstant: TracerInstant {
    var nanosecondsSinceEpoch: UInt64

    static func < (lhs: Self, rhs: Self) -> Bool { lhs.nanosecondsSinceEpoch < rhs.nanosecondsSinceEpoch }
}

/// Reads W3C headers from a dictionary.
struct HeaderExtractor: Extractor {
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
}
