import Foundation
import TernCore

/// `tern.json`: what a bundle holds and how to check it. Written by `tern pack`, read by the registry.
public struct BundleManifest: Codable, Sendable, Equatable {
    /// The bundle format; readers refuse a newer one.
    public static let currentFormat = 1

    public var format: Int
    public var name: String
    /// The version number the bundle asks for; `nil` lets the registry assign the next one.
    public var version: Int?
    public var createdAt: String
    /// What wrote the bundle, e.g. "tern 0.1.0".
    public var producer: String
    public var description: String?
    public var owner: String?
    public var tags: [String]
    /// `classification` or `regression`, when known.
    public var task: String?
    public var featureNames: [String]?
    /// The classes, in the order of the model's probability columns.
    public var classLabels: [String]?
    public var signature: Signature
    /// Every other file of the bundle, with its digest: a reader refuses a bundle whose files differ.
    public var files: [String: FileEntry]

    public struct FileEntry: Codable, Sendable, Equatable {
        public var sha256: String
        public var bytes: Int

        public init(sha256: String, bytes: Int) {
            self.sha256 = sha256
            self.bytes = bytes
        }
    }

    public struct Spec: Codable, Sendable, Equatable {
        public var name: String
        public var datatype: String
        public var shape: [Int]
    }

    public struct Signature: Codable, Sendable, Equatable {
        public var inputs: [Spec]
        public var outputs: [Spec]

        public init(_ signature: ModelSignature) {
            func specs(_ specs: [TensorSpec]) -> [Spec] {
                specs.map { Spec(name: $0.name, datatype: $0.datatype.rawValue, shape: $0.shape) }
            }
            inputs = specs(signature.inputs)
            outputs = specs(signature.outputs)
        }
    }

    public init(
        name: String, version: Int?, createdAt: Date = Date(), producer: String, description: String? = nil,
        owner: String? = nil, tags: [String] = [], task: String? = nil, featureNames: [String]? = nil,
        classLabels: [String]? = nil, signature: ModelSignature, files: [String: FileEntry] = [:]
    ) {
        self.format = Self.currentFormat
        self.name = name
        self.version = version
        self.createdAt = Self.timestamp(createdAt)
        self.producer = producer
        self.description = description
        self.owner = owner
        self.tags = tags
        self.task = task
        self.featureNames = featureNames
        self.classLabels = classLabels
        self.signature = Signature(signature)
        self.files = files
    }

    enum CodingKeys: String, CodingKey {
        case format, name, version, producer, description, owner, tags, task, signature, files
        case createdAt = "created_at"
        case featureNames = "feature_names"
        case classLabels = "class_labels"
    }

    /// UTC, to the millisecond: `2026-11-23T17:02:50.123Z`.
    public static func timestamp(_ date: Date = Date()) -> String {
        date.formatted(
            .iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: true)
                .timeSeparator(.colon).timeZone(separator: .omitted))
    }

    /// Model names become URL path segments, folder names and `name@alias` references.
    public static func checkName(_ name: String) throws(TernError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        guard !name.isEmpty, name.count <= 128, name.allSatisfy(allowed.contains), name.first != "." else {
            throw .invalidArgument("model name '\(name)' must be 1-128 letters, digits, '-', '_' or '.', not starting with '.'")
        }
    }

    /// Checks what a reader relies on: known format, a valid name, a positive version.
    public func validate() throws(TernError) {
        guard format <= Self.currentFormat, format >= 1 else {
            throw .invalidArgument("tern.json has format \(format); this Tern reads format \(Self.currentFormat)")
        }
        try Self.checkName(name)
        if let version { try ModelVersionNumber.check(version, "tern.json: version") }
        guard files[BundleFile.model] != nil else { throw .invalidArgument("tern.json lists no \(BundleFile.model)") }
        if let task, task != "classification", task != "regression" {
            throw .invalidArgument("tern.json: task must be 'classification' or 'regression', got '\(task)'")
        }
    }

    /// Whether the manifest's signature is the model's own: a bundle whose manifest contradicts its model is refused.
    public func checkSignature(matches actual: ModelSignature) throws(TernError) {
        let declared = signature
        let real = Signature(actual)
        guard declared != real else { return }
        func describe(_ specs: [Spec]) -> String {
            specs.map { "\($0.name) \($0.datatype) \($0.shape)" }.joined(separator: "; ")
        }
        if declared.inputs != real.inputs {
            throw .invalidArgument("tern.json declares inputs [\(describe(declared.inputs))] but the model has [\(describe(real.inputs))]")
        }
        throw .invalidArgument("tern.json declares outputs [\(describe(declared.outputs))] but the model has [\(describe(real.outputs))]")
    }
}

/// The file names a bundle may hold.
public enum BundleFile {
    public static let manifest = "tern.json"
    public static let model = "model.onnx"
    public static let profile = "profile.json"
    public static let metrics = "metrics.json"
    public static let card = "MODEL_CARD.md"
    public static let config = "config.yaml"
    /// The labelled holdout rows `tern pack --holdout` scored: what the validation gate scores versions on.
    public static let holdout = "holdout.csv"
    /// The signature of `tern.json` (``BundleSignature``); not listed in the manifest, which it signs.
    public static let signature = "tern.sig"

    /// Everything besides the manifest that a bundle may carry.
    public static let known: Set<String> = [model, profile, metrics, card, config, holdout]
}
