import Foundation
import TernBundle
import TernCodecs
import TernCore
import TernModelFiles
import TernMonitoring
import TernONNX
import TernRegistry

/// A gate's verdict: every number it compared, and whether the alias may move.
public struct GateResult: Codable, Sendable {
    public struct Check: Codable, Sendable {
        public var check: String
        public var value: Double
        public var bound: Double
        public var passed: Bool
    }

    public var passed: Bool
    public var model: String
    public var alias: String
    public var candidate: Int
    /// The version the alias named (compared against); nil when it named none.
    public var current: Int?
    /// What the versions were scored on.
    public var data: String
    public var rows: Int
    public var checks: [Check]
    public var candidateMetrics: ValidationMetrics?
    public var currentMetrics: ValidationMetrics?
    public var candidateP99Milliseconds: Double?
    public var currentP99Milliseconds: Double?
    /// Failed, and the alias moved anyway (`--force`).
    public var forced: Bool
    /// Why there was nothing to check (no gate, or the alias is not guarded); then `passed` is true.
    public var skipped: String?

    package enum CodingKeys: String, CodingKey {
        case passed, model, alias, candidate, current, data, rows, checks, forced, skipped
        case candidateMetrics = "candidate_metrics"
        case currentMetrics = "current_metrics"
        case candidateP99Milliseconds = "candidate_p99_ms"
        case currentP99Milliseconds = "current_p99_ms"
    }

    /// One line: each check with its number.
    public var summary: String {
        if let skipped { return skipped }
        let checks = checks.map { check in
            "\(check.check) \(Self.number(check.bound)): \(Self.number(check.value))" + (check.passed ? "" : " FAILED")
        }
        return (passed ? "gate passed on " : "gate failed on ") + "\(rows) rows of \(data): " + checks.joined(separator: "; ")
    }

    package static func number(_ value: Double) -> String { String(format: "%.4g", value) }
}

/// Runs a model's validation gate: the candidate and the version the alias names now, on the same labelled
/// rows (the gate's `data`, else the candidate bundle's holdout), scored as `tern pack` scores; their p99
/// latency on single rows, interleaved; every bound checked; the verdict recorded in the audit trail.
public struct ValidationGate: Sendable {
    package let registry: Registry
    /// The runtime, asked for only when a model is scored (moving an alias of a model without a gate loads none).
    package let runtime: @Sendable () -> ONNXRuntime
    package let pool: RunnerPool
    package let sessionOptions: SessionOptions
    package let scratch: String
    /// Where a gate's `data` may be read: nil reads any path (the CLI on the user's own machine);
    /// `.some(nil)`, none (a server without `--gate-root`); `.some(root)`, files under `root` only.
    package let dataRoot: String??

    public init(
        registry: Registry, runtime: ONNXRuntime, pool: RunnerPool, sessionOptions: SessionOptions, scratch: String,
        dataRoot: String?? = nil
    ) {
        self.init(registry: registry, runtime: { runtime }, pool: pool, sessionOptions: sessionOptions, scratch: scratch, dataRoot: dataRoot)
    }

    public init(
        registry: Registry, runtime: @escaping @Sendable () -> ONNXRuntime, pool: RunnerPool, sessionOptions: SessionOptions,
        scratch: String, dataRoot: String?? = nil
    ) {
        self.registry = registry
        self.runtime = runtime
        self.pool = pool
        self.sessionOptions = sessionOptions
        self.scratch = scratch
        self.dataRoot = dataRoot
    }

