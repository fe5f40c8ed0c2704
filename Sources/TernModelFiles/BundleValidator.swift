import Foundation
import TernBundle
import TernCore
import TernONNX

/// Checks a pushed bundle before the registry takes it: the archive and its checksums, the manifest, that
/// ONNX Runtime loads the model, that the manifest's signature is the model's, and that its config parses.
public struct BundleValidator: Sendable {
    package let runtime: ONNXRuntime
    package let pool: RunnerPool
    package let scratch: String
    /// With them, only bundles one of them signed pass.
    public let trustedKeys: TrustedKeys?

    /// - Parameter scratch: a folder for the model file while ONNX Runtime reads it.
    public init(runtime: ONNXRuntime, pool: RunnerPool, scratch: String, trustedKeys: TrustedKeys? = nil) {
        self.runtime = runtime
        self.pool = pool
        self.scratch = scratch
        self.trustedKeys = trustedKeys
    }

    /// The trusted key that signed `bundle` (nil when no keys are trusted: any bundle passes, signed or not).
    public func signer(of bundle: ModelBundle) throws(TernError) -> String? {
        try trustedKeys?.verify(bundle)
    }

    /// - Throws: ``TernError`` `invalidArgument` naming what is wrong.
    public func validate(_ archive: Data) throws(TernError) -> ModelBundle {
        try check(try ModelBundle(archive: archive))
    }

    /// Validates an archive file (an upload written to disk as it arrived).
    public func validate(archiveFile path: String) throws(TernError) -> ModelBundle {
        try check(try ModelBundle(archiveFile: path))
    }

    private func check(_ bundle: ModelBundle) throws(TernError) -> ModelBundle {
        _ = try signer(of: bundle)  // first: an unsigned bundle costs no model load
        if let config = bundle.files[BundleFile.config] {
            _ = try ModelRepository.parseConfig(yaml: String(decoding: config, as: UTF8.self), source: BundleFile.config)
        }
        let model = try Self.load(bundle, runtime: runtime, pool: pool, scratch: scratch)
        try bundle.manifest.checkSignature(matches: model.signature)
        return bundle
    }

    /// Loads a bundle's model (ONNX Runtime reads it from a file, written to `scratch` for the load and removed).
    ///
    /// - Throws: ``TernError`` `invalidArgument` when ONNX Runtime does not load it; `internalError` when
    ///   `scratch` cannot be written.
    package static func load(
        _ bundle: ModelBundle, runtime: ONNXRuntime, pool: RunnerPool, options: SessionOptions = .init(), scratch: String
    ) throws(TernError) -> ONNXModel {
        let path = "\(scratch)/.load-\(UUID().uuidString).onnx"
        do {
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            try bundle.model.write(to: URL(fileURLWithPath: path))
        } catch {
            throw .internalError("cannot write to \(scratch): \(error.localizedDescription)")
        }
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            return try ONNXModel(path: path, runtime: runtime, pool: pool, options: options)
        } catch {
            throw .invalidArgument("the bundle's model.onnx does not load: \(error.message.replacingOccurrences(of: path, with: "model.onnx"))")
        }
    }
}
