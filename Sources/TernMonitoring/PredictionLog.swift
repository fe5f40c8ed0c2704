import CoreMetrics
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TernCodecs
import TernCore
import TernModels
import TernRegistry

/// Where the prediction log goes and what it keeps.
public struct PredictionLogConfiguration: Sendable {
    public var location: PredictionLogLocation
    /// Predicted rows waiting for the writer (a request of 32 rows counts 32); past it new predictions are
    /// dropped (and counted), never waited for. Counting rows, not requests, bounds the memory the queue
    /// holds whatever the batch size. A request larger than this is still taken when nothing waits.
    public var queueCapacity = 20_000
    /// How often the writer wakes to write what has queued.
    public var flushInterval: Duration = .milliseconds(250)
    /// Retention: records older than this are deleted (checked every minute); nil keeps them. 30 days by
    /// default (`--prediction-log-retention`, `forever` to keep everything).
    public var maxAge: Duration? = .seconds(30 * 86_400)
    /// Retention: at most this many records are kept (the oldest go first); nil keeps them all.
    public var maxRows: Int?
    /// Encrypts each record's inputs and outputs at rest (`--prediction-log-key`); nil: plain.
    public var cipher: PayloadCipher?

    public init(location: PredictionLogLocation) {
        self.location = location
    }
}

/// The prediction log: every successful prediction (or a model's configured share, `prediction_log` in its
/// config.yaml) with its request id, model, version, protocol, latency, inputs and outputs, recorded off the
/// request path.
///
/// ``requestEnded(_:)`` copies the prediction into its version's ``PredictionDraft`` in the queue of the core it
/// runs on, under that queue's lock (the header fields and the tensors' bytes appended to two buffers; nothing
/// of the request is kept, so the writer frees nothing an event loop allocated); a writer task wakes every
/// ``PredictionLogConfiguration/flushInterval``, swaps out every core's drafts, merges each version's by the
/// time their requests arrived and hands them to the store in one append (a database deflates each into a block,
/// ``PredictionBlock``; JSON Lines files get the JSON records); no JSON is made on the request's thread. A full queue drops the new
/// prediction and counts it (`tern_prediction_log_dropped_total`). A graceful stop writes everything queued
/// before the process exits (the front-ends have stopped by then); a crash loses what was queued, at most
/// one flush interval's predictions.
public final class PredictionLog: InferenceObserver, Service {
    /// What one core's requests queued since the writer's last pass (``PerProcessor``: the event loops on
    /// different cores never wait for one lock or pass a draft's buffers between them).
    private struct Queue {
        /// A draft per served version (another once one fills).
        var drafts: [PredictionDraft] = []
        /// The open draft of each served version, by the version's identity.
        var open: [ObjectIdentifier: Int] = [:]
        /// The versions of the drafts, held until the writer's pass so that an identity is not reused meanwhile.
        var held: [ServedModel] = []
        /// The rows of the predictions queued here.
        var rows = 0
        /// The predictions the last pass took from here (a new draft's first capacity, up to 8,192: past it
        /// the buffers grow, rather than every version's draft reserving what all of them took).
        var lastPass = 0
        /// Predictions ever queued here, and those the writer has finished with (written, or lost to a failed write).
        var queuedTotal = 0
        var settledTotal = 0
    }

    public let configuration: PredictionLogConfiguration
    private let opened = AtomicLazyReference<SinkBox>()
    private let queues = PerProcessor { Queue() }
    /// The rows queued on all cores (what ``PredictionLogConfiguration/queueCapacity`` bounds), reserved
    /// before a prediction is queued.
    private let rows = Atomic<Int>(0)
    /// Predictions of sampled models seen (``ModelConfig`` `prediction_log.sample_rate` below 1).
    private let seen = Atomic<Int>(0)
    /// Held while the store is written (a batch, or retention): the writer task and readers catching up
    /// (``caughtUp()``) take turns.
    private let writing = AsyncLock()
    private let factory: any MetricsFactory
    private let droppedCounters = Mutex<[String: CoreMetrics.Counter]>([:])
    private let writtenCounters = Mutex<[String: CoreMetrics.Counter]>([:])
    private let logger: Logger
    private let written = Atomic<Int>(0)

    public init(configuration: PredictionLogConfiguration, factory: any MetricsFactory, logger: Logger) {
        self.configuration = configuration
        self.factory = factory
        self.logger = logger
    }

    /// Predicted rows waiting for the writer (what the queue's capacity bounds).
    public var queuedRows: Int { rows.load(ordering: .relaxed) }

    /// The queue's gauge, in Prometheus's text format, read at each scrape.
    package var exposition: String {
        let name = MetricNames.predictionLogQueue
        return "# HELP \(name) \(MetricNames.help[name] ?? "")\n# TYPE \(name) gauge\n\(name) \(queuedRows)\n"
    }

    /// Predictions written since start.
    public var writtenCount: Int { written.load(ordering: .relaxed) }

