import DequeModule
import Foundation
import Synchronization
import TernCodecs
import TernCore
import TernModels
import TernRegistry

/// Live windows for drift: each served version's newest predictions, kept in memory as they are answered,
/// so drift needs no database (the prediction log may be off) and costs the request path one append.
///
/// The observer only keeps the event (its tensors are shared, not copied); rows are built when a window is
/// read (``records(of:window:since:until:)``), as the prediction log builds them, so both sources give the
/// same columns. Each version keeps its newest `capacity` predictions: a window by count slides over them,
/// a window by time (`since`/`until`) takes those in the range. Each version's ring is bounded three ways: by
/// predictions (`capacity`), by rows (`maxRows`) and by bytes of tensors (`maxBytes`), so that a few huge
/// requests cannot hold gigabytes or make every drift pass long; a request larger than `maxBytes` or
/// `maxRows` alone is not kept in memory (drift then reads it from the prediction log).
public final class DriftWindows: InferenceObserver {
    /// What a window needs of a prediction: when, and the tensors (shared with the request, not copied).
    package struct Entry {
        var time: Int64
        var requestID: String
        var latency: Duration
        var inputs: [Tensor]
        var outputs: [Tensor]
        var rows: Int
        var bytes: Int
    }
    /// One version's newest predictions, behind its own lock (versions do not contend).
    package final class Ring: Sendable {
        /// The version, by value: a ring must not keep an unloaded version's session alive.
        let model: String
        let version: Int
        struct State {
            var entries = Deque<Entry>()
            /// Whether older entries were dropped (the ring then covers only from its oldest entry).
            var dropped = false
            var rows = 0
            var bytes = 0
        }
        let state = Mutex(State())
        init(model: String, version: Int) {
            self.model = model
            self.version = version
        }
    }
    /// Rings by loaded version object (an `ObjectIdentifier` hashes as one word). An identifier reused by
    /// another version after the first was freed is noticed by name and version; a version loaded again
    /// takes over its ring.
    private let rings = Mutex<[ObjectIdentifier: Ring]>([:])
    public let capacity: Int
    /// Rows (first dimensions) and tensor bytes each version keeps at most.
    public let maxRows: Int
    public let maxBytes: Int
    /// Since when every answered prediction is here (entries older than a dropped one are not).
    private let started = Int64(Date().timeIntervalSince1970 * 1000)

    public init(capacity: Int = 1_000, maxRows: Int = 10_000, maxBytes: Int = 16 << 20) {
        self.capacity = capacity
        self.maxRows = maxRows
        self.maxBytes = maxBytes
    }

    private static func size(_ tensors: [Tensor]) -> Int {
        tensors.reduce(0) { total, tensor in
            switch tensor.contents {
            case .raw(let bytes): total + bytes.count
            case .strings(let elements): elements.reduce(total) { $0 + $1.count + 16 }
            }
        }
    }

    /// After the answer: nothing here delays it.
    public var observesAfterAnswer: Bool { true }

    public func requestEnded(_ event: InferenceEvent) {
        guard event.error == nil, event.context.operation == .infer, let served = event.served, !event.outputs.isEmpty else { return }
        let id = ObjectIdentifier(served)
        let ring = rings.withLock { rings in
            if let ring = rings[id], ring.model == served.name, ring.version == served.version { return ring }
            let previous = rings.first { $0.value.model == served.name && $0.value.version == served.version }
            if let previous { rings.removeValue(forKey: previous.key) }
            let ring = previous?.value ?? Ring(model: served.name, version: served.version)
            rings[id] = ring
            return ring
        }
        let bytes = Self.size(event.inputs) + Self.size(event.outputs)
        let rows = max(1, event.inputs.first?.shape.first ?? 1)
        guard bytes <= maxBytes, rows <= maxRows else {
            ring.state.withLock { $0.dropped = true }
            return
        }
        let entry = Entry(
            time: Int64(event.context.receivedAt.timeIntervalSince1970 * 1000), requestID: event.context.requestID,
            latency: event.duration, inputs: event.inputs, outputs: event.outputs, rows: rows, bytes: bytes)
        // The evicted entries are released after the lock, not under it.
        let evicted: [Entry] = ring.state.withLock { state in
            state.entries.append(entry)
            state.rows += rows
            state.bytes += bytes
            var evicted: [Entry] = []
            while state.entries.count > 1,
                state.entries.count > capacity || state.rows > maxRows || state.bytes > maxBytes
            {
                let first = state.entries.removeFirst()
                state.rows -= first.rows
                state.bytes -= first.bytes
                state.dropped = true
                evicted.append(first)
            }
            return evicted
        }
        _ = evicted
    }

    /// The window as prediction-log records: the newest `window` of the version's predictions (or those in
    /// `since`...`until`, the first `window` of them), and whether memory holds all of that window (a count
    /// window it could fill; a time window it reaches back to). An incomplete window may be fuller in the
    /// prediction log (older predictions, from before a restart).
    package func records(of served: ServedModel, window: Int, since: Int64?, until: Int64?) -> (records: [PredictionRecord], complete: Bool) {
        let ring = rings.withLock { rings in rings.values.first { $0.model == served.name && $0.version == served.version } }
        guard let ring else { return ([], false) }
        let (entries, coveredFrom): ([Entry], Int64) = ring.state.withLock { state in
            let from = state.dropped ? state.entries.first?.time ?? started : started
            if since == nil, until == nil { return (Array(state.entries.suffix(window)), from) }
            return (
                state.entries.filter { entry in
                    (since.map { entry.time >= $0 } ?? true) && (until.map { entry.time <= $0 } ?? true)
                }.prefix(window).map { $0 }, from
            )
        }
        let complete = since == nil && until == nil ? entries.count >= window : (since ?? 0) >= coveredFrom || entries.count >= window
        let settings = served.config.predictionLog
        return (
            entries.map { entry in
                PredictionRecord(
                    time: entry.time, requestID: entry.requestID, model: served.name, version: served.version, protocol: "",
                    latencyMicroseconds: 0,
                    inputs: PredictionRecordEncoder.rows(entry.inputs, featureNames: served.featureNames, redact: settings.redact),
                    outputs: PredictionRecordEncoder.rows(entry.outputs, redact: settings.redact))
            }, complete
        )
    }

    /// The 99th percentile (nearest rank) of a version's successful requests' latency over the last `span`;
    /// nil without requests in it.
    package func latencyP99(of served: ServedModel, over span: Duration) -> Duration? {
        let ring = rings.withLock { rings in rings.values.first { $0.model == served.name && $0.version == served.version } }
        guard let ring else { return nil }
        let cutoff = Int64(Date().timeIntervalSince1970 * 1000) - Int64(span / .milliseconds(1))
        var latencies = ring.state.withLock { state in state.entries.reversed().prefix { $0.time >= cutoff }.map(\.latency) }
        guard !latencies.isEmpty else { return nil }
        latencies.sort()
        let rank = Int((0.99 * Double(latencies.count)).rounded(.up))
        return latencies[max(0, rank - 1)]
    }
}
