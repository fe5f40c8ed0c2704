import Foundation
import TernCore
import TernONNX

/// A model found in a repository folder: its configuration and version folders.
public struct RepositoryModel: Sendable, Equatable {
    public var name: String
    public var config: ModelConfig
    /// Version number -> path of its `model.onnx`, for every version folder found.
    public var versions: [Int: String]

    /// The versions the config's policy selects, ascending.
    public var selectedVersions: [Int] { config.versionPolicy.select(from: Array(versions.keys)) }
}

/// A Triton-style model repository folder:
///
/// ```
/// models/
///   credit-risk/
///     config.yaml        # optional
///     1/model.onnx
///     2/model.onnx
/// ```
///
/// `config.yaml` keys: `version_policy` (`{latest: N}`, `all`, or `{specific: [1, 3]}`; default latest 1),
/// `max_batch_size` (0 = no limit), `instances` (sessions per version, default 1), `dynamic_batching`,
/// `feature_names`, `allow_non_finite` (NaN and infinities in float inputs; refused by default),
/// `prediction_log` (`false`, or `{sample_rate: 0.1, redact: [income]}`; every prediction by default).
///
/// A folder holding `model.onnx` itself (and optionally `config.yaml`) is served as one model, version 1.
public struct ModelRepository: Sendable {
    public let root: String
    /// The name given to a folder that holds one `model.onnx` directly (as SageMaker and Vertex AI unpack a
    /// model's artifacts) rather than model folders.
    public let singleModelName: String

    public init(root: String, singleModelName: String = "model") {
        self.root = root
        self.singleModelName = singleModelName
    }