    /// The gate's data file, read only inside ``dataRoot`` (symbolic links resolved first).
    package func readData(_ path: String) throws(TernError) -> Data {
        if case .some(let root) = dataRoot {
            guard let root else {
                throw .invalidArgument(
                    "this server reads a gate's data only under --gate-root, which it was not given: start "
                        + "it with --gate-root DIR, or leave the data out to score the candidate's holdout")
            }
            let base = URL(fileURLWithPath: root).resolvingSymlinksInPath().standardizedFileURL.path
            let full = URL(fileURLWithPath: path.hasPrefix("/") ? path : root + "/" + path).resolvingSymlinksInPath().standardizedFileURL.path
            guard full.hasPrefix(base.hasSuffix("/") ? base : base + "/") else {
                throw .invalidArgument("the gate's data must be a file under --gate-root (\(root))")
            }
            guard let data = FileManager.default.contents(atPath: full) else {
                throw .invalidArgument("the gate's data '\(Echo.clip(path))' cannot be read under --gate-root")
            }
            return data
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .invalidArgument("the gate's data '\(Echo.clip(path))' cannot be read on this machine")
        }
        return data
    }

    /// Checks `candidate` for `alias`; records the verdict (unless skipped) and, when it failed and
    /// `force` is false, throws `conflict` with every number. With `force`, a failure is recorded as forced.
    @discardableResult
    public func enforce(model: String, candidate: Int, alias: String, force: Bool, actor: String) async throws -> GateResult {
        var result = try await check(model: model, candidate: candidate, alias: alias, actor: actor, record: false)
        guard result.skipped == nil else { return result }
        result.forced = force && !result.passed
        try await record(result, actor: actor)
        if !result.passed && !force {
            throw TernError.conflict(
                "the validation gate refused \(model) v\(candidate) for '\(alias)': \(result.summary); "
                    + "the alias stays where it was (--force, or ?force=true, moves it anyway, audited as forced)")
        }
        return result
    }

    /// Moves `alias` to `version` once the gate lets it (with `force`, anyway: audited as forced): the one
    /// owner of "move an alias", for the server and the CLI's local mode alike.
    public func moveAlias(model: String, alias: String, version: Int, force: Bool, actor: String) async throws {
        try await enforce(model: model, candidate: version, alias: alias, force: force, actor: actor)
        try await registry.setAlias(model: model, alias: alias, version: version, actor: actor)
    }

    /// How much worse than the stable version a candidate's holdout metric may be when a rollout starts and
    /// the model has no gate of its own: accuracy for a classifier, r2 for a regressor (docs/rollouts.md).
    public static let defaultRolloutTolerance = 0.02

    /// Starts a rollout the gate lets start (the one place a rollout starts, for the server and the CLI's
    /// local mode alike): the model's gate, else the default one (``defaultRolloutTolerance`` on the
    /// candidate's holdout, both versions scored on the same rows), runs before the first step; a failing
    /// candidate is refused (`conflict`). `skipGate` starts it anyway, audited as a forced gate.
    public func startRollout(_ proposed: Rollout, actor: String, skipGate: Bool) async throws -> Rollout {
        try proposed.validate()
        var proposed = proposed
        if skipGate {
            var result = GateResult(
                passed: false, model: proposed.model, alias: proposed.alias, candidate: proposed.candidate,
                current: nil, data: "", rows: 0, checks: [], forced: true)
            result.skipped = "skipped by --skip-gate before the rollout's first step"
            try await record(result, actor: actor)
            proposed.gateSkipped = "started with --skip-gate by \(actor)"
        } else {
            let configured = try await registry.gate(model: proposed.model)
            var policy = configured
            if policy.map({ !$0.aliases.contains(proposed.alias) }) ?? true {
                let bundle = try ModelBundle(archive: try await registry.archive(proposed.model, proposed.candidate))
                guard bundle.files[BundleFile.holdout] != nil else {
                    proposed.gateSkipped =
                        "no gate: v\(proposed.candidate)'s bundle holds no holdout (tern pack --holdout) and the model "
                        + "has no gate (tern models gate)"
                    return try await registry.startRollout(proposed, actor: actor)
                }
                let metrics: ValidationMetrics? = try bundle.decoded(ValidationMetrics.self, file: BundleFile.metrics)
                let metric = metrics?.task == "regression" ? "r2" : "accuracy"
                policy = GatePolicy(aliases: [proposed.alias], maxRegression: [metric: Self.defaultRolloutTolerance])
            }
            let result = try await check(
                model: proposed.model, candidate: proposed.candidate, alias: proposed.alias, actor: actor,
                record: true, policy: policy)
            if !result.passed {
                throw TernError.conflict(
                    "the validation gate refused to start rolling out \(proposed.model) v\(proposed.candidate): "
                        + result.summary
                        + (configured == nil
                            ? " (the default gate: no more than \(Self.defaultRolloutTolerance) worse "
                                + "than the stable version on the candidate's holdout)" : "")
                        + "; no traffic moved (--skip-gate, or \"skip_gate\": true, starts it anyway, audited)")
            }
        }
        return try await registry.startRollout(proposed, actor: actor)
    }

