import Foundation
import TernCore
import TernTestSupport
import Testing

@testable import TernONNX

@Suite("Dynamic batching on real models")
struct DynamicBatcherTests {
    /// Rows `rows` of a golden batch-64 input, as a request's inputs.
    func rows(_ inputs: [Tensor], _ rows: Range<Int>) throws -> [Tensor] {
        try inputs.map { tensor in
            let total = tensor.shape[0]
            let shape = [rows.count] + tensor.shape.dropFirst()
            switch tensor.contents {
            case .raw(let bytes):
                let perRow = bytes.count / total
                return try Tensor(
                    name: tensor.name, datatype: tensor.datatype, shape: shape,
                    contents: .raw(Array(bytes[(rows.lowerBound * perRow)..<(rows.upperBound * perRow)])))
            case .strings(let elements):
                let perRow = elements.count / total
                return try Tensor(
                    name: tensor.name, datatype: tensor.datatype, shape: shape,
                    contents: .strings(Array(elements[(rows.lowerBound * perRow)..<(rows.upperBound * perRow)])))
            }
        }
    }

    @Test(
        "64 concurrent clients with distinct inputs and mixed row counts each get the unbatched answer",
        arguments: ["gbc", "mlp", "pipeline_categorical", "gbc_zipmap", "all_types"])
    func concurrentClients(name: String) async throws {
        let pool = RunnerPool(threads: 2, name: "tern.test.batching")
        defer { pool.shutdown() }
        let model = try ONNXModel(path: Fixtures.modelPath(name), runtime: Fixtures.runtime, pool: pool)
        let batcher = DynamicBatcher(
            model: model, configuration: DynamicBatching(maxBatchSize: 64, maxQueueDelay: .microseconds(300)),
            maxConcurrentBatches: 2)
        let inputs = try Fixtures.golden(name)[1].inputs.map(\.tensor)
        let outputs = model.signature.outputs.map(\.name)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<64 {
                group.addTask {
                    for round in 0..<8 {
                        // 1 to 4 rows starting at a row of the client's own, different on every round.
                        let count = 1 + (client + round) % 4
                        let start = (client + round * 7) % (64 - count)
                        let request = try rows(inputs, start..<(start + count))
                        // Some clients ask for a subset of the outputs, so batches mix output lists.
                        let wanted = client % 3 == 0 ? [outputs.last!] : outputs
                        let batched = try await batcher.run(inputs: request, outputs: wanted)
                        let alone = try model.runBlocking(inputs: request, outputs: wanted)
                        #expect(batched.count == alone.count)
                        for (a, b) in zip(batched, alone) {
                            #expect(difference(a, b, tolerance: 1e-6) == nil, "\(name) client \(client) round \(round)")
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let statistics = batcher.statistics
        #expect(statistics.requests == 64 * 8)
        #expect(statistics.batches < statistics.requests, "requests were merged: \(statistics)")
        #expect(statistics.largestBatchRequests > 1)
    }

    @Test("requests whose non-batch dimensions differ are not merged, and still answered")
    func incompatibleShapes() async throws {
        let model = try ONNXModel(path: Fixtures.modelPath("all_types"), runtime: Fixtures.runtime, pool: Fixtures.pool)
        let batcher = DynamicBatcher(model: model, configuration: DynamicBatching(maxBatchSize: 64), maxConcurrentBatches: 1)
        let inputs = try Fixtures.golden("all_types")[1].inputs.map(\.tensor)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<16 {
                group.addTask {
                    let request = try rows(inputs, client..<(client + 1 + client % 3))
                    let batched = try await batcher.run(inputs: request, outputs: ["y_fp64", "y_bytes"])
                    let alone = try model.runBlocking(inputs: request, outputs: ["y_fp64", "y_bytes"])
                    #expect(batched == alone)
                }
            }
            try await group.waitForAll()
        }
    }
}

/// A stub model for the queue's own behaviour (timing and failures a real model cannot be made to show):
/// doubles its input, fails on negative values, and can be held to keep requests queued.
final class StubModel: BlockingInferenceModel, @unchecked Sendable {
    let signature = ModelSignature(
        inputs: [TensorSpec(name: "x", datatype: .fp32, shape: [-1, 1])],
        outputs: [TensorSpec(name: "y", datatype: .fp32, shape: [-1, 1])])
    let metadata = ModelMetadata()
    let executor: any BlockingExecutor
    let gate = NSCondition()
    var held = false
    /// How long each run takes (a model too slow for an event loop).
    var delay: TimeInterval = 0
    var batchSizes: [Int] = []
    /// Rows of the runs that have begun (including those held at the gate).
    var startedRows: Int {
        gate.lock()
        defer { gate.unlock() }
        return begunRows
    }
    private var begunRows = 0

    init(executor: any BlockingExecutor) { self.executor = executor }

    func run(inputs: [Tensor], outputs: [String]) async throws -> [Tensor] {
        try runBlocking(inputs: inputs, outputs: outputs)
    }

    func runBlocking(inputs: [Tensor], outputs: [String]) throws(TernError) -> [Tensor] {
        gate.lock()
        begunRows += inputs[0].shape[0]
        while held { gate.wait() }
        batchSizes.append(inputs[0].shape[0])
        gate.unlock()
        if delay > 0 { Thread.sleep(forTimeInterval: delay) }
        let values = inputs[0].values(as: Float.self)!
        if values.contains(where: { $0 < 0 }) { throw .invalidArgument("negative input") }
        return [try Tensor(name: "y", shape: inputs[0].shape, values: values.map { $0 * 2 })]
    }

    func hold(_ value: Bool) {
        gate.lock()
        held = value
        gate.broadcast()
        gate.unlock()
    }
}

/// Waits until `queued` requests wait in the queue and the model has begun runs over `taken` rows (30 s at
/// most); tests wait for states, not for fixed times, as a loaded machine may start tasks late.
func waitFor(_ batcher: DynamicBatcher, _ stub: StubModel, queued: Int, taken: Int) async throws {
    let deadline = ContinuousClock.now + .seconds(30)
    while batcher.queueDepth != queued || stub.startedRows != taken {
        guard ContinuousClock.now < deadline else {
            throw TernError.internalError("expected \(queued) queued and \(taken) taken, have \(batcher.queueDepth) and \(stub.startedRows)")
        }
        try await Task.sleep(for: .milliseconds(5))
    }
}

@Suite("Dynamic batching: queue behaviour")
struct BatchQueueTests {
    func x(_ value: Float) throws -> [Tensor] { [try Tensor(name: "x", shape: [1, 1], values: [value])] }

    @Test("a bad request in a merged batch fails alone; its neighbours get their answers")
    func faultIsolation() async throws {
        let pool = RunnerPool(threads: 1, name: "tern.test.stub")
        defer { pool.shutdown() }
        let stub = StubModel(executor: pool)
        let batcher = DynamicBatcher(model: stub, configuration: DynamicBatching(maxBatchSize: 32), maxConcurrentBatches: 1)
        stub.hold(true)
        defer { stub.hold(false) }
        let results = try await withThrowingTaskGroup(of: (Int, Float?).self) { group in
            for index in 0..<8 {
                group.addTask {
                    let value = index == 5 ? Float(-1) : Float(index)
                    do {
                        let output = try await batcher.run(inputs: x(value), outputs: ["y"])
                        return (index, output[0].values(as: Float.self)![0])
                    } catch { return (index, nil) }
                }
            }
            // Some requests are held in the model, the rest queued behind them: all eight are in.
            let deadline = ContinuousClock.now + .seconds(30)
            while batcher.queueDepth + stub.startedRows != 8 || stub.startedRows == 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            stub.hold(false)
            var results: [Int: Float?] = [:]
            for try await (index, value) in group { results[index] = value }
            return results
        }
        for index in 0..<8 {
            #expect(results[index]! == (index == 5 ? nil : Float(index * 2)), "request \(index)")
        }
        #expect(stub.batchSizes.contains { $0 > 1 }, "requests were merged: \(stub.batchSizes)")
    }

    @Test("a full queue refuses with resourceExhausted; a request past its timeout fails with timedOut")
    func limits() async throws {
        let pool = RunnerPool(threads: 1, name: "tern.test.stub")
        defer { pool.shutdown() }
        let stub = StubModel(executor: pool)
        let batcher = DynamicBatcher(
            model: stub, configuration: DynamicBatching(maxBatchSize: 1, maxQueueSize: 2), maxConcurrentBatches: 1)
        stub.hold(true)
        defer { stub.hold(false) }  // a failed step must not leave requests held forever
        async let first = batcher.run(inputs: x(1), outputs: ["y"])  // taken by the drainer, held
        try await waitFor(batcher, stub, queued: 0, taken: 1)
        async let second = batcher.run(inputs: x(2), outputs: ["y"], timeout: .milliseconds(20))
        async let third = batcher.run(inputs: x(3), outputs: ["y"])
        try await waitFor(batcher, stub, queued: 2, taken: 1)
        try await Task.sleep(for: .milliseconds(30))  // second's timeout passes while it waits
        do {
            _ = try await batcher.run(inputs: x(4), outputs: ["y"])
            Issue.record("a full queue accepted a request")
        } catch let error as TernError {
            #expect(error.code == .resourceExhausted)
        }
        stub.hold(false)
        #expect(try await first[0].values(as: Float.self) == [2])
        do {
            _ = try await second
            Issue.record("a request past its timeout ran")
        } catch let error as TernError {
            #expect(error.code == .timedOut)
            #expect(error.message.contains("timeout"))
        }
        #expect(try await third[0].values(as: Float.self) == [6])
    }

    @Test("with a queue delay, requests wait for a preferred batch size")
    func preferredSizes() async throws {
        let pool = RunnerPool(threads: 1, name: "tern.test.stub")
        defer { pool.shutdown() }
        let stub = StubModel(executor: pool)
        let batcher = DynamicBatcher(
            model: stub,
            // A delay far longer than the requests take to arrive, even on a loaded machine: the batch runs
            // when the fourth arrives, not when the delay ends.
            configuration: DynamicBatching(maxBatchSize: 16, preferredBatchSizes: [4], maxQueueDelay: .seconds(20)),
            maxConcurrentBatches: 1)
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<4 {
                group.addTask { _ = try await batcher.run(inputs: x(Float(index)), outputs: ["y"]) }
                try await Task.sleep(for: .milliseconds(20))
            }
            try await group.waitForAll()
        }
        #expect(stub.batchSizes == [4], "\(stub.batchSizes)")
        #expect(start.duration(to: .now) < .seconds(20), "the batch waited for the delay, not for the fourth request")
    }

    @Test("batching applies to models with a batch dimension, and refuses to be forced on others")
    func applying() throws {
        let stub = StubModel(executor: Fixtures.pool)
        #expect(try DynamicBatcher.applying(ModelConfig(), to: stub, maxConcurrentBatches: 2, name: "s") is DynamicBatcher)
        #expect(!(try DynamicBatcher.applying(ModelConfig(batching: .disabled), to: stub, maxConcurrentBatches: 2, name: "s") is DynamicBatcher))
        let lightgbm = try ONNXModel(path: Fixtures.modelPath("lightgbm"), runtime: Fixtures.runtime, pool: Fixtures.pool)
        #expect(!(try DynamicBatcher.applying(ModelConfig(), to: lightgbm, maxConcurrentBatches: 2, name: "l") is DynamicBatcher))
        do {
            _ = try DynamicBatcher.applying(
                ModelConfig(batching: .enabled(DynamicBatching())), to: lightgbm, maxConcurrentBatches: 2, name: "l")
            Issue.record("batching forced on a model without a batch dimension")
        } catch {
            #expect(error.message.contains("'label' has shape [1]"))
        }
        do {
            _ = try DynamicBatcher.applying(
                ModelConfig(maxBatchSize: 8, batching: .enabled(DynamicBatching(preferredBatchSizes: [16]))),
                to: stub, maxConcurrentBatches: 2, name: "s")
            Issue.record("a preferred size above max_batch_size was accepted")
        } catch {
            #expect(error.message.contains("preferred batch size 16"))
        }
    }
}

/// Answers collected from completions, with the thread each ran on.
final class Answers: @unchecked Sendable {
    private let condition = NSCondition()
    private var answers: [Int: (value: Float?, thread: pthread_t)] = [:]

    func completion(_ index: Int) -> @Sendable (Result<[Tensor], any Error>) -> Void {
        { result in
            let value = (try? result.get())?.first?.values(as: Float.self)?.first
            self.condition.lock()
            self.answers[index] = (value, pthread_self())
            self.condition.broadcast()
            self.condition.unlock()
        }
    }

    /// Waits (30 s at most) for `count` answers.
    func wait(for count: Int) -> [Int: (value: Float?, thread: pthread_t)] {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: 30)
        while answers.count < count, condition.wait(until: deadline) {}
        return answers
    }
}

@Suite("Dynamic batching: runs on the caller's thread")
struct InlineRunTests {
    func x(_ values: [Float]) throws -> [Tensor] { [try Tensor(name: "x", shape: [values.count, 1], values: values)] }

