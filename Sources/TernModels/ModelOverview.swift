import Foundation
import TernBundle
import TernCore
import TernRegistry

/// What a model looks like from outside, for the console and GraphQL: its record in the registry (when there
/// is one) and its served versions with their signatures, aliases, traffic and validation metrics.
package struct ModelOverview: Sendable {
    package var name: String
    package var defaultVersion: Int?
    package var aliases: [AliasView]
    package var versions: [VersionView]
    package var traffic: [TrafficWeightView]
    package var shadows: [Int]

    /// Every model `visible` lets through, by name: from the registry with `models`, else what the catalog serves.
    package static func all(
        service: InferenceService, models: RegistryModels?, visible: (String) -> Bool
    ) async throws -> [ModelOverview] {
        let catalog = service.catalog.current
        if let models {
            let records = try await models.registry.models()
            return records.filter { visible($0.name) }.map { record in
                let served = catalog.models[record.name] ?? [:]
                return ModelOverview(
                    name: record.name, defaultVersion: record.defaultVersion,
                    aliases: record.aliases.sorted { $0.key < $1.key }.map { AliasView(name: $0.key, version: $0.value) },
                    versions: record.versions.sorted { $0.version < $1.version }.map { version in
                        view(served[version.version], record: version)
                    },
                    traffic: weights(record.traffic), shadows: record.traffic?.shadows ?? [])
            }
        }
        return catalog.models.keys.sorted().filter(visible).map { name in
            let versions = catalog.models[name] ?? [:]
            let aliases = catalog.aliases[name] ?? [:]
            return ModelOverview(
                name: name, defaultVersion: catalog.defaults[name] ?? versions.keys.max(),
                aliases: aliases.sorted { $0.key < $1.key }.map { AliasView(name: $0.key, version: $0.value) },
                versions: versions.keys.sorted().map { number in
                    var version = view(versions[number], record: nil)
                    version.aliases = aliases.filter { $0.value == number }.map(\.key).sorted()
                    return version
                },
                traffic: weights(catalog.traffic[name]), shadows: catalog.traffic[name]?.shadows ?? [])
        }
    }

    private static func weights(_ policy: TrafficPolicy?) -> [TrafficWeightView] {
        (policy?.weights ?? [:]).sorted { $0.key < $1.key }.map { TrafficWeightView(version: $0.key, weight: $0.value) }
    }

    private static func view(_ served: ServedModel?, record: VersionRecord?) -> VersionView {
        func specs(_ specs: [TensorSpec]) -> [TensorSpecView] {
            specs.map { TensorSpecView(name: $0.name, datatype: $0.datatype.rawValue, shape: $0.shape) }
        }
        let manifest = record?.manifest
        return VersionView(
            number: record?.version ?? served?.version ?? 0, state: record?.state ?? "served", loaded: served != nil,
            platform: served?.platform,
            inputs: served.map { specs($0.model.signature.inputs) }
                ?? (manifest?.signature.inputs ?? []).map { TensorSpecView(name: $0.name, datatype: $0.datatype, shape: $0.shape) },
            outputs: served.map { specs($0.model.signature.outputs) }
                ?? (manifest?.signature.outputs ?? []).map { TensorSpecView(name: $0.name, datatype: $0.datatype, shape: $0.shape) },
            aliases: record?.aliases.sorted() ?? [], sha256: record?.sha256, bytes: record?.bytes, createdAt: record?.createdAt,
            createdBy: record?.createdBy, description: manifest?.description, task: manifest?.task,
            featureNames: manifest?.featureNames ?? served?.featureNames, classLabels: manifest?.classLabels,
            validation: MetricView.all(record?.metrics))
    }
}

package struct TensorSpecView: Sendable {
    package var name: String
    package var datatype: String
    package var shape: [Int]
}

package struct AliasView: Sendable {
    package var name: String
    package var version: Int
}

package struct MetricView: Sendable {
    package var name: String
    package var value: Double

    /// Every measured value a bundle's or the live metrics hold, by its snake_case name, sorted.
    package static func all(_ metrics: ValidationMetrics?) -> [MetricView] {
        guard let metrics else { return [] }
        return Mirror(reflecting: metrics).children.compactMap { child -> MetricView? in
            guard let label = child.label, let value = child.value as? Double else { return nil }
            return MetricView(name: snakeCase(label), value: value)
        }.sorted { $0.name < $1.name }
    }

    package static func snakeCase(_ name: String) -> String {
        var text = ""
        for character in name {
            if character.isUppercase {
                text += "_" + character.lowercased()
            } else {
                text.append(character)
            }
        }
        return text
    }
}

package struct TrafficWeightView: Sendable {
    package var version: Int
    package var weight: Double
}

package struct VersionView: Sendable {
    package var number: Int
    /// The registry's state (`active`, `archived`), or `served` for a model folder's version.
    package var state: String
    package var loaded: Bool
    package var platform: String?
    package var inputs: [TensorSpecView]
    package var outputs: [TensorSpecView]
    package var aliases: [String]
    package var sha256: String?
    package var bytes: Int?
    package var createdAt: String?
    package var createdBy: String?
    package var description: String?
    package var task: String?
    package var featureNames: [String]?
    package var classLabels: [String]?
    package var validation: [MetricView]
}