    /// On the request's thread: room reserved in the queue, then, under the lock of this core's queue, the
    /// prediction's header and tensors' bytes appended to its version's draft (nothing of the request is kept:
    /// the writer frees nothing the event loops allocated).
    public func requestEnded(_ event: InferenceEvent) {
        guard event.outcome == .success, let served = event.served else { return }
        let rate = served.config.predictionLog.sampleRate
        guard rate > 0 else { return }
        let rows = Self.rows(event)
        let context = event.context
        let time = Int64(context.receivedAt.timeIntervalSince1970 * 1_000_000)
        let wire = context.operation == .explain ? context.wire.rawValue + PredictionRecord.explanationSuffix : context.wire.rawValue
        let latency = VersionMetrics.nanoseconds(event.duration) / 1000
        let capacity = configuration.queueCapacity
        if rate < 1 {
            // A model's share, spread evenly over all requests whichever core answers them.
            let seen = self.seen.wrappingAdd(1, ordering: .relaxed).newValue
            if Int(Double(seen) * rate) == Int(Double(seen - 1) * rate) { return }
        }
        let kept = queues.withLocal { queue -> Bool in
            guard reserve(rows, capacity: capacity) else { return false }
            let id = ObjectIdentifier(served)
            var index: Int
            if let open = queue.open[id], !queue.drafts[open].isFull {
                index = open
            } else {
                // The model's feature names and redacted fields are kept by the draft, once for all its predictions.
                index = queue.drafts.count
                queue.drafts.append(
                    PredictionDraft(
                        model: served.name, version: served.version, featureNames: served.featureNames,
                        redact: served.config.predictionLog.redact, expected: min(queue.lastPass, 8192)))
                queue.open[id] = index
                queue.held.append(served)
            }
            queue.drafts[index].append(
                microseconds: time, requestID: context.requestID, protocol: wire, latencyMicroseconds: latency,
                caller: context.caller?.name, traceID: context.trace?.traceID, inputs: event.inputs, outputs: event.outputs)
            queue.rows += rows
            queue.queuedTotal += 1
            return true
        }
        if !kept { counter(droppedCounters, MetricNames.predictionLogDropped, served.name).increment() }
    }

    /// Takes room for `count` rows in the queue: false when it would pass `capacity`, unless nothing waits (a
    /// request larger than the whole queue is still taken when it is empty).
    private func reserve(_ count: Int, capacity: Int) -> Bool {
        var current = rows.load(ordering: .relaxed)
        while true {
            guard current == 0 || current + count <= capacity else { return false }
            let (exchanged, found) = rows.compareExchange(expected: current, desired: current + count, ordering: .relaxed)
            if exchanged { return true }
            current = found
        }
    }

    private func counter(_ counters: borrowing Mutex<[String: CoreMetrics.Counter]>, _ label: String, _ model: String) -> CoreMetrics.Counter {
        counters.withLock { counters in
            if let counter = counters[model] { return counter }
            let counter = CoreMetrics.Counter(label: label, dimensions: [("model", model)], factory: factory)
            counters[model] = counter
            return counter
        }
    }

    /// Opens the store (before the server starts, so that a bad location stops it with one line).
    public func open() async throws(TernError) {
        guard opened.load() == nil else { return }
        let sink: any PredictionSink
        do {
            sink = try await configuration.location.open(cipher: configuration.cipher)
        } catch {
            throw TernError(error.code, error.message + " (choose another place with --prediction-log, or turn it off with --prediction-log off)")
        }
        _ = opened.storeIfNil(SinkBox(sink))
        // What was asked and answered is as private as the data it came from: only this user reads the log.
        if case .database(.sqlite(let path)) = configuration.location {
            for file in [path, path + "-wal", path + "-shm"] where FileManager.default.fileExists(atPath: file) {
                try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
            }
        }
    }

    private var store: any PredictionSink { opened.load()!.sink }

    public func run() async throws {
        try await open()
        logger.info("prediction log", metadata: ["store": "\(configuration.location)"])
        var lastPrune = ContinuousClock.now - .seconds(3600)
        var lastPass = ContinuousClock.now
        let stopping = Atomic<Bool>(false)
        await withGracefulShutdownHandler {
            while true {
                let stop = stopping.load(ordering: .relaxed)
                let taken = await flush()
                if stop { break }
                if lastPrune.duration(to: .now) > .seconds(60) {
                    lastPrune = .now
                    await prune()
                }
                // The next pass comes after the interval, or sooner when, at the rate the last one saw, a
                // quarter of the queue's rows fills first (large requests), so that it never fills and drops;
                // a burst after a quiet spell is caught by a look at the queue every 10 ms. Each pass is a
                // transaction and wakeups: lighter traffic waits the whole interval.
                let elapsed = lastPass.duration(to: .now)
                lastPass = .now
                let quarter = max(1, configuration.queueCapacity / 4)
                let fill = taken > 0 ? elapsed * (Double(quarter) / Double(taken)) : configuration.flushInterval
                let next = ContinuousClock.now + max(.milliseconds(10), min(configuration.flushInterval, fill))
                repeat {
                    try? await Task.sleep(for: min(.milliseconds(10), ContinuousClock.now.duration(to: next)))
                } while ContinuousClock.now < next && !Task.isCancelled && !stopping.load(ordering: .relaxed)
                    && queuedRows < quarter
                if Task.isCancelled { stopping.store(true, ordering: .relaxed) }
            }
        } onGracefulShutdown: {
            stopping.store(true, ordering: .relaxed)
        }
        await flush()
        await store.close()
    }

