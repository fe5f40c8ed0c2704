import DequeModule
import Foundation
import Synchronization

/// Dynamic batching in front of a model version.
///
/// Requests join a FIFO queue. While fewer than `maxConcurrentBatches` batches run, a drainer on the
/// model's executor takes the compatible requests at the head of the queue (same datatypes and non-batch
/// dimensions, up to `maxBatchSize` rows), merges their inputs along the first dimension, runs the model
/// once and splits each output back by row counts. A drainer keeps taking batches until the queue is empty,
/// so under load one thread hand-off serves many requests, and an idle server adds no delay.
///
/// A merged batch that fails is run again request by request, so one bad request cannot fail its
/// neighbours.
public final class DynamicBatcher: CallbackInferenceModel, @unchecked Sendable {
    // @unchecked Sendable: `queue` and `activeBatches` are only touched while holding `condition`.
    public var signature: ModelSignature { model.signature }
    public var metadata: ModelMetadata { model.metadata }
    public let model: any BlockingInferenceModel
    public let configuration: DynamicBatching
    private let maxConcurrentBatches: Int
    private let condition = NSCondition()
    private var queue = Deque<Pending>()
    private var activeBatches = 0
    private var counts = Statistics()
    /// Queue and execution times for the statistics extension (``ServedModel/statistics``).
    public let timings = ModelStatistics()
    /// Measured cost of a row, in nanoseconds (moving average over runs; 0 until a run has been timed).
    private let nanosecondsPerRow = Atomic<Int>(0)

    /// Whether a thread of the caller's may run this model's batches (``drainInline(budget:)``): only when
    /// forming a batch never waits (no queue delay, no preferred sizes).
    public let runsInline: Bool

    /// How much batching happened: model runs and the requests they served.
    public struct Statistics: Sendable, Equatable {
        public var batches = 0
        public var requests = 0
        public var largestBatchRequests = 0
        /// Batches run by a caller's thread through ``DynamicBatcher/drainInline(budget:)``.
        public var inlineBatches = 0
    }

    /// Requests waiting in the queue (not yet taken into a batch).
    public var queueDepth: Int {
        condition.lock()
        defer { condition.unlock() }
        return queue.count
    }

    public var statistics: Statistics {
        condition.lock()
        defer { condition.unlock() }
        return counts
    }

    /// A queued request. A class: the queue, a batch and the run pass it around, and a copy of a struct
    /// retained each of its arrays and its completion every time.
    private final class Pending: Sendable {
        let inputs: [Tensor]
        let outputs: [String]
        let rows: Int
        let enqueued: ContinuousClock.Instant
        let deadline: ContinuousClock.Instant?
        let timing: RunTiming?
        let completion: @Sendable (Result<[Tensor], any Error>) -> Void

        init(
            inputs: [Tensor], outputs: [String], rows: Int, enqueued: ContinuousClock.Instant, deadline: ContinuousClock.Instant?,
            timing: RunTiming?, completion: @escaping @Sendable (Result<[Tensor], any Error>) -> Void
        ) {
            self.inputs = inputs
            self.outputs = outputs
            self.rows = rows
            self.enqueued = enqueued
            self.deadline = deadline
            self.timing = timing
            self.completion = completion
        }
    }

    /// - Parameters:
    ///   - maxConcurrentBatches: batches that may run at once (the runner threads this model may occupy).
    /// - Precondition: the model's signature has a batch dimension (``ModelSignature/hasBatchDimension``).
    public init(model: any BlockingInferenceModel, configuration: DynamicBatching, maxConcurrentBatches: Int) {
        self.model = model
        self.configuration = configuration
        self.maxConcurrentBatches = max(1, maxConcurrentBatches)
        self.runsInline = configuration.maxQueueDelay == .zero && configuration.preferredBatchSizes.isEmpty
    }

    /// The model as configured: batched when `config.batching` asks (or, `automatic`, when its signature has a
    /// batch dimension), else the model itself. Merged batches hold up to `max_batch_size` rows (256 when 0).
    ///
    /// - Throws: ``TernError`` `invalidArgument` when batching is enabled for a model without a batch dimension.
    public static func applying(
        _ config: ModelConfig, to model: any BlockingInferenceModel, maxConcurrentBatches: Int, name: String
    ) throws(TernError) -> any InferenceModel {
        let rows = config.maxBatchSize > 0 ? config.maxBatchSize : 256
        switch config.batching {
        case .disabled:
            return model
        case .automatic:
            guard model.signature.hasBatchDimension else { return model }
            return DynamicBatcher(
                model: model, configuration: DynamicBatching(maxBatchSize: rows), maxConcurrentBatches: maxConcurrentBatches)
        case .enabled(var batching):
            guard model.signature.hasBatchDimension else {
                let spec = (model.signature.inputs + model.signature.outputs).first { $0.shape.first != -1 }!
                throw .invalidArgument(
                    "model '\(name)' sets dynamic_batching, but '\(spec.name)' has shape \(spec.shape) "
                        + "with no leading dynamic (batch) dimension; remove dynamic_batching")
            }
            batching.maxBatchSize = rows
            if let too = batching.preferredBatchSizes.first(where: { $0 > rows || $0 < 1 }) {
                throw .invalidArgument("model '\(name)': preferred batch size \(too) is outside 1...\(rows) (max_batch_size)")
            }
            return DynamicBatcher(model: model, configuration: batching, maxConcurrentBatches: maxConcurrentBatches)
        }
    }