    @Test("a model not yet timed runs on the runners; once timed, deferred requests run merged on the caller's thread")
    func timedThenInline() throws {
        let pool = RunnerPool(threads: 1, name: "tern.test.inline")
        defer { pool.shutdown() }
        let stub = StubModel(executor: pool)
        let batcher = DynamicBatcher(model: stub, configuration: DynamicBatching(maxBatchSize: 32), maxConcurrentBatches: 1)
        #expect(batcher.runsInline)
        let caller = pthread_self()

        let first = Answers()
        for index in 0..<3 { batcher.runDeferred(inputs: try x([Float(index)]), outputs: ["y"], timeout: nil, completion: first.completion(index)) }
        batcher.drainInline(budget: .seconds(1))
        let untimed = first.wait(for: 3)
        #expect(untimed.count == 3)
        #expect(untimed.values.allSatisfy { pthread_equal($0.thread, caller) == 0 }, "an untimed model went to the runners")
        #expect(batcher.statistics.inlineBatches == 0)

        let second = Answers()
        for index in 0..<4 {
            let values = (0...index).map { Float(10 * index + $0) }  // 1 to 4 rows
            batcher.runDeferred(inputs: try x(values), outputs: ["y"], timeout: nil, completion: second.completion(index))
        }
        batcher.drainInline(budget: .seconds(1))
        let answered = second.wait(for: 0)  // all answered before drainInline returned
        #expect(answered.count == 4)
        for index in 0..<4 {
            #expect(answered[index]?.value == Float(20 * index), "request \(index) got its own rows back")
            #expect(answered[index].map { pthread_equal($0.thread, caller) != 0 } == true, "ran on the caller's thread")
        }
        #expect(stub.batchSizes.last == 10, "the four requests ran as one batch of 10 rows: \(stub.batchSizes)")
        #expect(batcher.statistics.inlineBatches == 1)
    }