    /// The verdict for `candidate` as `alias` (recorded unless `record` is false or there was nothing to check).
    /// `policy` replaces the model's own gate (a rollout's default gate).
    public func check(
        model: String, candidate: Int, alias: String, actor: String, record: Bool = true, policy override: GatePolicy? = nil
    ) async throws -> GateResult {
        let record = record
        var result = GateResult(
            passed: true, model: model, alias: alias, candidate: candidate, current: nil, data: "", rows: 0,
            checks: [], forced: false)
        var found = override
        if found == nil { found = try await registry.gate(model: model) }
        guard let policy = found else {
            result.skipped = "no validation gate for \(model)"
            return result
        }
        guard policy.aliases.contains(alias) else {
            result.skipped = "the gate does not guard '\(alias)'"
            return result
        }
        let current = try await registry.model(model).aliases[alias]
        result.current = current == candidate ? nil : current
        let candidateBundle = try ModelBundle(archive: try await registry.archive(model, candidate))
        // The rows: the gate's data, else the candidate's holdout.
        let text: Data
        if let path = policy.data {
            (text, result.data) = (try readData(path), path)
        } else if let holdout = candidateBundle.files[BundleFile.holdout] {
            (text, result.data) = (holdout, "v\(candidate)'s holdout")
        } else {
            throw TernError.conflict(
                "the validation gate of \(model) has no labelled data: v\(candidate)'s bundle holds no holdout "
                    + "(tern pack --holdout) and the gate names no data (tern models gate \(model) --labelled-data FILE)")
        }
        // A file's contents are never echoed in errors (a gate's data may be any file an admin names).
        let table: CSVTable
        do {
            table = try CSVTable(text: String(decoding: text, as: UTF8.self), source: result.data)
        } catch {
            throw TernError.invalidArgument("\(result.data) is not a CSV file with a header row")
        }
        let metrics: ValidationMetrics? = try candidateBundle.decoded(ValidationMetrics.self, file: BundleFile.metrics)
        let labelColumn = policy.labelColumn ?? metrics?.labelColumn ?? "label"
        guard let labelIndex = table.index(of: labelColumn) else {
            let columns = policy.data == nil ? " (columns: \(table.columns.joined(separator: ", ")))" : " (\(table.columns.count) columns)"
            throw TernError.invalidArgument("\(result.data) has no label column '\(Echo.clip(labelColumn))'" + columns)
        }
        let truth = table.column(labelIndex)
        let features = table.dropping([labelColumn])
        result.rows = table.rows.count

        let candidateServed = try load(candidateBundle, model: model, version: candidate)
        result.candidateMetrics = try await score(
            candidateServed, bundle: candidateBundle, features: features, truth: truth, labelColumn: labelColumn, source: result.data)
        var currentServed: ServedModel?
        if let current = result.current {
            let bundle = try ModelBundle(archive: try await registry.archive(model, current))
            let served = try load(bundle, model: model, version: current)
            currentServed = served
            result.currentMetrics = try await score(
                served, bundle: bundle, features: features, truth: truth, labelColumn: labelColumn, source: result.data)
        }
        if let currentServed {
            let (mine, theirs) = try await latency(candidateServed, currentServed, features: features, runs: policy.latencyRows)
            (result.candidateP99Milliseconds, result.currentP99Milliseconds) = (mine, theirs)
        }
        result.checks = GateEvaluation.checks(
            policy: policy, candidate: result.candidateMetrics, current: result.currentMetrics, currentVersion: result.current,
            candidateP99: result.candidateP99Milliseconds, currentP99: result.currentP99Milliseconds)
        result.passed = result.checks.allSatisfy(\.passed)
        if record { try await self.record(result, actor: actor) }
        return result
    }