    /// Reads every model folder.
    ///
    /// - Throws: ``TernError`` `invalidArgument` naming the folder or file at fault: a missing root, a model
    ///   folder without version folders, a bad `config.yaml`.
    public func discover() throws(TernError) -> [RepositoryModel] {
        let fileManager = FileManager.default
        var isDirectory: ObjCBool = false
        guard fileManager.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .invalidArgument("model repository '\(root)' is not a folder")
        }
        if fileManager.fileExists(atPath: root + "/model.onnx") {
            var config = ModelConfig()
            for file in ["config.yaml", "config.yml"] where fileManager.fileExists(atPath: root + "/" + file) {
                config = try Self.parseConfig(path: root + "/" + file)
            }
            return [RepositoryModel(name: singleModelName, config: config, versions: [1: root + "/model.onnx"])]
        }
        let names: [String]
        do {
            names = try fileManager.contentsOfDirectory(atPath: root).sorted()
        } catch {
            throw .invalidArgument("cannot read model repository '\(root)': \(error.localizedDescription)")
        }
        var models: [RepositoryModel] = []
        for name in names where !name.hasPrefix(".") {
            let folder = root + "/" + name
            guard fileManager.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else { continue }
            models.append(try readModel(name: name, folder: folder))
        }
        return models
    }

    private func readModel(name: String, folder: String) throws(TernError) -> RepositoryModel {
        let fileManager = FileManager.default
        var config = ModelConfig()
        for file in ["config.yaml", "config.yml"] where fileManager.fileExists(atPath: folder + "/" + file) {
            config = try Self.parseConfig(path: folder + "/" + file)
        }
        var versions: [Int: String] = [:]
        let entries = (try? fileManager.contentsOfDirectory(atPath: folder)) ?? []
        for entry in entries {
            guard let number = Int(entry), number > 0 else { continue }
            let path = "\(folder)/\(entry)/model.onnx"
            guard fileManager.fileExists(atPath: path) else {
                // A pickle, checkpoint or other format where model.onnx should be: said with its conversion recipe.
                let files = ((try? fileManager.contentsOfDirectory(atPath: "\(folder)/\(entry)")) ?? []).sorted()
                if let explanation = files.lazy.compactMap({ ModelFileSniffer.notONNX("\(folder)/\(entry)/\($0)") }).first {
                    throw .invalidArgument("version folder '\(folder)/\(entry)' has no model.onnx: \(explanation)")
                }
                throw .invalidArgument("version folder '\(folder)/\(entry)' has no model.onnx")
            }
            versions[number] = path
        }
        guard !versions.isEmpty else {
            throw .invalidArgument("model folder '\(folder)' has no version folders; expected '\(folder)/1/model.onnx'")
        }
        let model = RepositoryModel(name: name, config: config, versions: versions)
        if model.selectedVersions.isEmpty {
            throw .invalidArgument(
                "the version_policy in '\(folder)' selects none of the versions found ("
                    + versions.keys.sorted().map(String.init).joined(separator: ", ") + ")")
        }
        return model
    }

    /// Parses a model's `config.yaml`.
    public static func parseConfig(path: String) throws(TernError) -> ModelConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .invalidArgument("cannot read '\(path)': \(error.localizedDescription)")
        }
        return try parseConfig(yaml: text, source: path)
    }

    public static func parseConfig(yaml text: String, source: String) throws(TernError) -> ModelConfig {
        let node = try SafeYAML.load(text, source: source)
        var config = ModelConfig()
        guard let node else { return config }
        guard let map = node as? [String: Any] else {
            throw .invalidArgument("'\(source)' must be a mapping of settings")
        }
        for (key, value) in map {
            switch key {
            case "max_batch_size": config.maxBatchSize = try integer(key, value, minimum: 0, source: source)
            case "instances": config.instances = try integer(key, value, minimum: 1, source: source)
            case "version_policy": config.versionPolicy = try versionPolicy(value, source: source)
            case "dynamic_batching": config.batching = try batching(value, source: source)
            case "feature_names":
                guard let names = value as? [String], !names.isEmpty, Set(names).count == names.count else {
                    throw .invalidArgument("'\(source)': feature_names must be a list of distinct column names")
                }
                config.featureNames = names
            case "allow_non_finite":
                guard let flag = value as? Bool else {
                    throw .invalidArgument("'\(source)': allow_non_finite must be true or false")
                }
                config.allowNonFinite = flag
            case "prediction_log":
                config.predictionLog = try predictionLog(value, source: source)
            default:
                throw .invalidArgument(
                    "'\(source)': unknown setting '\(key)'; known: version_policy, "
                        + "max_batch_size, instances, dynamic_batching, feature_names, allow_non_finite, prediction_log")
            }
        }
        return config
    }

    /// `prediction_log: false | true | {sample_rate: 0...1, redact: [field, ...]}`.
    private static func predictionLog(_ value: Any, source: String) throws(TernError) -> PredictionLogSettings {
        if let on = value as? Bool { return PredictionLogSettings(sampleRate: on ? 1 : 0) }
        guard let map = value as? [String: Any] else {
            throw .invalidArgument("'\(source)': prediction_log must be true, false or {sample_rate, redact}")
        }
        var settings = PredictionLogSettings()
        for (key, value) in map {
            switch key {
            case "sample_rate":
                guard let rate = (value as? Double) ?? (value as? Int).map(Double.init), (0...1).contains(rate) else {
                    throw .invalidArgument("'\(source)': prediction_log.sample_rate must be a number from 0 to 1")
                }
                settings.sampleRate = rate
            case "redact":
                guard let fields = value as? [String] else {
                    throw .invalidArgument("'\(source)': prediction_log.redact must be a list of input or feature names")
                }
                settings.redact = Set(fields)
            default:
                throw .invalidArgument("'\(source)': unknown prediction_log setting '\(key)'; known: sample_rate, redact")
            }
        }
        return settings
    }

    /// `dynamic_batching: false | true | {preferred_batch_sizes, max_queue_delay_microseconds, max_queue_size,
    /// default_timeout_microseconds}`.
    private static func batching(_ value: Any, source: String) throws(TernError) -> BatchingSetting {
        if let flag = value as? Bool { return flag ? .enabled(DynamicBatching()) : .disabled }
        guard let map = value as? [String: Any] else {
            throw .invalidArgument("'\(source)': dynamic_batching must be true, false or a mapping of settings")
        }
        var batching = DynamicBatching()
        func number(_ key: String, _ value: Any, minimum: Int) throws(TernError) -> Int {
            try integer("dynamic_batching." + key, value, minimum: minimum, source: source)
        }
        for (key, value) in map {
            switch key {
            case "preferred_batch_sizes":
                guard let sizes = value as? [Int], sizes.allSatisfy({ $0 >= 1 }) else {
                    throw .invalidArgument("'\(source)': dynamic_batching.preferred_batch_sizes must be a list of positive integers")
                }
                batching.preferredBatchSizes = sizes.sorted()
            case "max_queue_delay_microseconds":
                batching.maxQueueDelay = .microseconds(try number(key, value, minimum: 0))
            case "max_queue_size": batching.maxQueueSize = try number(key, value, minimum: 1)
            case "default_timeout_microseconds":
                let micros = try number(key, value, minimum: 0)
                batching.defaultTimeout = micros > 0 ? .microseconds(micros) : nil
            default:
                throw .invalidArgument(
                    "'\(source)': unknown dynamic_batching setting '\(key)'; known: "
                        + "preferred_batch_sizes, max_queue_delay_microseconds, max_queue_size, default_timeout_microseconds")
            }
        }
        return .enabled(batching)
    }

    private static func integer(_ key: String, _ value: Any, minimum: Int, source: String) throws(TernError) -> Int {
        guard let number = value as? Int, number >= minimum else {
            throw .invalidArgument("'\(source)': \(key) must be an integer >= \(minimum)")
        }
        return number
    }

    private static func versionPolicy(_ value: Any, source: String) throws(TernError) -> VersionPolicy {
        let usage = "'\(source)': version_policy must be 'all', {latest: N} or {specific: [versions]}"
        if let word = value as? String, word == "all" { return .all }
        guard let map = value as? [String: Any], map.count == 1, let (kind, argument) = map.first else {
            throw .invalidArgument(usage)
        }
        switch kind {
        case "all": return .all
        case "latest":
            guard let count = argument as? Int, count >= 1 else { throw .invalidArgument(usage) }
            return .latest(count)
        case "specific":
            guard let versions = argument as? [Int], !versions.isEmpty else { throw .invalidArgument(usage) }
            return .specific(versions)
        default: throw .invalidArgument(usage)
        }
    }
}
