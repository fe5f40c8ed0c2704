import Foundation
import TernBundle
import TernCore
import TernEmbedded
import TernONNX
import TernTestSupport
import Testing

/// The serving core embedded in an app: a model folder and a bundle loaded in process, every fixture's golden
/// cases answered as onnxruntime (Python) answered them, bad input refused as the server refuses it.
@Suite("Embedded serving core")
struct EmbeddedModelsTests {
    static func folder() throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tern-embedded-\(UUID())").path
        for name in Fixtures.modelNames {
            try FileManager.default.createDirectory(atPath: "\(root)/\(name)/1", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: Fixtures.modelPath(name), toPath: "\(root)/\(name)/1/model.onnx")
        }
        return root
    }

    static func check(_ models: EmbeddedModels, _ name: String) async throws {
        for golden in try Fixtures.golden(name) {
            let outputs = try await models.infer(name, golden.inputs.map(\.tensor))
            for expected in golden.outputs {
                let actual = try #require(outputs.first { $0.name == expected.name }, "\(name) \(golden.name): \(expected.name)")
                if let problem = difference(actual, expected.tensor) { Issue.record("\(name) \(golden.name): \(problem)") }
            }
        }
    }

    @Test("a model folder: every fixture's golden cases")
    func folder() async throws {
        let root = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let models = try EmbeddedModels(folder: root, runtime: Fixtures.runtime, threads: 2)
        defer { models.close() }
        #expect(Set(models.models.keys) == Set(Fixtures.modelNames) && models.models["logreg"] == [1])
        for name in Fixtures.modelNames { try await Self.check(models, name) }
        // Checked as the server checks: a wrong input name is refused naming it.
        await #expect(throws: TernError.self) {
            _ = try await models.infer("logreg", [try Tensor(name: "nope", shape: [1, 10], values: [Float](repeating: 0, count: 10))])
        }
        await #expect(throws: TernError.self) { _ = try await models.infer("unknown", []) }
    }

    @Test("a bundle, as tern pack writes one: served under its manifest's name and version")
    func bundle() async throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.modelPath("gbc")))
        let pool = RunnerPool(threads: 1, name: "tern.test.signature")
        defer { pool.shutdown() }
        let signature = try ONNXModel(path: Fixtures.modelPath("gbc"), runtime: Fixtures.runtime, pool: pool, options: SessionOptions()).signature
        let manifest = BundleManifest(name: "credit", version: 3, producer: "test", signature: signature)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tern-embedded-\(UUID()).tern").path
        try ModelBundle(manifest: manifest, files: [BundleFile.model: data]).archive().write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let models = try EmbeddedModels(bundles: [path], runtime: Fixtures.runtime)
        defer { models.close() }
        #expect(models.models == ["credit": [3]])
        #expect(try models.signature(of: "credit").inputs.map(\.name) == signature.inputs.map(\.name))
        for golden in try Fixtures.golden("gbc") {
            let outputs = try await models.infer("credit", version: 3, golden.inputs.map(\.tensor))
            for expected in golden.outputs {
                let actual = try #require(outputs.first { $0.name == expected.name })
                if let problem = difference(actual, expected.tensor) { Issue.record("gbc bundle \(golden.name): \(problem)") }
            }
        }
    }
}