    /// Queues the request and returns its outputs once its batch has run.
    ///
    /// - Throws: ``TernError`` `resourceExhausted` when the queue is full; `timedOut` when the request
    ///   waited past its timeout (`timeout`, when given, overrides the configured default).
    public func run(inputs: [Tensor], outputs: [String]) async throws -> [Tensor] {
        try await run(inputs: inputs, outputs: outputs, timeout: nil)
    }

    public func run(inputs: [Tensor], outputs: [String], timeout: Duration?) async throws -> [Tensor] {
        try await withCheckedThrowingContinuation { continuation in
            run(inputs: inputs, outputs: outputs, timeout: timeout) { continuation.resume(with: $0) }
        }
    }

    /// Queues the request; `completion` is called once, on a runner thread (or at once when the queue is full).
    public func run(
        inputs: [Tensor], outputs: [String], timeout: Duration?,
        completion: @escaping @Sendable (Result<[Tensor], any Error>) -> Void
    ) {
        enqueue(inputs: inputs, outputs: outputs, timeout: timeout, timing: nil, wakeRunner: true, completion: completion)
    }

    /// As ``run(inputs:outputs:timeout:completion:)``, recording when the request's batch ran in `timing`.
    public func run(
        inputs: [Tensor], outputs: [String], timeout: Duration?, timing: RunTiming?,
        completion: @escaping @Sendable (Result<[Tensor], any Error>) -> Void
    ) {
        enqueue(inputs: inputs, outputs: outputs, timeout: timeout, timing: timing, wakeRunner: true, completion: completion)
    }

    /// Queues the request without waking a runner: the caller promises to call ``drainInline(budget:)`` soon,
    /// from a thread that may run a short batch (an event loop, once its current read burst is handled).
    /// `completion` is called once, on that thread or on a runner's.
    ///
    /// - Precondition: ``runsInline``.
    public func runDeferred(
        inputs: [Tensor], outputs: [String], timeout: Duration?, timing: RunTiming? = nil,
        completion: @escaping @Sendable (Result<[Tensor], any Error>) -> Void
    ) {
        enqueue(inputs: inputs, outputs: outputs, timeout: timeout, timing: timing, wakeRunner: false, completion: completion)
    }

    private func enqueue(
        inputs: [Tensor], outputs: [String], timeout: Duration?, timing: RunTiming?, wakeRunner: Bool,
        completion: @escaping @Sendable (Result<[Tensor], any Error>) -> Void
    ) {
        let rows = inputs.first?.shape.first ?? 1
        let now = ContinuousClock.now
        let limit = timeout ?? configuration.defaultTimeout
        condition.lock()
        guard queue.count < configuration.maxQueueSize else {
            condition.unlock()
            completion(
                .failure(
                    TernError(
                        .resourceExhausted,
                        "the model's queue is full (\(configuration.maxQueueSize) requests waiting); retry later")))
            return
        }
        queue.append(
            Pending(
                inputs: inputs, outputs: outputs, rows: rows, enqueued: now, deadline: limit.map { now + $0 },
                timing: timing, completion: completion))
        let startDrainer = wakeRunner && claimDrainer()
        if !startDrainer {
            condition.signal()  // a drainer waiting for a preferred batch size may now have one
        }
        condition.unlock()
        if startDrainer { launchDrainer() }
    }

    /// Counts a new drainer if fewer than `maxConcurrentBatches` run. Called holding `condition`.
    private func claimDrainer() -> Bool {
        guard activeBatches < maxConcurrentBatches else { return false }
        activeBatches += 1
        return true
    }

    /// Starts a drainer counted by ``claimDrainer()`` on the model's executor.
    private func launchDrainer() {
        if !model.executor.execute({ self.drain() }) {
            failAll(TernError.unavailable("the model runner is shutting down"))
        }
    }

    /// Takes and runs batches until the queue is empty. Runs on the model's executor.
    private func drain() {
        while true {
            condition.lock()
            guard let batch = takeBatch() else {
                activeBatches -= 1
                condition.unlock()
                return
            }
            condition.unlock()
            execute(batch)
        }
    }

