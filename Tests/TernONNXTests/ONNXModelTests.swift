import Foundation
import TernCore
import TernTestSupport
import Testing

@testable import TernONNX

@Suite("ONNX Runtime backend")
struct ONNXModelTests {
    @Test("every fixture model matches onnxruntime's outputs at batch 1 and 64", arguments: Fixtures.modelNames)
    func goldenOutputs(name: String) async throws {
        let model = try ONNXModel(path: Fixtures.modelPath(name), runtime: Fixtures.runtime, pool: Fixtures.pool)
        for golden in try Fixtures.golden(name) {
            let outputs = try await model.run(
                inputs: golden.inputs.map(\.tensor), outputs: golden.outputs.map(\.name))
            #expect(outputs.count == golden.outputs.count)
            for (actual, expected) in zip(outputs, golden.outputs) {
                #expect(difference(actual, expected.tensor) == nil, "\(name) \(golden.name)")
            }
        }
    }

    @Test("signatures are read from the model, including ZipMap outputs as [rows, classes] tensors")
    func signatures() throws {
        let zipmap = try ONNXModel(path: Fixtures.modelPath("gbc_zipmap"), runtime: Fixtures.runtime, pool: Fixtures.pool)
        #expect(zipmap.signature.inputs == [TensorSpec(name: "features", datatype: .fp32, shape: [-1, 10])])
        #expect(
            zipmap.signature.outputs == [
                TensorSpec(name: "output_label", datatype: .int64, shape: [-1]),
                TensorSpec(name: "output_probability", datatype: .fp32, shape: [-1, -1]),
            ])
        let types = try ONNXModel(path: Fixtures.modelPath("all_types"), runtime: Fixtures.runtime, pool: Fixtures.pool)
        #expect(Set(types.signature.inputs.map(\.datatype)) == Set(DataType.allCases))
        #expect(types.signature.inputs.allSatisfy { $0.shape == [-1, 3] })
    }

    @Test("metadata: producer, description, version and custom entries")
    func metadata() throws {
        let model = try ONNXModel(path: Fixtures.modelPath("all_types"), runtime: Fixtures.runtime, pool: Fixtures.pool)
        #expect(model.metadata.producerName == "tern-fixtures")
        #expect(model.metadata.domain == "ai.tern.test")
        #expect(model.metadata.version == 7)
        #expect(model.metadata.description == "Identity for every V2 datatype")
        #expect(model.metadata.custom["description"] == "Identity for every V2 datatype")
        let logreg = try ONNXModel(path: Fixtures.modelPath("logreg"), runtime: Fixtures.runtime, pool: Fixtures.pool)
        #expect(logreg.metadata.producerName == "skl2onnx")
        #expect(logreg.metadata.custom["feature_names"]?.hasPrefix("age,income,") == true)
    }

    @Test("several sessions per version give the same answers")
    func instances() async throws {
        let model = try ONNXModel(
            path: Fixtures.modelPath("gbc"), runtime: Fixtures.runtime, pool: Fixtures.pool,
            options: SessionOptions(intraOpThreads: 1, graphOptimization: .basic, instances: 3))
        let golden = try Fixtures.golden("gbc")[1]
        for _ in 0..<6 {
            let outputs = try await model.run(inputs: golden.inputs.map(\.tensor), outputs: ["probabilities"])
            #expect(difference(outputs[0], golden.outputs[1].tensor) == nil)
        }
    }

    @Test("a missing file is notFound; a file that is not ONNX is invalidArgument with ONNX Runtime's message")
    func loadErrors() throws {
        #expect(throws: TernError.self) {
            try ONNXModel(path: "/nonexistent/model.onnx", runtime: Fixtures.runtime, pool: Fixtures.pool)
        }
        let junk = FileManager.default.temporaryDirectory.appendingPathComponent("tern-junk-\(UUID()).onnx")
        try Data("not a model".utf8).write(to: junk)
        defer { try? FileManager.default.removeItem(at: junk) }
        do {
            _ = try ONNXModel(path: junk.path, runtime: Fixtures.runtime, pool: Fixtures.pool)
            Issue.record("a junk file loaded")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains("cannot load model"))
            #expect(error.cause is ONNXRuntimeError)
        }
    }

    @Test("ONNX Runtime's own run errors come back typed, with its message")
    func runErrors() async throws {
        let model = try ONNXModel(path: Fixtures.modelPath("mlp"), runtime: Fixtures.runtime, pool: Fixtures.pool)
        // 19 features where the graph needs 20: the signature's [-1, 20] is bypassed by calling runBlocking.
        let wrong = try Tensor(name: "features", shape: [1, 19], values: [Float](repeating: 0, count: 19))
        do {
            _ = try model.runBlocking(inputs: [wrong], outputs: ["label"])
            Issue.record("a wrong shape ran")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(error.cause is ONNXRuntimeError)
        }
    }

    @Test("BYTES elements with a NUL byte are refused, not cut")
    func nulInString() throws {
        let model = try ONNXModel(path: Fixtures.modelPath("all_types"), runtime: Fixtures.runtime, pool: Fixtures.pool)
        var inputs = try Fixtures.golden("all_types")[0].inputs.map(\.tensor)
        let index = inputs.firstIndex { $0.datatype == .bytes }!
        inputs[index] = try Tensor(
            name: "x_bytes", datatype: .bytes, shape: [1, 3], contents: .strings([[97, 0, 98], [99], [100]]))
        #expect(throws: TernError.self) { try model.runBlocking(inputs: inputs, outputs: ["y_bytes"]) }
    }

    @Test("library lookup: a missing explicit path fails with the install hint")
    func lookup() {
        do {
            _ = try ONNXRuntime.open(candidates: ["/nonexistent/libonnxruntime.so"])
            Issue.record("opened a missing library")
        } catch {
            #expect(error.code == .runtimeNotFound)
            #expect(error.message.contains("install-onnxruntime.sh"))
        }
        #expect(ONNXRuntime.candidates(explicitPath: "/a.so", environmentPath: "/b.so", localInstallDirectories: ["/c"]) == ["/a.so"])
        #expect(ONNXRuntime.candidates(explicitPath: nil, environmentPath: "/b.so", localInstallDirectories: ["/c"]) == ["/b.so"])
        #expect(Fixtures.runtime.version == "1.31.1")
    }
}

