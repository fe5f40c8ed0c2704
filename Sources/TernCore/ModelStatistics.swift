import Foundation
import Synchronization

/// What one model version has served, as the Open Inference Protocol's statistics extension reports it
/// (`GET /v2/models/{m}/stats`, gRPC `ModelStatistics`, tritonclient's `get_inference_statistics`):
/// requests that succeeded and failed with their total time, time waiting in the batch queue and running,
/// how many inferences (rows) and model executions (batches). Counters only, updated without locks.
public final class ModelStatistics: Sendable {
    private let successCount = Atomic<Int>(0), successNanoseconds = Atomic<Int>(0)
    private let failCount = Atomic<Int>(0), failNanoseconds = Atomic<Int>(0)
    private let queueCount = Atomic<Int>(0), queueNanoseconds = Atomic<Int>(0)
    private let computeCount = Atomic<Int>(0), computeNanoseconds = Atomic<Int>(0)
    private let inferences = Atomic<Int>(0), executions = Atomic<Int>(0)
    private let lastInferenceMilliseconds = Atomic<Int>(0)

    /// The version's metric handles, attached once when the version joins a catalog.
    private let metrics = AtomicLazyReference<VersionMetrics>()

    public init() {}

    /// Sends what is recorded from now on to `versionMetrics` too; the first attached stays.
    public func attach(_ versionMetrics: @autoclosure () -> VersionMetrics) {
        if metrics.load() == nil { _ = metrics.storeIfNil(versionMetrics()) }
    }

    /// The attached metric handles, if any.
    public var versionMetrics: VersionMetrics? { metrics.load() }

    /// A request answered (or refused after it reached the model): its time from the core's entry to its answer.
    public func recordRequest(succeeded: Bool, duration: Duration, rows: Int) {
        let nanoseconds = Self.nanoseconds(duration)
        if succeeded {
            successCount.add(1, ordering: .relaxed)
            successNanoseconds.add(nanoseconds, ordering: .relaxed)
            inferences.add(max(1, rows), ordering: .relaxed)
        } else {
            failCount.add(1, ordering: .relaxed)
            failNanoseconds.add(nanoseconds, ordering: .relaxed)
        }
        lastInferenceMilliseconds.store(Int(Date().timeIntervalSince1970 * 1000), ordering: .relaxed)
    }

    /// One model execution serving `requests` requests: each is counted with the run's time as its compute time.
    public func recordExecution(duration: Duration, requests: Int, rows: Int) {
        if let metrics = metrics.load() {
            let nanoseconds = VersionMetrics.nanoseconds(duration)
            for _ in 0..<requests { metrics.compute.recordNanoseconds(nanoseconds) }
            metrics.batchSize.record(rows)
        }
        executions.add(1, ordering: .relaxed)
        computeCount.add(requests, ordering: .relaxed)
        computeNanoseconds.add(Self.nanoseconds(duration) * requests, ordering: .relaxed)
    }

    /// A request's wait in the batch queue.
    public func recordQueue(_ duration: Duration) {
        metrics.load()?.queue.recordNanoseconds(VersionMetrics.nanoseconds(duration))
        queueCount.add(1, ordering: .relaxed)
        queueNanoseconds.add(Self.nanoseconds(duration), ordering: .relaxed)
    }

    /// The counters at one moment.
    public var snapshot: Snapshot {
        Snapshot(
            success: .init(count: successCount.load(ordering: .relaxed), nanoseconds: successNanoseconds.load(ordering: .relaxed)),
            fail: .init(count: failCount.load(ordering: .relaxed), nanoseconds: failNanoseconds.load(ordering: .relaxed)),
            queue: .init(count: queueCount.load(ordering: .relaxed), nanoseconds: queueNanoseconds.load(ordering: .relaxed)),
            compute: .init(count: computeCount.load(ordering: .relaxed), nanoseconds: computeNanoseconds.load(ordering: .relaxed)),
            inferenceCount: inferences.load(ordering: .relaxed), executionCount: executions.load(ordering: .relaxed),
            lastInferenceMilliseconds: lastInferenceMilliseconds.load(ordering: .relaxed))
    }

    public struct Counter: Sendable, Equatable {
        public var count: Int
        public var nanoseconds: Int

        public init(count: Int, nanoseconds: Int) {
            self.count = count
            self.nanoseconds = nanoseconds
        }

        public static let zero = Counter(count: 0, nanoseconds: 0)
    }

    public struct Snapshot: Sendable, Equatable {
        public var success: Counter
        public var fail: Counter
        public var queue: Counter
        public var compute: Counter
        public var inferenceCount: Int
        public var executionCount: Int
        /// Milliseconds since the Unix epoch; 0 before the first request.
        public var lastInferenceMilliseconds: Int
    }

    private static func nanoseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
    }
}
