import ArgumentParser
import Foundation
import Synchronization
import TernBundle
import TernCore
import TernMonitoring
import TernRegistry
import TernRollouts
import TernServer

/// Runs a registry command, printing a failure as one line (exit 1).
func withRegistry(
    _ options: RegistryOptions, changes: ChangeOptions? = nil, trust: TrustOptions? = nil,
    runtime runtimeOptions: RuntimeLibraryOption? = nil,
    _ body: (any RegistryClient) async throws -> Void
) async throws {
    let client: any RegistryClient
    // A command that only reads never creates a registry: it says there is none.
    if changes == nil, options.server == nil, options.database == nil || options.database?.hasPrefix("postgres") == false {
        let path = options.database.map { $0.hasPrefix("sqlite:") ? String($0.dropFirst(7)) : $0 } ?? options.dataFolder + "/registry.sqlite"
        if !FileManager.default.fileExists(atPath: path) {
            fail(
                TernError.notFound(
                    "there is no registry at \(path): tern push or tern keys create makes one there; "
                        + "name another with --data or --database, or a server with --server"))
        }
    }
    do {
        let library = runtimeOptions?.libraryPath
        client = try await options.client(
            artifactsInDatabase: changes?.artifactsInDatabase ?? false, actor: changes?.actorName ?? ChangeOptions.defaultActor,
            trustedKeys: try trust?.trusted(),
            runtime: { RuntimeLibraryOption.openRuntime(libraryPath: library) })
    } catch let error as ValidationError {
        throw error
    } catch {
        fail(error)
    }
    do {
        try await body(client)
        await client.close()
    } catch {
        await client.close()
        fail(error)
    }
}

/// Columns padded to their widest cell, the last one as it is.
func printTable(_ rows: [[String]]) {
    guard let columns = rows.first?.count else { return }
    let widths = (0..<columns).map { column in rows.map { $0[column].count }.max() ?? 0 }
    for row in rows {
        let cells = row.enumerated().map {
            $0.offset == columns - 1 ? $0.element : $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0)
        }
        print(cells.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
    }
}

/// Audit entries as JSON, their before and after states as objects (they are stored as JSON text).
func printAuditJSON(_ entries: [AuditEntry]) throws {
    let encoded = try JSONEncoder().encode(entries)
    guard var objects = try JSONSerialization.jsonObject(with: encoded) as? [[String: Any]] else { return }
    for index in objects.indices {
        for key in ["before", "after"] {
            if let text = objects[index][key] as? String, let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) {
                objects[index][key] = object
            }
        }
    }
    let data = try JSONSerialization.data(withJSONObject: objects, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

struct Push: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push",
        abstract: "Register a bundle (from tern pack) as a new, immutable version.",
        discussion: """
            The bundle's checksums, manifest and model are checked first (the model must load and match the manifest's signature); nothing is registered if any check fails. The same archive pushed again is not registered twice: the registry answers with the version that holds it.

            Examples:
              tern push credit-risk-3.tern --alias staging
              tern push credit-risk-3.tern --server http://tern.internal:8000
              tern push credit-risk-3.tern --database postgres://tern@db/tern
            """)

    @Argument(help: ArgumentHelp("The bundle file.", valueName: "bundle.tern"))
    var bundle: String

    @Option(help: "The version number (default: the bundle's, else the next one).")
    var version: Int?

    @Option(help: ArgumentHelp("Point this alias at the new version (e.g. production). Repeatable.", valueName: "alias"))
    var alias: [String] = []

    @OptionGroup var registry: RegistryOptions
    @OptionGroup var changes: ChangeOptions
    @OptionGroup var trust: TrustOptions
    @OptionGroup var runtimeOptions: RuntimeLibraryOption

    func validate() throws {
        if let version, !(1...ModelVersionNumber.maximum).contains(version) {
            throw ValidationError("--version must be between 1 and \(ModelVersionNumber.maximum)")
        }
    }

    func run() async throws {
        try await withRegistry(registry, changes: changes, trust: trust, runtime: runtimeOptions) { client in
            let record = try await client.push(archive: try read(bundle), version: version)
            print("pushed \(record.model) v\(record.version) (sha256 \(record.sha256))")
            for name in alias {
                try await client.setAlias(model: record.model, alias: name, version: record.version, force: false)
                print("\(record.model)@\(name) -> v\(record.version)")
            }
        }
    }
}