    /// Runs queued batches on the calling thread while they fit in `budget`, estimated from the measured
    /// cost of a row; the rest goes to the runner threads. Before any run has been timed, and when the
    /// request at the head alone would not fit, everything goes to the runners: a slow model never runs here.
    public func drainInline(budget: Duration) {
        let started = ContinuousClock.now
        while true {
            condition.lock()
            dropExpired()
            if queue.isEmpty {
                condition.unlock()
                return
            }
            let perRow = nanosecondsPerRow.load(ordering: .relaxed)
            let left = budget - started.duration(to: .now)
            let rowLimit = perRow == 0 ? 0 : Int(left / .nanoseconds(perRow))
            let count = compatiblePrefix(limit: min(configuration.maxBatchSize, rowLimit)).count
            guard count > 0 else {
                let startDrainer = claimDrainer()
                condition.unlock()
                if startDrainer { launchDrainer() }
                return
            }
            let batch = dequeue(count)
            counts.inlineBatches += 1
            condition.unlock()
            execute(batch)
        }
    }

    private func failAll(_ error: TernError) {
        condition.lock()
        let pending = queue
        queue.removeAll()
        activeBatches = 0
        condition.unlock()
        for request in pending { request.completion(.failure(error)) }
    }

    // MARK: - Forming a batch (called holding `condition`)

    private func takeBatch() -> [Pending]? {
        while true {
            dropExpired()
            guard !queue.isEmpty else { return nil }
            let (count, rows) = compatiblePrefix(limit: configuration.maxBatchSize)
            let enough = rows >= (configuration.preferredBatchSizes.first ?? configuration.maxBatchSize)
            let readyAt = queue[0].enqueued + configuration.maxQueueDelay
            if enough || configuration.maxQueueDelay == .zero || ContinuousClock.now >= readyAt || count == 0 {
                var take = max(1, count)
                // Prefer the largest preferred size that the queued rows can fill.
                if let preferred = configuration.preferredBatchSizes.last(where: { $0 <= rows }), preferred < rows {
                    take = max(1, compatiblePrefix(limit: preferred).count)
                }
                return dequeue(take)
            }
            let remaining = ContinuousClock.now.duration(to: readyAt)
            let seconds = Double(remaining.components.seconds) + Double(remaining.components.attoseconds) * 1e-18
            _ = condition.wait(until: Date(timeIntervalSinceNow: seconds))
        }
    }

    /// Takes the first `count` requests as a batch, counting it.
    private func dequeue(_ count: Int) -> [Pending] {
        let batch = Array(queue.prefix(count))
        queue.removeFirst(count)
        counts.batches += 1
        counts.requests += count
        counts.largestBatchRequests = max(counts.largestBatchRequests, count)
        return batch
    }

    /// How many requests at the head of the queue can merge, and their rows, within `limit` rows.
    private func compatiblePrefix(limit: Int) -> (count: Int, rows: Int) {
        guard let first = queue.first, first.rows <= limit else { return (0, 0) }
        var count = 1
        var rows = first.rows
        while count < queue.count {
            let next = queue[count]
            guard rows + next.rows <= limit, Self.mergeable(first.inputs, next.inputs) else { break }
            rows += next.rows
            count += 1
        }
        return (count, rows)
    }