    /// Changes a rollout; promotion (the alias moving to the candidate) goes through the gate first.
    public func updateRollout(model: String, _ action: RolloutAction, actor: String, force: Bool) async throws -> Rollout {
        var action = action
        if case .promote = action {
            guard let rollout = try await registry.rollout(model: model), rollout.isActive else {
                throw TernError.notFound("model '\(model)' has no active rollout to promote")
            }
            let result = try await enforce(model: model, candidate: rollout.candidate, alias: rollout.alias, force: force, actor: actor)
            action = .promote(reason: "promoted by \(actor); " + result.summary)
        }
        return try await registry.updateRollout(model: model, action, actor: actor)
    }

    private func record(_ result: GateResult, actor: String) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try await registry.recordGate(
            model: result.model, version: result.candidate,
            result: String(decoding: try encoder.encode(result), as: UTF8.self),
            forced: result.forced, actor: actor)
    }

    private func load(_ bundle: ModelBundle, model: String, version: Int) throws(TernError) -> ServedModel {
        var config = ModelConfig()
        if let names = bundle.manifest.featureNames { config.featureNames = names }
        let onnx = try BundleValidator.load(bundle, runtime: runtime(), pool: pool, options: sessionOptions, scratch: scratch)
        return ServedModel(name: model, version: version, model: onnx, config: config, platform: "onnxruntime_onnx")
    }

    private func score(
        _ served: ServedModel, bundle: ModelBundle, features: CSVTable, truth: [String], labelColumn: String, source: String
    ) async throws -> ValidationMetrics {
        let outputs = try await TableRunner(served: served).run(features, source: source)
        let task = bundle.manifest.task ?? outputs.inferredTask
        return try HoldoutScoring.score(
            task: task, truth: truth, outputs: outputs, classes: bundle.manifest.classLabels,
            labelColumn: labelColumn, source: source
        ).0
    }

    /// Each version's p99 over `runs` single-row runs, interleaved (so both see the same machine), after a warm-up.
    private func latency(_ a: ServedModel, _ b: ServedModel, features: CSVTable, runs: Int) async throws -> (Double, Double) {
        var times: ([Double], [Double]) = ([], [])
        let rows = features.rows
        guard !rows.isEmpty else { return (0, 0) }
        let requests = try (0..<min(rows.count, runs)).map { index in
            try TabularInput.request(columns: features.columns, rows: [rows[index]], signature: a.model.signature, featureNames: a.featureNames)
        }
        let clock = ContinuousClock()
        for index in 0..<(runs + 10) {
            let request = requests[index % requests.count]
            for (which, served) in [a, b].enumerated() {
                let (inputs, outputs) = try RequestValidator.validate(request, against: served.model.signature, maxBatchSize: 0, allowNonFinite: true)
                let elapsed = try await clock.measure { _ = try await served.model.run(inputs: inputs, outputs: outputs, timeout: nil) }
                guard index >= 10 else { continue }
                let milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
                if which == 0 { times.0.append(milliseconds) } else { times.1.append(milliseconds) }
            }
        }
        func p99(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            return sorted[min(sorted.count - 1, Int((Double(sorted.count) * 0.99).rounded(.up)) - 1)]
        }
        return (p99(times.0), p99(times.1))
    }
}