struct Models: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "List and change the registry's models: versions, aliases, traffic, validation gates, archive, delete.",
        subcommands: [List.self, Show.self, Alias.self, Unalias.self, Traffic.self, Gate.self, Archive.self, Delete.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List models with their versions and aliases.")
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var registry: RegistryOptions

        func run() async throws {
            try await withRegistry(registry) { client in
                let models = try await client.models()
                if json { return try printJSON(models) }
                if models.isEmpty { print("no models; add one with tern push") }
                for model in models {
                    let aliases = model.aliases.sorted { $0.key < $1.key }.map { "\($0.key)=v\($0.value)" }.joined(separator: " ")
                    let versions = model.versions.map { "v\($0.version)" + ($0.state == "archived" ? " (archived)" : "") }
                    print(
                        "\(model.name)  versions: \(versions.joined(separator: ", "))  default: "
                            + (model.defaultVersion.map { "v\($0)" } ?? "none") + (aliases.isEmpty ? "" : "  aliases: \(aliases)"))
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a model's versions: manifest, metrics, who pushed them.")
        @Argument(help: "The model.") var name: String
        @Option(help: "Only this version.") var version: Int?
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var registry: RegistryOptions

        func run() async throws {
            try await withRegistry(registry) { client in
                let model = try await client.model(name)
                var versions = model.versions
                if let version {
                    versions = versions.filter { $0.version == version }
                    guard !versions.isEmpty else { throw TernError.notFound("model '\(name)' has no version \(version)") }
                }
                let live = await Self.liveQuality(model, registry: registry)
                if json {
                    guard let live, !live.isEmpty else { return try printJSON(version == nil ? AnyEncodable(model) : AnyEncodable(versions[0])) }
                    struct WithLive: Encodable {
                        var model: AnyEncodable
                        var live: [VersionPerformance]
                    }
                    return try printJSON(WithLive(model: version == nil ? AnyEncodable(model) : AnyEncodable(versions[0]), live: live))
                }
                print("\(model.name)  default: " + (model.defaultVersion.map { "v\($0)" } ?? "none"))
                if let traffic = model.traffic { print("traffic: " + Traffic.describe(traffic)) }
                if let gate = try await client.gate(model: name) { print("gate:    " + Gate.describe(gate)) }
                if let (rollout, _) = try? await client.rollout(model: name) { print("rollout: " + RolloutCommand.describe(rollout)) }
                // Each version's newest gate verdict, from the audit trail.
                var verdicts: [Int: (String, String)] = [:]
                for entry in try await client.auditLog(model: name) where entry.action == "gate" || entry.action == "gate-forced" {
                    guard let version = entry.version, let after = entry.after,
                        let result = try? JSONDecoder().decode(GateResult.self, from: Data(after.utf8))
                    else { continue }
                    verdicts[version] = (entry.at, (entry.action == "gate-forced" ? "FORCED past: " : "") + result.summary)
                }
                for record in versions {
                    print("")
                    print(
                        "v\(record.version)  \(record.state)" + (record.aliases.isEmpty ? "" : "  aliases: \(record.aliases.joined(separator: ", "))")
                    )
                    print("  pushed:  \(record.createdAt) by \(record.createdBy)")
                    print("  bundle:  \(record.bytes) bytes, sha256 \(record.sha256)")
                    if let owner = record.manifest.owner { print("  owner:   \(owner)") }
                    if let description = record.manifest.description { print("  about:   \(description)") }
                    if let metrics = record.metrics { print("  " + Pack.summary(metrics)) }
                    if let (at, verdict) = verdicts[record.version] { print("  gate (\(at)): \(verdict)") }
                    if let quality = live?.first(where: { $0.version == record.version }), let metrics = quality.live {
                        let delay = quality.labelDelaySecondsMedian.map { String(format: ", median label delay %.0f s", $0) } ?? ""
                        print(
                            "  live (\(quality.predictions) predictions with feedback\(delay)): "
                                + Pack.summary(metrics).replacingOccurrences(of: "holdout", with: "feedback"))
                    }
                }
            }
        }
    }

}

extension Models {
    struct Gate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gate",
            abstract: "Set a model's validation gate: what a version must do on labelled data before an alias names it.",
            discussion: """
                Before an alias the gate guards moves (tern models alias, the API, a rollout's promotion), the candidate and the version the alias names now are run on the same labelled rows (--labelled-data, a CSV on the machine that runs the gate, else the candidate bundle's holdout from tern pack --holdout) and scored as tern pack scores. Every bound must hold: --require (a minimum; a maximum for log_loss, mae, rmse), --max-regression (how much worse than the current version), --max-latency-increase (p99 over single-row runs, interleaved). The verdict, with every number, goes into the audit trail and tern models show. A failing gate leaves the alias where it was; --force on the alias moves it anyway, audited as forced.

                Examples:
                  tern models gate credit-risk --require roc_auc=0.75 --max-regression roc_auc=0.01 --max-latency-increase 0.2
                  tern models gate credit-risk --check 2        (run it now for v2 as production; the verdict is recorded)
                  tern models gate credit-risk --clear
                """)
        @Argument(help: "The model.") var name: String
        @Option(
            help: ArgumentHelp(
                "Absolute bounds, METRIC=VALUE, comma-separated (accuracy, precision, recall, f1, roc_auc, log_loss, mae, rmse, r2).",
                valueName: "m=v,..."))
        var require: String?
        @Option(help: ArgumentHelp("How much worse than the current version each metric may be, METRIC=VALUE.", valueName: "m=v,..."))
        var maxRegression: String?
        @Option(help: ArgumentHelp("The candidate's p99 at most this fraction above the current version's (0.2 = 20%).", valueName: "fraction"))
        var maxLatencyIncrease: Double?
        @Option(help: ArgumentHelp("The aliases it guards, comma-separated (default production).", valueName: "a,...")) var aliases: String?
        @Option(
            help: ArgumentHelp("A labelled CSV to score on, on the machine that runs the gate (default: the candidate's holdout).", valueName: "csv"))
        var labelledData: String?
        @Option(help: "The label column of --labelled-data (default: the bundle's).") var labelColumn: String?
        @Option(help: ArgumentHelp("Run the gate now for this version (as --alias), and record the verdict.", valueName: "version"))
        var check: Int?
        @Option(help: "The alias --check judges for (default production).") var alias: String = Registry.defaultAlias
        @Flag(help: "Remove the gate.") var clear = false
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var registry: RegistryOptions
        @OptionGroup var changes: ChangeOptions
        @OptionGroup var runtimeOptions: RuntimeLibraryOption

        private var setting: Bool { require != nil || maxRegression != nil || maxLatencyIncrease != nil }

        func validate() throws {
            guard [setting, clear, check != nil].filter({ $0 }).count <= 1 else {
                throw ValidationError("give bounds (--require, --max-regression, --max-latency-increase), or --check, or --clear")
            }
            if !setting, aliases != nil || labelledData != nil || labelColumn != nil {
                throw ValidationError("--aliases, --labelled-data and --label-column go with the bounds")
            }
        }

        static func bounds(_ text: String?, _ flag: String) throws -> [String: Double] {
            var bounds: [String: Double] = [:]
            for pair in (text ?? "").split(separator: ",") {
                let parts = pair.split(separator: "=")
                guard parts.count == 2, let value = Double(parts[1].trimmingCharacters(in: .whitespaces)) else {
                    throw ValidationError("\(flag) takes METRIC=VALUE pairs, such as roc_auc=0.75; got '\(pair)'")
                }
                bounds[parts[0].trimmingCharacters(in: .whitespaces)] = value
            }
            return bounds
        }

        static func describe(_ gate: GatePolicy) -> String {
            var parts = gate.require.sorted { $0.key < $1.key }.map {
                "\($0.key) \(GatePolicy.lowerIsBetter.contains($0.key) ? "<=" : ">=") \($0.value)"
            }
            parts += gate.maxRegression.sorted { $0.key < $1.key }.map { "\($0.key) at most \($0.value) worse" }
            if let increase = gate.maxLatencyIncrease { parts.append(String(format: "p99 at most %.0f%% slower", increase * 100)) }
            return parts.joined(separator: ", ") + " (guards " + gate.aliases.joined(separator: ", ") + "; on "
                + (gate.data ?? "the candidate's holdout") + ")"
        }

        func run() async throws {
            // Exit codes a CI step can rely on: 0 the gate passed, 2 it failed (with or without --json), 1 an error.
            let failed = Mutex(false)
            try await withRegistry(registry, changes: changes, runtime: runtimeOptions) { client in
                if clear {
                    try await client.setGate(model: name, policy: nil)
                    print("\(name): no validation gate")
                } else if let check {
                    let result = try await client.checkGate(model: name, version: check, alias: alias)
                    failed.withLock { $0 = !result.passed }
                    if json { return try printJSON(result) }
                    print("\(name) v\(check) as \(alias): \(result.summary)")
                } else if setting {
                    let policy = GatePolicy(
                        aliases: aliases.map { Pack.list($0) } ?? [Registry.defaultAlias], require: try Self.bounds(require, "--require"),
                        maxRegression: try Self.bounds(maxRegression, "--max-regression"), maxLatencyIncrease: maxLatencyIncrease,
                        data: labelledData.map { URL(fileURLWithPath: $0).standardizedFileURL.path }, labelColumn: labelColumn)
                    try await client.setGate(model: name, policy: policy)
                    print("\(name): gate \(Self.describe(policy))")
                } else {
                    guard let gate = try await client.gate(model: name) else { return print("\(name): no validation gate") }
                    if json { return try printJSON(gate) }
                    print("\(name): gate \(Self.describe(gate))")
                }
            }
            if failed.withLock({ $0 }) { throw ExitCode(2) }
        }
    }
}

