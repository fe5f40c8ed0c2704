import ArgumentParser
import Foundation
import TernBundle
import TernCore
import TernONNX

struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show an ONNX model's inputs, outputs and metadata, or everything a bundle holds.",
        discussion: """
            Examples:
              tern inspect examples/models/credit-risk/2/model.onnx
              tern inspect credit-risk-3.tern         (the model card: manifest, files,
                                                      metrics, profile)
              tern inspect credit-risk-3.tern --json  (manifest, metrics, profile)
            """)

    @Argument(help: ArgumentHelp("An ONNX model file or a bundle (.tern).", valueName: "file"))
    var file: String

    @Flag(help: "For a bundle: print its manifest, metrics and profile as one JSON object.")
    var json = false

    @OptionGroup var runtimeOptions: RuntimeLibraryOption

    func run() async throws {
        do {
            let data = try read(file)
            if data.starts(with: [0x50, 0x4B]) {  // "PK": a zip archive
                try inspectBundle(try ModelBundle(archive: data), bytes: data.count)
                return
            }
        } catch {
            fail(error)
        }
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

    private func inspectBundle(_ bundle: ModelBundle, bytes: Int) throws {
        if json {
            var object: [String: Any] = [:]
            for (key, file) in [("manifest", BundleFile.manifest), ("metrics", BundleFile.metrics), ("profile", BundleFile.profile)] {
                let data = file == BundleFile.manifest ? try JSONEncoder().encode(bundle.manifest) : bundle.files[file]
                if let data { object[key] = try JSONSerialization.jsonObject(with: data) }
            }
            if let signature = bundle.signature {
                object["signature"] = ["signer": signature.signer, "key_id": signature.keyID, "algorithm": signature.algorithm]
            }
            let out = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: out, as: UTF8.self))
            return
        }
        print("bundle:  \(file) (\(bytes) bytes, checksums verified)")
        if let signature = bundle.signature {
            print("signed:  by \(signature.signer) (\(signature.algorithm) key \(signature.keyID); a registry with --trusted-keys checks it)")
        }
        print("files:")
        for (name, entry) in bundle.manifest.files.sorted(by: { $0.key < $1.key }) {
            print("  \(name)  \(entry.bytes) bytes  sha256 \(entry.sha256)")
        }
        print("")
        if let card = bundle.files[BundleFile.card] {
            print(String(decoding: card, as: UTF8.self))
        } else {
            let profile = try bundle.decoded(ReferenceProfile.self, file: BundleFile.profile)
            let metrics = try bundle.decoded(ValidationMetrics.self, file: BundleFile.metrics)
            print(ModelCard.markdown(manifest: bundle.manifest, profile: profile, metrics: metrics))
        }
    }

    private func describe(_ spec: TensorSpec) -> String {
        let shape = spec.shape.map { $0 < 0 ? "-1" : String($0) }.joined(separator: ", ")
        return "\(spec.name)  \(spec.datatype)  [\(shape)]"
    }
}
