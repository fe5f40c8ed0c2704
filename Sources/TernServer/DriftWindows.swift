import DequeModule
import Foundation
import Synchronization
import TernCore
import TernRegistry

/// Live windows for drift: each served version's newest predictions, kept in memory as they are answered,
/// so drift needs no database (the prediction log may be off) and costs the request path one append.
///
/// The observer only keeps the event (its tensors are shared, not copied); rows are built when a window is
/// read (``records(of:window:since:until:)``), as the prediction log builds them, so both sources give the
/// same columns. Each version keeps its newest `capacity` predictions: a window by count slides over them,
/// a window by time (`since`/`until`) takes those in the range.
public final class DriftWindows: InferenceObserver {
    private struct Ring {
        var events = Deque<InferenceEvent>()
        /// Whether older events were dropped (the ring then covers only from its oldest event).
        var dropped = false
    }
    private let rings = Mutex<[VersionKey: Ring]>([:])
    public let capacity: Int
    /// Since when every answered prediction is here (events older than a dropped one are not).
    private let started = Int64(Date().timeIntervalSince1970 * 1000)

    public init(capacity: Int = 10_000) {
        self.capacity = capacity
    }

    /// After the answer: nothing here delays it.
    public var observesAfterAnswer: Bool { true }

    public func requestEnded(_ event: InferenceEvent) {
        guard event.error == nil, let served = event.served, !event.outputs.isEmpty else { return }
        let key = VersionKey(served.name, served.version)
        rings.withLock { rings in
            var ring = rings.removeValue(forKey: key) ?? Ring()
            if ring.events.count >= capacity {
                ring.events.removeFirst()
                ring.dropped = true
            }
            ring.events.append(event)
            rings[key] = ring
        }
    }

    /// The window as prediction-log records: the newest `window` of the version's predictions (or those in
    /// `since`...`until`, the first `window` of them), and whether memory holds all of that window (a count
    /// window it could fill; a time window it reaches back to). An incomplete window may be fuller in the
    /// prediction log (older predictions, from before a restart).
    func records(of served: ServedModel, window: Int, since: Int64?, until: Int64?) -> (records: [PredictionRecord], complete: Bool) {
        let key = VersionKey(served.name, served.version)
        let (events, coveredFrom): ([InferenceEvent], Int64) = rings.withLock { rings in
            guard let ring = rings[key] else { return ([], started) }
            let from = ring.dropped ? ring.events.first.map { Self.time($0) } ?? started : started
            if since == nil, until == nil { return (Array(ring.events.suffix(window)), from) }
            return (ring.events.filter { event in
                let time = Self.time(event)
                return (since.map { time >= $0 } ?? true) && (until.map { time <= $0 } ?? true)
            }.prefix(window).map { $0 }, from)
        }
        let complete = since == nil && until == nil ? events.count >= window : (since ?? 0) >= coveredFrom || events.count >= window
        return (events.map(PredictionLog.record), complete)
    }

    private static func time(_ event: InferenceEvent) -> Int64 {
        Int64(event.context.receivedAt.timeIntervalSince1970 * 1000)
    }
}