    /// Writes everything queued now (one pass: what arrives meanwhile waits for the next) and returns how many
    /// rows it took; with `target`, passes until the first `target` predictions ever queued are settled
    /// (written, or lost to a failed write). One writer at a time, whoever calls: the store takes one
    /// transaction at a time.
    @discardableResult
    package func flush(upTo targets: [Int]? = nil) async -> Int {
        var taken = 0
        await writing.lock()
        defer { writing.unlock() }
        // With targets: until they are settled; without: one pass that takes something (or finds nothing).
        while targets.map({ !isSettled($0) }) ?? (taken == 0) {
            // Everything queued on every core, swapped out in one step per core: requests never wait for the
            // writer's work under a lock.
            var drafts: [PredictionDraft] = []
            var held: [ServedModel] = []
            var counts: [Int] = []
            var rows = 0
            for index in 0..<queues.count {
                let (part, partRows, count, partHeld) = queues.with(index) { queue -> ([PredictionDraft], Int, Int, [ServedModel]) in
                    var drafts: [PredictionDraft] = []
                    var held: [ServedModel] = []
                    swap(&drafts, &queue.drafts)
                    swap(&held, &queue.held)
                    queue.open.removeAll(keepingCapacity: true)
                    let count = drafts.reduce(0) { $0 + $1.count }
                    if count > 0 { queue.lastPass = count }
                    defer { queue.rows = 0 }
                    return (drafts, queue.rows, count, held)
                }
                drafts += part
                held += partHeld
                counts.append(count)
                rows += partRows
            }
            self.rows.subtract(rows, ordering: .relaxed)
            _ = held  // the versions are let go here, on the writer's thread
            let count = counts.reduce(0, +)
            guard count > 0 else { return taken }
            taken += rows
            // A version's predictions from every core in one block, in the order they arrived.
            drafts = PredictionDraft.merged(drafts)
            var failed = false
            do {
                try await store.append(drafts)
                written.add(count, ordering: .relaxed)
                var perModel: [String: Int] = [:]
                for draft in drafts { perModel[draft.model, default: 0] += draft.count }
                for (model, count) in perModel {
                    counter(writtenCounters, MetricNames.predictionLogRows, model).increment(by: count)
                    // The dropped series exists, at 0, from a model's first write: dashboards and alerts see it.
                    _ = counter(droppedCounters, MetricNames.predictionLogDropped, model)
                }
            } catch {
                // The database is away: these are lost (and counted), the next batch tries again.
                logger.error("prediction log write failed", metadata: ["error": "\(error)", "records": "\(count)"])
                for draft in drafts {
                    counter(droppedCounters, MetricNames.predictionLogDropped, draft.model).increment(by: draft.count)
                }
                failed = true
            }
            for (index, count) in counts.enumerated() where count > 0 {
                queues.with(index) { $0.settledTotal += count }
            }
            if failed { try? await Task.sleep(for: .seconds(1)) }
        }
        return taken
    }

    /// Whether each core's first `targets[core]` predictions ever queued are settled.
    private func isSettled(_ targets: [Int]) -> Bool {
        targets.indices.allSatisfy { index in queues.with(index) { $0.settledTotal >= targets[index] } }
    }

    /// Returns once every prediction queued before the call is in the store (or lost to a failed write), so
    /// that a reader sees what was answered before it asked (a client posting feedback, or asking for drift,
    /// right after its predictions): at most the write of one full queue.
    package func caughtUp() async {
        await flush(upTo: (0..<queues.count).map { index in queues.with(index) { $0.queuedTotal } })
    }

    private func prune() async {
        guard configuration.maxAge != nil || configuration.maxRows != nil else { return }
        await writing.lock()
        defer { writing.unlock() }
        let cutoff = configuration.maxAge.map { age -> Int64 in
            let (seconds, _) = age.components
            return Int64(Date().timeIntervalSince1970 * 1000) - seconds * 1000
        }
        do {
            let removed = try await store.prune(olderThan: cutoff, keepingAtMost: configuration.maxRows)
            if removed > 0 { logger.info("prediction log pruned", metadata: ["records": "\(removed)"]) }
        } catch {
            logger.warning("prediction log retention failed", metadata: ["error": "\(error)"])
        }
    }

    /// The rows a prediction records: its inputs' first dimension (1 for a scalar or a request without inputs).
    static func rows(_ event: InferenceEvent) -> Int { max(1, event.inputs.first?.shape.first ?? 1) }
}

/// A sink behind a class reference (what `AtomicLazyReference` holds).
package final class SinkBox: Sendable {
    package let sink: any PredictionSink
    package init(_ sink: any PredictionSink) { self.sink = sink }
}