    private static func mergeable(_ a: [Tensor], _ b: [Tensor]) -> Bool {
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) where x.datatype != y.datatype || x.shape.dropFirst() != y.shape.dropFirst() {
            return false
        }
        return true
    }

    private func dropExpired() {
        guard queue.contains(where: { $0.deadline != nil }) else { return }
        let now = ContinuousClock.now
        var kept = Deque<Pending>()
        for request in queue {
            if let deadline = request.deadline, now >= deadline {
                let waited = request.enqueued.duration(to: now)
                request.completion(
                    .failure(
                        TernError(
                            .timedOut,
                            "the request waited \(waited.formatted(.units(allowed: [.milliseconds]))) in the queue, past its timeout")))
            } else {
                kept.append(request)
            }
        }
        queue = kept
    }

    // MARK: - Running a batch

    private func execute(_ batch: [Pending]) {
        let started = ContinuousClock.now
        for request in batch { timings.recordQueue(request.enqueued.duration(to: started)) }
        defer {
            timings.recordExecution(
                duration: started.duration(to: .now), requests: batch.count, rows: batch.reduce(0) { $0 + $1.rows })
        }
        if batch.count == 1 {
            let request = batch[0]
            let result = Result { () throws(TernError) in
                try timed(rows: request.rows) { () throws(TernError) in
                    try model.runBlocking(inputs: request.inputs, outputs: request.outputs)
                }
            }.mapError { $0 as any Error }
            request.timing?.record(started: started, ended: .now, requests: 1, rows: request.rows)
            request.completion(result)
            return
        }
        do throws(TernError) {
            let outputs = union(batch.map(\.outputs))
            let merged = try merge(batch)
            let results = try timed(rows: merged.first?.shape.first ?? batch.count) { () throws(TernError) in
                try model.runBlocking(inputs: merged, outputs: outputs)
            }
            var offset = 0
            var split: [[Tensor]] = []
            split.reserveCapacity(batch.count)
            for request in batch {
                var tensors: [Tensor] = []
                for name in request.outputs {
                    guard let index = outputs.firstIndex(of: name) else { throw .internalError("output \(name) missing") }
                    tensors.append(try slice(results[index], rows: offset..<(offset + request.rows)))
                }
                split.append(tensors)
                offset += request.rows
            }
            let ended = ContinuousClock.now
            let rows = batch.reduce(0) { $0 + $1.rows }
            for request in batch { request.timing?.record(started: started, ended: ended, requests: batch.count, rows: rows) }
            for (request, tensors) in zip(batch, split) { request.completion(.success(tensors)) }
        } catch {
            // Isolate the fault: each request alone gets its own answer or its own error.
            for request in batch { execute([request]) }
        }
    }

    /// Runs `body`, folding its time per row into the moving average ``drainInline(budget:)`` plans with.
    private func timed<T>(rows: Int, _ body: () throws(TernError) -> T) throws(TernError) -> T {
        let start = ContinuousClock.now
        let result = try body()
        let sample = max(1, Int(start.duration(to: .now) / .nanoseconds(max(1, rows))))
        let average = nanosecondsPerRow.load(ordering: .relaxed)
        nanosecondsPerRow.store(average == 0 ? sample : average + (sample - average) / 8, ordering: .relaxed)
        return result
    }

    /// The outputs any request of the batch asked for, in signature order.
    private func union(_ lists: [[String]]) -> [String] {
        if lists.dropFirst().allSatisfy({ $0 == lists[0] }) { return lists[0] }
        let wanted = Set(lists.joined())
        return signature.outputs.map(\.name).filter(wanted.contains)
    }

    private func merge(_ batch: [Pending]) throws(TernError) -> [Tensor] {
        let totalRows = batch.reduce(0) { $0 + $1.rows }
        var merged: [Tensor] = []
        for index in batch[0].inputs.indices {
            let first = batch[0].inputs[index]
            let shape = [totalRows] + first.shape.dropFirst()
            switch first.contents {
            case .raw:
                var bytes: [UInt8] = []
                bytes.reserveCapacity(batch.reduce(0) { $0 + $1.inputs[index].byteCount })
                for request in batch {
                    guard case .raw(let part) = request.inputs[index].contents else { throw .internalError("mixed contents") }
                    bytes.append(contentsOf: part)
                }
                merged.append(Tensor(unchecked: first.name, datatype: first.datatype, shape: shape, contents: .raw(bytes)))
            case .strings:
                var elements: [[UInt8]] = []
                for request in batch {
                    guard case .strings(let part) = request.inputs[index].contents else { throw .internalError("mixed contents") }
                    elements.append(contentsOf: part)
                }
                merged.append(Tensor(unchecked: first.name, datatype: first.datatype, shape: shape, contents: .strings(elements)))
            }
        }
        return merged
    }

    /// Rows `rows` of a batched output.
    private func slice(_ tensor: Tensor, rows: Range<Int>) throws(TernError) -> Tensor {
        guard let total = tensor.shape.first, total > 0 else {
            throw .internalError("output '\(tensor.name)' has no batch dimension")
        }
        let shape = [rows.count] + tensor.shape.dropFirst()
        switch tensor.contents {
        case .raw(let bytes):
            guard bytes.count % total == 0 else { throw .internalError("output '\(tensor.name)' does not split by rows") }
            let perRow = bytes.count / total
            guard rows.upperBound <= total else { throw .internalError("output '\(tensor.name)' has too few rows") }
            return Tensor(
                unchecked: tensor.name, datatype: tensor.datatype, shape: shape,
                contents: .raw(Array(bytes[(rows.lowerBound * perRow)..<(rows.upperBound * perRow)])))
        case .strings(let elements):
            guard elements.count % total == 0, rows.upperBound <= total else {
                throw .internalError("output '\(tensor.name)' does not split by rows")
            }
            let perRow = elements.count / total
            return Tensor(
                unchecked: tensor.name, datatype: tensor.datatype, shape: shape,
                contents: .strings(Array(elements[(rows.lowerBound * perRow)..<(rows.upperBound * perRow)])))
        }
    }
}

extension Tensor {
    /// Bytes of fixed-size contents (0 for BYTES tensors).
    var byteCount: Int {
        if case .raw(let bytes) = contents { return bytes.count }
        return 0
    }
}
