import Foundation
import TernCore
import TernTestSupport
import Testing

@testable import TernModelFiles

@Suite("Model repository folder")
struct ModelRepositoryTests {
    /// A temporary repository with the given files (path -> contents; model.onnx files copied from fixtures).
    func repository(_ files: [String: String]) throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tern-repo-\(UUID())").path
        for (path, contents) in files {
            let full = root + "/" + path
            try FileManager.default.createDirectory(
                atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            if path.hasSuffix("model.onnx") {
                try FileManager.default.copyItem(atPath: Fixtures.modelPath(contents), toPath: full)
            } else {
                try contents.write(toFile: full, atomically: true, encoding: .utf8)
            }
        }
        return root
    }

    @Test("the examples folder: two versions of credit-risk, both served by its config")
    func examples() throws {
        let models = try ModelRepository(root: Fixtures.examplesDirectory).discover()
        #expect(models.map(\.name) == ["credit-risk"])
        #expect(models[0].config == ModelConfig(versionPolicy: .latest(2), maxBatchSize: 256, instances: 1))
        #expect(models[0].selectedVersions == [1, 2])
    }

    @Test("config.yaml: every setting, and the default policy serves the newest version only")
    func config() throws {
        let root = try repository([
            "a/1/model.onnx": "logreg", "a/2/model.onnx": "gbc", "a/3/model.onnx": "gbc",
            "a/config.yaml": "version_policy: {specific: [1, 3]}\nmax_batch_size: 8\ninstances: 2\n",
            "b/1/model.onnx": "logreg", "b/4/model.onnx": "gbc",
            "c/1/model.onnx": "logreg", "c/2/model.onnx": "logreg",
            "c/config.yaml": "version_policy: all\ndynamic_batching:\n  preferred_batch_sizes: [16, 8]\n"
                + "  max_queue_delay_microseconds: 250\n  max_queue_size: 100\n  default_timeout_microseconds: 5000\n",
            "d/1/model.onnx": "logreg", "d/config.yaml": "dynamic_batching: false\n",
            ".hidden/1/model.onnx": "logreg",
        ])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let models = try ModelRepository(root: root).discover()
        #expect(models.map(\.name) == ["a", "b", "c", "d"])
        #expect(models[0].config.batching == .automatic)
        #expect(
            models[2].config.batching
                == .enabled(
                    DynamicBatching(
                        preferredBatchSizes: [8, 16], maxQueueDelay: .microseconds(250), maxQueueSize: 100,
                        defaultTimeout: .microseconds(5000))))
        #expect(models[3].config.batching == .disabled)
        #expect(models[0].selectedVersions == [1, 3])
        #expect(models[0].config.maxBatchSize == 8 && models[0].config.instances == 2)
        #expect(models[1].selectedVersions == [4])
        #expect(models[2].selectedVersions == [1, 2])
    }

    @Test(
        "mistakes are reported with the file and what is expected",
        arguments: [
            (["m/config.yaml": "instances: 1\n"], "has no version folders"),
            (["m/1/readme.txt": "x"], "has no model.onnx"),
            (["m/1/model.onnx": "logreg", "m/config.yaml": "max_batch: 4\n"], "unknown setting 'max_batch'"),
            (["m/1/model.onnx": "logreg", "m/config.yaml": "instances: 0\n"], "instances must be an integer >= 1"),
            (["m/1/model.onnx": "logreg", "m/config.yaml": "version_policy: newest\n"], "version_policy must be"),
            (["m/1/model.onnx": "logreg", "m/config.yaml": "version_policy: {specific: [7]}\n"], "selects none"),
            (["m/1/model.onnx": "logreg", "m/config.yaml": "a: [unclosed\n"], "not valid YAML"),
            (["m/1/model.onnx": "logreg", "m/config.yaml": "dynamic_batching: {max_delay: 5}\n"], "unknown dynamic_batching setting 'max_delay'"),
            (["m/1/model.onnx": "logreg", "m/config.yaml": "dynamic_batching: {preferred_batch_sizes: [0]}\n"], "preferred_batch_sizes"),
            (["m/1/model.onnx": "logreg", "m/config.yaml": "dynamic_batching: yes please\n"], "dynamic_batching must be"),
        ])
    func mistakes(files: [String: String], message: String) throws {
        let root = try repository(files)
        defer { try? FileManager.default.removeItem(atPath: root) }
        do {
            _ = try ModelRepository(root: root).discover()
            Issue.record("accepted a broken repository")
        } catch {
            #expect(error.message.contains(message), "\(error.message)")
        }
        #expect(throws: TernError.self) { try ModelRepository(root: root + "/missing").discover() }
    }
}