@Suite("ONNX Runtime backend: memory")
struct ONNXMemoryTests {
    /// Resident set size in bytes, from /proc/self/statm.
    func residentBytes() throws -> Int {
        let statm = try String(contentsOfFile: "/proc/self/statm", encoding: .utf8).split(separator: " ")
        return Int(statm[1])! * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    @Test("220,000 runs (numeric, string and ZipMap models) do not grow memory")
    func noLeak() throws {
        let models = try ["gbc", "gbc_zipmap", "pipeline_categorical"].map { name in
            (
                try ONNXModel(path: Fixtures.modelPath(name), runtime: Fixtures.runtime, pool: Fixtures.pool),
                try Fixtures.golden(name)[0]
            )
        }
        func runs(_ count: Int) throws {
            for index in 0..<count {
                let (model, golden) = models[index % models.count]
                let outputs = try model.runBlocking(inputs: golden.inputs.map(\.tensor), outputs: golden.outputs.map(\.name))
                precondition(outputs.count == golden.outputs.count)
            }
        }
        try runs(20_000)  // warm up arenas and caches
        // RSS is process-wide and other suites run in parallel, so one reading can include their memory.
        // A leak grows RSS in every block; other tests' allocations do not. Judge the quietest block.
        var readings = [try residentBytes()]
        for _ in 0..<8 {
            try runs(25_000)
            readings.append(try residentBytes())
        }
        let growths = zip(readings.dropFirst(), readings).map { $0 - $1 }
        let growth = growths.min()!
        // A leak of even 40 bytes per run would add 1 MB to every block of 25,000 runs.
        #expect(growth < 1 << 20, "RSS grew in every block of 25,000 runs; growths: \(growths)")
    }
}
