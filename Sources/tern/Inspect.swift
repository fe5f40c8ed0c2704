import ArgumentParser
import Foundation
import TernCore
import TernONNX

struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show an ONNX model's inputs, outputs and metadata.",
        discussion: "Example: tern inspect examples/models/credit-risk/2/model.onnx")

    @Argument(help: ArgumentHelp("The ONNX model file.", valueName: "file"))
    var file: String

    @OptionGroup var runtimeOptions: RuntimeOptions

    func run() async throws {
        let runtime = runtimeOptions.openRuntime()
        let pool = RunnerPool(threads: 1, name: "tern.inspect")
        defer { pool.shutdown() }
        let model: ONNXModel
        do {
            model = try ONNXModel(path: file, runtime: runtime, pool: pool)
        } catch {
            fail(error)
        }
        print("model:       \(file)")
        let metadata = model.metadata
        print("producer:    \(metadata.producerName)")
        if !metadata.description.isEmpty { print("description: \(metadata.description)") }
        if !metadata.domain.isEmpty { print("domain:      \(metadata.domain)") }
        print("version:     \(metadata.version)")
        print("graph:       \(metadata.graphName)")
        print("inputs:")
        for spec in model.signature.inputs { print("  \(describe(spec))") }
        print("outputs:")
        for spec in model.signature.outputs { print("  \(describe(spec))") }
        if !metadata.custom.isEmpty {
            print("metadata:")
            for key in metadata.custom.keys.sorted() { print("  \(key): \(metadata.custom[key]!)") }
        }
    }

    private func describe(_ spec: TensorSpec) -> String {
        let shape = spec.shape.map { $0 < 0 ? "-1" : String($0) }.joined(separator: ", ")
        return "\(spec.name)  \(spec.datatype)  [\(shape)]"
    }
}