    @Test("a model whose measured run exceeds the budget stays on the runners")
    func slowModelStaysOnRunners() async throws {
        let pool = RunnerPool(threads: 1, name: "tern.test.inline.slow")
        defer { pool.shutdown() }
        let stub = StubModel(executor: pool)
        stub.delay = 0.005
        let batcher = DynamicBatcher(model: stub, configuration: DynamicBatching(maxBatchSize: 32), maxConcurrentBatches: 1)
        _ = try await batcher.run(inputs: x([1]), outputs: ["y"])  // timed: about 5 ms a row
        let caller = pthread_self()
        let answers = Answers()
        for index in 0..<2 { batcher.runDeferred(inputs: try x([Float(index)]), outputs: ["y"], timeout: nil, completion: answers.completion(index)) }
        batcher.drainInline(budget: .microseconds(500))
        let answered = answers.wait(for: 2)
        #expect(answered.count == 2)
        #expect(answered.values.allSatisfy { pthread_equal($0.thread, caller) == 0 })
        #expect(answered[1]?.value == 2)
        #expect(batcher.statistics.inlineBatches == 0)
    }

    @Test("a queue delay or preferred sizes keep a model off the caller's thread (forming its batch may wait)")
    func waitingConfigurations() {
        let pool = RunnerPool(threads: 1, name: "tern.test.inline.config")
        defer { pool.shutdown() }
        let stub = StubModel(executor: pool)
        for configuration in [DynamicBatching(maxQueueDelay: .microseconds(100)), DynamicBatching(preferredBatchSizes: [4])] {
            let batcher = DynamicBatcher(model: stub, configuration: configuration, maxConcurrentBatches: 1)
            #expect(!batcher.runsInline)
            #expect(ServedModel(name: "m", version: 1, model: batcher, config: ModelConfig(), platform: "p").inlineBatcher == nil)
        }
        let plain = DynamicBatcher(model: stub, configuration: DynamicBatching(), maxConcurrentBatches: 1)
        #expect(ServedModel(name: "m", version: 1, model: plain, config: ModelConfig(), platform: "p").inlineBatcher === plain)
    }
}
