import CONNXRuntime
import Foundation
import TernCore

/// A model loaded into ONNX Runtime: one or more sessions, their signature and metadata.
///
/// Runs go to the backend's ``RunnerPool``, so callers never block their executor.
public final class ONNXModel: BlockingInferenceModel, @unchecked Sendable {
    // @unchecked Sendable: all stored properties are `let`; `next` is atomic. ONNX Runtime allows
    // concurrent `Run` calls on one session, and the name buffers are never written after init.
    public let signature: ModelSignature
    public let metadata: ModelMetadata
    /// Where the model was loaded from.
    public let path: String
    private let runtime: ONNXRuntime
    private let pool: RunnerPool
    private let sessions: [OpaquePointer]
    private let inputNames: CStringTable
    private let outputNames: CStringTable
    /// Output name -> index into `signature.outputs`, prepared once so runs do not search.
    private let outputIndex: [String: Int]
    /// How each output is read back: index into `signature.outputs`.
    private let outputKinds: [OutputKind]
    private let next = AtomicCounter()

    enum OutputKind {
        case tensor
        /// seq(map(key, value)), as skl2onnx's ZipMap emits: returned as a [rows, classes] tensor.
        case sequenceOfMaps
    }

    /// Loads the model at `path`, creating `options.instances` sessions.
    ///
    /// - Throws: ``TernError``: `notFound` if the file is missing; `invalidArgument` if ONNX Runtime
    ///   rejects it or an input/output has a type V2 cannot carry.
    public init(path: String, runtime: ONNXRuntime, pool: RunnerPool, options: SessionOptions = .init())
        throws(TernError)
    {
        guard FileManager.default.fileExists(atPath: path) else {
            throw .notFound("model file not found: \(path)")
        }
        if let explanation = ModelFileSniffer.notONNX(path) { throw .invalidArgument(explanation) }
        self.path = path
        self.runtime = runtime
        self.pool = pool
        let api = runtime.api

        var sessionOptions: OpaquePointer?
        try runtime.check(api.CreateSessionOptions(&sessionOptions))
        guard let sessionOptions else { throw .internalError("ONNX Runtime returned no session options") }
        defer { api.ReleaseSessionOptions(sessionOptions) }
        try runtime.check(api.SetIntraOpNumThreads(sessionOptions, Int32(max(1, options.intraOpThreads))))
        try runtime.check(api.SetInterOpNumThreads(sessionOptions, Int32(max(1, options.interOpThreads))))
        try runtime.check(api.SetSessionExecutionMode(sessionOptions, options.interOpThreads > 1 ? 1 : 0))
        try runtime.check(api.SetSessionGraphOptimizationLevel(sessionOptions, options.graphOptimization.ortValue))
        try runtime.check(api.SetSessionLogSeverityLevel(sessionOptions, 3))
        // Runner threads spin-wait by default when intra-op threads > 1; serving prefers to yield the core.
        try runtime.check(api.AddSessionConfigEntry(sessionOptions, "session.intra_op.allow_spinning", "0"))

        var sessions: [OpaquePointer] = []
        do throws(TernError) {
            for _ in 0..<max(1, options.instances) {
                var session: OpaquePointer?
                do {
                    try runtime.check(api.CreateSession(runtime.env, path, sessionOptions, &session))
                } catch {
                    // A file ONNX Runtime cannot load is the user's to fix, whatever code it reported.
                    throw TernError(.invalidArgument, "cannot load model \(path): \(error.message)", cause: error.cause)
                }
                guard let session else { throw TernError.internalError("ONNX Runtime returned no session") }
                sessions.append(session)
            }
            let reader = SignatureReader(runtime: runtime, session: sessions[0])
            let (inputs, _) = try reader.specs(isInput: true)
            let (outputs, kinds) = try reader.specs(isInput: false)
            self.signature = ModelSignature(inputs: inputs, outputs: outputs)
            self.outputKinds = kinds
            self.metadata = try reader.metadata()
        } catch {
            for session in sessions { api.ReleaseSession(session) }
            throw error
        }
        self.sessions = sessions
        self.inputNames = CStringTable(signature.inputs.map(\.name))
        self.outputNames = CStringTable(signature.outputs.map(\.name))
        self.outputIndex = Dictionary(signature.outputs.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    deinit {
        for session in sessions { runtime.api.ReleaseSession(session) }
    }

    /// Another model file loaded on this model's runtime and runner pool (one session): a part of this
    /// model cut out for an explainer, say.
    public func sibling(path: String) throws(TernError) -> ONNXModel {
        try ONNXModel(path: path, runtime: runtime, pool: pool)
    }

    public var executor: any BlockingExecutor { pool }

    public func run(inputs: [Tensor], outputs: [String]) async throws -> [Tensor] {
        try await pool.run { [self] in try self.runBlocking(inputs: inputs, outputs: outputs) }
    }

    /// Runs on the calling thread. Inputs must be validated and in signature order.
    public func runBlocking(inputs: [Tensor], outputs: [String]) throws(TernError) -> [Tensor] {
        var outputIndices: [Int] = []
        outputIndices.reserveCapacity(outputs.count)
        for name in outputs {
            guard let index = outputIndex[name] else {
                throw .invalidArgument("unknown output '\(name)'")
            }
            outputIndices.append(index)
        }
        guard inputs.count == signature.inputs.count else {
            throw .invalidArgument("the model takes \(signature.inputs.count) inputs, \(inputs.count) given")
        }
        let session = sessions.count == 1 ? sessions[0] : sessions[next.increment() % sessions.count]
        var values: [OpaquePointer?] = []
        values.reserveCapacity(inputs.count)
        return try withInputValues(inputs, from: 0, into: &values) { (values: [OpaquePointer?]) throws(TernError) in
            try execute(session: session, inputs: values, outputIndices: outputIndices)
        }
    }

    // MARK: - Inputs

    /// Creates an OrtValue for each input, recursively so that every borrowed buffer stays alive for the run.
    private func withInputValues<R>(
        _ inputs: [Tensor], from index: Int, into values: inout [OpaquePointer?],
        _ body: ([OpaquePointer?]) throws(TernError) -> R
    ) throws(TernError) -> R {
        if index == inputs.count { return try body(values) }
        let api = runtime.api
        let tensor = inputs[index]
        var dims = tensor.shape.map { Int64($0) }
        switch tensor.contents {
        case .raw(let bytes):
            let result: Result<R, TernError> = bytes.withUnsafeBytes { raw in
                dims.withUnsafeMutableBufferPointer { shape in
                    var value: OpaquePointer?
                    // ONNX Runtime only reads input buffers; it wants a non-NULL pointer even for 0 elements.
                    let data = UnsafeMutableRawPointer(mutating: raw.baseAddress ?? UnsafeRawPointer(Self.emptyBuffer))
                    do throws(TernError) {
                        try runtime.check(
                            api.CreateTensorWithDataAsOrtValue(
                                runtime.cpuMemory, data, raw.count, shape.baseAddress, shape.count,
                                ElementType.onnxCode(tensor.datatype), &value),
                            "input '\(tensor.name)'")
                        defer { api.ReleaseValue(value) }
                        values.append(value)
                        return .success(try withInputValues(inputs, from: index + 1, into: &values, body))
                    } catch {
                        return .failure(error)
                    }
                }
            }
            return try result.get()
        case .strings(let elements):
            var value: OpaquePointer?
            try dims.withUnsafeBufferPointer { shape throws(TernError) in
                try runtime.check(
                    api.CreateTensorAsOrtValue(runtime.allocator, shape.baseAddress, shape.count, 8, &value),
                    "input '\(tensor.name)'")
            }
            defer { api.ReleaseValue(value) }
            guard let value else { throw .internalError("ONNX Runtime returned no tensor") }
            try fillStrings(value, elements, name: tensor.name)
            values.append(value)
            return try withInputValues(inputs, from: index + 1, into: &values, body)
        }
    }

    // Never written: ONNX Runtime only reads input buffers.
    nonisolated(unsafe) private static let emptyBuffer = UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 8)

    /// Copies byte strings into a string tensor. ONNX string tensors hold C strings, so an element with a
    /// NUL byte is refused rather than silently cut.
    private func fillStrings(_ value: OpaquePointer, _ elements: [[UInt8]], name: String) throws(TernError) {
        guard !elements.isEmpty else { return }
        var total = 0
        for (index, element) in elements.enumerated() {
            if element.contains(0) {
                throw .invalidArgument(
                    "input '\(name)': BYTES element \(index) contains a NUL byte, "
                        + "which ONNX string tensors cannot hold")
            }
            total += element.count + 1
        }
        let storage = UnsafeMutablePointer<CChar>.allocate(capacity: total)
        defer { storage.deallocate() }
        let pointers = UnsafeMutablePointer<UnsafePointer<CChar>>.allocate(capacity: elements.count)
        defer { pointers.deallocate() }
        var offset = 0
        for (index, element) in elements.enumerated() {
            element.withUnsafeBytes { bytes in
                if let base = bytes.baseAddress {
                    UnsafeMutableRawPointer(storage + offset).copyMemory(from: base, byteCount: bytes.count)
                }
            }
            storage[offset + element.count] = 0
            pointers[index] = UnsafePointer(storage + offset)
            offset += element.count + 1
        }
        try runtime.check(runtime.api.FillStringTensor(value, pointers, elements.count), "input '\(name)'")
    }

    // MARK: - Run and outputs

    private func execute(session: OpaquePointer, inputs: [OpaquePointer?], outputIndices: [Int])
        throws(TernError) -> [Tensor]
    {
        let api = runtime.api
        var results = [OpaquePointer?](repeating: nil, count: outputIndices.count)
        defer { for value in results { api.ReleaseValue(value) } }
        var names = outputIndices.map { outputNames.pointers[$0] }
        let status = inputs.withUnsafeBufferPointer { inputValues in
            names.withUnsafeMutableBufferPointer { outputNamePointers in
                results.withUnsafeMutableBufferPointer { outputValues in
                    api.Run(
                        session, nil, inputNames.pointers, inputValues.baseAddress!, inputValues.count,
                        outputNamePointers.baseAddress!, outputNamePointers.count, outputValues.baseAddress!)
                }
            }
        }
        do {
            try runtime.check(status)
        } catch {
            if error.code == .invalidArgument {
                throw TernError(.invalidArgument, "the model rejected the inputs: \(error.message)", cause: error.cause)
            }
            throw TernError(.internalError, "the model failed to run: \(error.message)", cause: error.cause)
        }
        var tensors: [Tensor] = []
        tensors.reserveCapacity(outputIndices.count)
        for (position, index) in outputIndices.enumerated() {
            guard let value = results[position] else { throw .internalError("ONNX Runtime returned no output") }
            let name = signature.outputs[index].name
            switch outputKinds[index] {
            case .tensor: tensors.append(try ValueReader(runtime: runtime).tensor(value, name: name))
            case .sequenceOfMaps: tensors.append(try ValueReader(runtime: runtime).sequenceOfMaps(value, name: name))
            }
        }
        return tensors
    }
}

/// NUL-terminated copies of names, allocated once per model so runs pass them without allocating.
final class CStringTable: @unchecked Sendable {
    // @unchecked Sendable: written only in init, freed in deinit.
    let pointers: UnsafeMutablePointer<UnsafePointer<CChar>?>
    let count: Int

    init(_ strings: [String]) {
        count = strings.count
        pointers = .allocate(capacity: max(1, strings.count))
        for (index, string) in strings.enumerated() {
            pointers[index] = UnsafePointer(strdup(string))
        }
    }

    deinit {
        for index in 0..<count { free(UnsafeMutablePointer(mutating: pointers[index])) }
        pointers.deallocate()
    }
}

/// A counter shared by concurrent runs (round-robin over sessions).
final class AtomicCounter: @unchecked Sendable {
    // @unchecked Sendable: `value` is only touched under `lock`.
    private let lock = NSLock()
    private var value = 0
    func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value &+= 1
        return value & Int.max
    }
}