extension Models.Show {
    /// Each version's live quality from ground-truth feedback: the server's API with --server, else the
    /// prediction log beside the registry (nil when there is none).
    static func liveQuality(_ model: ModelRecord, registry: RegistryOptions) async -> [VersionPerformance]? {
        if let server = registry.server {
            guard
                let text = try? await PredictionLogSource.get(
                    server, "/api/v1/models/\(model.name)/performance",
                    access: ServerAccess(apiKey: registry.apiKey, caCert: registry.caCert)
                ).text,
                let answer = try? JSONDecoder().decode(PerformanceAnswer.self, from: Data(text.utf8))
            else { return nil }
            return answer.versions
        }
        guard case .database(let location)? = try? registry.predictionLogLocation(nil) else { return nil }
        if case .sqlite(let path) = location, !FileManager.default.fileExists(atPath: path) { return nil }
        guard let store = try? await PredictionStore.open(location, cipher: try? RegistryOptions.predictionLogCipher(nil)) else { return nil }
        let versions = try? await LivePerformance.versions(in: store, model: model.name) { version in
            let record = model.versions.first { $0.version == version }
            return (record?.manifest.classLabels, record?.metrics)
        }
        await store.close()
        return versions
    }
}

extension Models {
    struct Alias: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "alias",
            abstract: "Point an alias at a version (creating or moving it).",
            discussion: """
                Example: tern models alias credit-risk production 3   (roll back: the same with the old version)

                When the model has a validation gate guarding the alias (tern models gate), the version is scored on the gate's labelled data first, with the version the alias names now; a failing gate leaves the alias where it was. --force moves it anyway (audited as gate-forced).
                """)
        @Argument(help: "The model.") var name: String
        @Argument(help: "The alias (production, staging, canary, ...).") var alias: String
        @Argument(help: "The version.") var version: Int
        @Flag(help: "Move the alias even if the validation gate fails (audited as forced).") var force = false
        @OptionGroup var registry: RegistryOptions
        @OptionGroup var changes: ChangeOptions
        @OptionGroup var runtimeOptions: RuntimeLibraryOption

        func run() async throws {
            try await withRegistry(registry, changes: changes, runtime: runtimeOptions) { client in
                try await client.setAlias(model: name, alias: alias, version: version, force: force)
                print("\(name)@\(alias) -> v\(version)")
            }
        }
    }

    struct Traffic: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "traffic",
            abstract: "Share a model's requests among its versions: weights (canary, A/B), a sticky header, shadow versions.",
            discussion: """
                Requests that name no version (not name@alias, not a version route) are shared by weight; with --sticky-header, requests carrying that header (or gRPC metadata) always reach the version its value picks. Shadow versions get a copy of every request off the request path; their outputs are compared with the answering version's (GET /api/v1/models/NAME/traffic). Every answer names the version that answered (model_version).

                Examples:
                  tern models traffic credit-risk --weights 1=90,2=10                      (a 10% canary)
                  tern models traffic credit-risk --weights 1=50,2=50 --sticky-header x-customer-id
                  tern models traffic scorer --weights 1=50,2=50 --sticky-input customer_id     (by an input's values)
                  tern models traffic credit-risk --weights 1=100 --shadow 2
                  tern models traffic credit-risk --weights 1=90,2=10 --fallback-version 1 --fallback-timeout 250
                  tern models traffic credit-risk --fallback-default '{"label": 0, "probabilities": [0.9, 0.1]}'
                  tern models traffic credit-risk --file traffic.yaml                       (the policy as YAML or JSON)
                  tern models traffic credit-risk --clear                                   (all to the default again)

                A fallback answers when the chosen version fails, or has not answered within --fallback-timeout milliseconds: the fallback version, else the default answer (per row, by output name). Such answers carry the parameters fallback: true, fallback_reason and fallback_from (a Tern-Fallback header in the platform formats). After --circuit-failures failures in a row a version's circuit opens: it is not called for --circuit-open seconds, then one request probes it.
                """)
        @Argument(help: "The model.") var name: String
        @Option(help: ArgumentHelp("VERSION=WEIGHT pairs, comma-separated.", valueName: "v=w,...")) var weights: String?
        @Option(help: ArgumentHelp("A header whose value always picks the same version.", valueName: "name")) var stickyHeader: String?
        @Option(help: ArgumentHelp("An input whose values always pick the same version (such as a customer id input).", valueName: "name"))
        var stickyInput: String?
        @Option(help: ArgumentHelp("Shadow versions, comma-separated.", valueName: "v,...")) var shadow: String?
        @Option(help: ArgumentHelp("The version that answers when the chosen one fails or is too slow.", valueName: "v"))
        var fallbackVersion: Int?
        @Option(help: ArgumentHelp("The answer per row when no fallback version can answer, as JSON by output name.", valueName: "json"))
        var fallbackDefault: String?
        @Option(help: ArgumentHelp("Answer from the fallback when the chosen version has not answered after this long.", valueName: "ms"))
        var fallbackTimeout: Int?
        @Option(help: ArgumentHelp("Failures in a row that open a version's circuit (default 5).", valueName: "n")) var circuitFailures: Int?
        @Option(help: ArgumentHelp("How long an open circuit stays open before a probe (default 30).", valueName: "seconds"))
        var circuitOpen: Double?
        @Option(help: ArgumentHelp("The whole policy from a YAML or JSON file (weights, sticky_header, shadows, fallback).", valueName: "file"))
        var file: String?
        @Flag(help: "Remove the policy.") var clear = false
        @OptionGroup var registry: RegistryOptions
        @OptionGroup var changes: ChangeOptions

        private var fallbackGiven: Bool {
            fallbackVersion != nil || fallbackDefault != nil || fallbackTimeout != nil || circuitFailures != nil || circuitOpen != nil
        }

        func validate() throws {
            let given = [weights != nil || shadow != nil || fallbackGiven, file != nil, clear].filter { $0 }.count
            guard given == 1 else { throw ValidationError("give --weights (and --shadow, --fallback-…), or --file, or --clear") }
            if stickyHeader != nil || stickyInput != nil, weights == nil {
                throw ValidationError("--sticky-header and --sticky-input need --weights")
            }
        }

        static func policy(file: String) throws -> TrafficPolicy {
            let text: String
            do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
                throw ValidationError("cannot read \(file): \(error.localizedDescription)")
            }
            do {
                let node = try SafeYAML.load(text, source: file)
                guard let node, JSONSerialization.isValidJSONObject(node) else { throw ValidationError("\(file): expected a mapping") }
                return try JSONDecoder().decode(TrafficPolicy.self, from: JSONSerialization.data(withJSONObject: node))
            } catch let error as ValidationError {
                throw error
            } catch {
                throw ValidationError("\(file) is not a traffic policy ({weights: {1: 90, 2: 10}, sticky_header, shadows, fallback}): \(error)")
            }
        }

        /// One line: the shares, the sticky header, the shadows, the fallback.
        static func describe(_ policy: TrafficPolicy) -> String {
            let total = policy.weights.values.reduce(0, +)
            var parts =
                policy.weights.isEmpty
                ? ["no weights (the default version answers)"]
                : [
                    policy.weights.sorted { $0.key < $1.key }
                        .map { "v\($0.key) " + String(format: "%.1f%%", total > 0 ? $0.value / total * 100 : 0) }.joined(separator: ", ")
                ]
            if let header = policy.stickyHeader { parts.append("sticky on \(header)") }
            if let input = policy.stickyInput { parts.append("sticky on input \(input)") }
            if !policy.shadows.isEmpty { parts.append("shadows " + policy.shadows.map { "v\($0)" }.joined(separator: ", ")) }
            if let fallback = policy.fallback {
                var text =
                    "fallback "
                    + [fallback.version.map { "v\($0)" }, fallback.defaultOutputs.map { _ in "default answer" }]
                    .compactMap { $0 }.joined(separator: " then ")
                if let timeout = fallback.timeoutMilliseconds { text += " after \(timeout) ms" }
                text += ", circuit opens after \(fallback.failuresToOpen) failures for \(fallback.openSeconds) s"
                parts.append(text)
            }
            return parts.joined(separator: "; ")
        }

        func run() async throws {
            var policy: TrafficPolicy?
            if let file { policy = try Self.policy(file: file) }
            if !clear, file == nil {
                var table: [Int: Double] = [:]
                for pair in (weights ?? "").split(separator: ",") {
                    let parts = pair.split(separator: "=")
                    guard parts.count == 2, let version = Int(parts[0].trimmingCharacters(in: .whitespaces)),
                        let weight = Double(parts[1].trimmingCharacters(in: .whitespaces))
                    else {
                        throw ValidationError("--weights takes VERSION=WEIGHT pairs, such as 1=90,2=10; got '\(pair)'")
                    }
                    table[version] = weight
                }
                let shadows = try (shadow ?? "").split(separator: ",").map { text in
                    guard let version = Int(text.trimmingCharacters(in: .whitespaces)) else {
                        throw ValidationError("--shadow takes version numbers, such as 3")
                    }
                    return version
                }
                var fallback: FallbackPolicy?
                if fallbackGiven {
                    var defaults: [String: [FallbackValue]]?
                    if let fallbackDefault {
                        do {
                            defaults = try JSONDecoder().decode(FallbackPolicy.self, from: Data(#"{"default":\#(fallbackDefault)}"#.utf8))
                                .defaultOutputs
                        } catch {
                            throw ValidationError("--fallback-default takes JSON by output name, such as '{\"label\": 0}'")
                        }
                    }
                    fallback = FallbackPolicy(
                        version: fallbackVersion, defaultOutputs: defaults, timeoutMilliseconds: fallbackTimeout,
                        failuresToOpen: circuitFailures ?? 5, openSeconds: circuitOpen ?? 30)
                }
                policy = TrafficPolicy(weights: table, stickyHeader: stickyHeader, stickyInput: stickyInput, shadows: shadows, fallback: fallback)
            }
            try await withRegistry(registry, changes: changes) { client in
                try await client.setTraffic(model: name, policy: policy)
                if let policy {
                    print("\(name): \(Self.describe(policy))")
                } else {
                    print("\(name): no traffic policy (requests go to the default version)")
                }
            }
        }
    }

    struct Unalias: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "unalias", abstract: "Delete an alias.")
        @Argument(help: "The model.") var name: String
        @Argument(help: "The alias.") var alias: String
        @OptionGroup var registry: RegistryOptions
        @OptionGroup var changes: ChangeOptions

        func run() async throws {
            try await withRegistry(registry, changes: changes) { client in
                try await client.removeAlias(model: name, alias: alias)
                print("deleted \(name)@\(alias)")
            }
        }
    }

    struct Archive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "archive", abstract: "Retire a version: kept for the record, no longer served.")
        @Argument(help: "The model.") var name: String
        @Argument(help: "The version.") var version: Int
        @OptionGroup var registry: RegistryOptions
        @OptionGroup var changes: ChangeOptions

        func run() async throws {
            try await withRegistry(registry, changes: changes) { client in
                try await client.archiveVersion(model: name, version: version)
                print("archived \(name) v\(version)")
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "delete", abstract: "Delete a version and its bundle (refused while an alias names it).")
        @Argument(help: "The model.") var name: String
        @Argument(help: "The version.") var version: Int
        @OptionGroup var registry: RegistryOptions
        @OptionGroup var changes: ChangeOptions

        func run() async throws {
            try await withRegistry(registry, changes: changes) { client in
                try await client.deleteVersion(model: name, version: version)
                print("deleted \(name) v\(version)")
            }
        }
    }
}

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Read and check the registry's hash-chained audit trail.", subcommands: [Log.self, Verify.self])

    struct Log: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "log", abstract: "Print every change: time, actor, action, before and after.")
        @Option(help: "Only this model's changes.") var model: String?
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var registry: RegistryOptions

        func run() async throws {
            try await withRegistry(registry) { client in
                let entries = try await client.auditLog(model: model)
                if json { return try printAuditJSON(entries) }
                var rows = [["SEQ", "TIME", "ACTOR", "ACTION", "MODEL", "VERSION", "CHANGE"]]
                for entry in entries {
                    let change = [entry.before.map { "from \($0)" }, entry.after.map { "to \($0)" }].compactMap { $0 }
                    rows.append([
                        String(entry.seq), entry.at, entry.actor, entry.action, entry.model,
                        entry.version.map { "v\($0)" } ?? "", change.joined(separator: " "),
                    ])
                }
                printTable(rows)
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Check the chain: exits 1 naming the first edited or missing entry.")
        @OptionGroup var registry: RegistryOptions

        func run() async throws {
            try await withRegistry(registry) { client in
                let result = try await client.verifyAudit()
                if result.ok {
                    print("audit trail intact: \(result.entries) entries")
                } else {
                    throw TernError.invalidArgument("audit trail broken: \(result.problem ?? "unknown")")
                }
            }
        }
    }
}

struct AnyEncodable: Encodable {
    let value: any Encodable
    init(_ value: any Encodable) { self.value = value }
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
}
