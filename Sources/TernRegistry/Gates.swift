import Foundation
import SQLKit
import TernBundle
import TernCore

/// A model's validation gate: what a version must do on labelled data before an alias it guards may name it.
///
/// ```json
/// {"aliases": ["production"], "require": {"roc_auc": 0.75}, "max_regression": {"roc_auc": 0.01},
///  "max_latency_increase": 0.2, "data": "/data/credit-holdout.csv", "label_column": "default"}
/// ```
/// `require` holds absolute bounds: minimums, except for the metrics where lower is better (`log_loss`, `mae`,
/// `rmse`), where they are maximums. `max_regression` bounds how much worse than the version the alias names
/// now each metric may be. `max_latency_increase`: the candidate's p99 on the same rows at most this fraction
/// above the current version's. Without `data`, the candidate bundle's holdout (`tern pack --holdout`).
public struct GatePolicy: Codable, Sendable, Equatable {
    public var aliases: [String]
    public var require: [String: Double]
    public var maxRegression: [String: Double]
    public var maxLatencyIncrease: Double?
    /// A labelled CSV on the machine that runs the gate (the server, or the CLI on a local registry).
    public var data: String?
    public var labelColumn: String?
    /// Single-row runs per version for the latency comparison.
    public var latencyRows: Int

    public static let metrics = ValidationMetrics.names
    public static let lowerIsBetter: Set<String> = ["log_loss", "mae", "rmse"]

    public init(
        aliases: [String] = [Registry.defaultAlias], require: [String: Double] = [:], maxRegression: [String: Double] = [:],
        maxLatencyIncrease: Double? = nil, data: String? = nil, labelColumn: String? = nil, latencyRows: Int = 200
    ) {
        self.aliases = aliases
        self.require = require
        self.maxRegression = maxRegression
        self.maxLatencyIncrease = maxLatencyIncrease
        self.data = data
        self.labelColumn = labelColumn
        self.latencyRows = latencyRows
    }

    /// The JSON fields it reads: any other in a request is refused.
    public static var fieldNames: Set<String> { Set(CodingKeys.allCases.map(\.stringValue)) }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case aliases, require, data
        case maxRegression = "max_regression"
        case maxLatencyIncrease = "max_latency_increase"
        case labelColumn = "label_column"
        case latencyRows = "latency_rows"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        aliases = try container.decodeIfPresent([String].self, forKey: .aliases) ?? [Registry.defaultAlias]
        require = try container.decodeIfPresent([String: Double].self, forKey: .require) ?? [:]
        maxRegression = try container.decodeIfPresent([String: Double].self, forKey: .maxRegression) ?? [:]
        maxLatencyIncrease = try container.decodeIfPresent(Double.self, forKey: .maxLatencyIncrease)
        data = try container.decodeIfPresent(String.self, forKey: .data)
        labelColumn = try container.decodeIfPresent(String.self, forKey: .labelColumn)
        latencyRows = try container.decodeIfPresent(Int.self, forKey: .latencyRows) ?? 200
    }

    public func validate() throws(TernError) {
        guard !aliases.isEmpty else { throw .invalidArgument("a gate guards at least one alias") }
        for alias in aliases { try Registry.checkAlias(alias) }
        guard !require.isEmpty || !maxRegression.isEmpty || maxLatencyIncrease != nil else {
            throw .invalidArgument(
                "a gate needs a bound: require {\"roc_auc\": 0.75}, max_regression {\"roc_auc\": 0.01} or max_latency_increase 0.2")
        }
        for name in Set(require.keys).union(maxRegression.keys) where !Self.metrics.contains(name) {
            throw .invalidArgument("unknown metric '\(name)'; known: " + Self.metrics.sorted().joined(separator: ", "))
        }
        for (name, bound) in require where !bound.isFinite {
            throw .invalidArgument("require.\(name) must be a number")
        }
        for (name, bound) in maxRegression where !(bound >= 0 && bound.isFinite) {
            throw .invalidArgument("max_regression.\(name) must be 0 or more")
        }
        if let increase = maxLatencyIncrease, !(increase >= 0 && increase.isFinite) {
            throw .invalidArgument("max_latency_increase must be 0 or more (0.2 = p99 at most 20% above)")
        }
        guard (10...100_000).contains(latencyRows) else { throw .invalidArgument("latency_rows must be 10...100000") }
    }
}

extension Registry {
    /// The model's validation gate, if it has one.
    public func gate(model: String) async throws(TernError) -> GatePolicy? {
        try await run {
            guard
                let text = try await self.sql.raw("SELECT gate FROM tern_gates WHERE model = \(bind: model)").first()?
                    .decode(column: "gate", as: String.self)
            else { return nil }
            return try JSONDecoder().decode(GatePolicy.self, from: Data(text.utf8))
        }
    }

    /// Sets (or, with nil, removes) a model's gate. Audited as `gate-policy`.
    public func setGate(model: String, policy: GatePolicy?, actor: String) async throws(TernError) {
        try policy?.validate()
        try await write {
            let before = try await self.sql.raw("SELECT gate FROM tern_gates WHERE model = \(bind: model)").first()?
                .decode(column: "gate", as: String.self)
            guard let policy else {
                guard before != nil else { throw TernError.notFound("model '\(model)' has no validation gate") }
                try await self.sql.raw("DELETE FROM tern_gates WHERE model = \(bind: model)").run()
                try await self.appendAudit(actor: actor, action: "gate-policy", model: model, version: nil, before: before, after: nil)
                return
            }
            let known =
                try await self.sql.raw("SELECT COUNT(*) AS n FROM tern_versions WHERE model = \(bind: model)").first()?
                .decode(column: "n", as: Int.self) ?? 0
            guard known > 0 else { throw TernError.notFound("no model '\(model)' in the registry") }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let after = String(decoding: try encoder.encode(policy), as: UTF8.self)
            if before == after { return }
            try await self.sql.raw("DELETE FROM tern_gates WHERE model = \(bind: model)").run()
            try await self.sql.raw(
                "INSERT INTO tern_gates (model, gate, updated_at) VALUES (\(bind: model), \(bind: after), \(bind: BundleManifest.timestamp()))"
            ).run()
            try await self.appendAudit(actor: actor, action: "gate-policy", model: model, version: nil, before: before, after: after)
        }
    }

    /// Records a gate's verdict in the audit trail: `gate` (passed or refused) or `gate-forced` (failed, and
    /// the alias moved anyway).
    public func recordGate(model: String, version: Int, result: String, forced: Bool, actor: String) async throws(TernError) {
        try await write {
            try await self.appendAudit(
                actor: actor, action: forced ? "gate-forced" : "gate", model: model, version: version,
                before: nil, after: result)
        }
    }
}
