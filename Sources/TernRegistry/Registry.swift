import Foundation
import Logging
import SQLKit
import TernBundle
import TernCore

/// One version as the registry holds it.
public struct VersionRecord: Codable, Sendable, Equatable {
    public var model: String
    public var version: Int
    /// `active` or `archived`. Archived versions keep their record and artifact but are not served.
    public var state: String
    public var sha256: String
    public var bytes: Int
    public var createdAt: String
    public var createdBy: String
    public var manifest: BundleManifest
    public var metrics: ValidationMetrics?
    /// The aliases that name this version.
    public var aliases: [String]

    enum CodingKeys: String, CodingKey {
        case model, version, state, sha256, bytes, manifest, metrics, aliases
        case createdAt = "created_at"
        case createdBy = "created_by"
    }
}

/// A model: its versions, newest last, and its aliases.
public struct ModelRecord: Codable, Sendable, Equatable {
    public var name: String
    public var versions: [VersionRecord]
    public var aliases: [String: Int]
    /// How requests that name no version are shared among the versions (canary, A/B, shadows); nil: all go
    /// to the default version.
    public var traffic: TrafficPolicy?

    /// What a request without a version gets: the `production` alias if set, else the newest active version.
    public var defaultVersion: Int? {
        aliases[Registry.defaultAlias] ?? versions.last(where: { $0.state == "active" })?.version
    }

    enum CodingKeys: String, CodingKey {
        case name, versions, aliases, traffic
        case defaultVersion = "default_version"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(versions, forKey: .versions)
        try container.encode(aliases, forKey: .aliases)
        try container.encodeIfPresent(defaultVersion, forKey: .defaultVersion)
        try container.encodeIfPresent(traffic, forKey: .traffic)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        versions = try container.decode([VersionRecord].self, forKey: .versions)
        aliases = try container.decode([String: Int].self, forKey: .aliases)
        traffic = try container.decodeIfPresent(TrafficPolicy.self, forKey: .traffic)
    }

    public init(name: String, versions: [VersionRecord], aliases: [String: Int], traffic: TrafficPolicy? = nil) {
        self.name = name
        self.versions = versions
        self.aliases = aliases
        self.traffic = traffic
    }
}

/// The whole registry at one point of its change sequence: what a server syncs its loaded models to.
public struct RegistrySnapshot: Sendable, Equatable {
    /// The audit sequence number the snapshot reflects.
    public var seq: Int
    public var models: [ModelRecord]

    public init(seq: Int, models: [ModelRecord]) {
        self.seq = seq
        self.models = models
    }
}

/// The model registry: immutable versions, movable aliases, and a hash-chained audit trail of every
/// change, in SQLite or PostgreSQL. Every change is one transaction that also appends its audit entry.
///
/// ```swift
/// let registry = try await Registry.open(database: .sqlite(path: "data/registry.sqlite"),
///                                        artifacts: .folder("data/artifacts"))
/// try await registry.push(archive: bytes, bundle: bundle, actor: "ci")
/// try await registry.setAlias(model: "credit-risk", alias: "production", version: 2, actor: "ana")
/// ```
public actor Registry {
    public static let defaultAlias = "production"

    private(set) var database: RegistryDatabase
    private let logger: Logger
    nonisolated public let location: RegistryLocation
    nonisolated public let artifactLocation: ArtifactLocation
    private var closed = false
    /// Held for each operation's whole use of the connection: the actor is reentrant, and two operations
    /// awaiting the database at once would talk over one connection, inside each other's transactions.
    private let connection = AsyncLock()

    private init(database: RegistryDatabase, location: RegistryLocation, artifacts: ArtifactLocation, logger: Logger) {
        self.database = database
        self.logger = logger
        self.location = location
        self.artifactLocation = artifacts
    }

    /// Opens (creating and migrating as needed) a registry.
    public static func open(
        database location: RegistryLocation, artifacts: ArtifactLocation, logger: Logger = Logger(label: "tern.registry")
    ) async throws(TernError) -> Registry {
        let database = try await RegistryDatabase.open(location, logger: logger)
        do {
            try await Migrations.apply(to: database)
        } catch {
            await database.close()
            throw TernError.unavailable("cannot prepare the registry database \(location): \(String(reflecting: error))")
        }
        return Registry(database: database, location: location, artifacts: artifacts, logger: logger)
    }

    public func close() async {
        guard !closed else { return }
        closed = true
        await connection.lock()
        await database.close()
        connection.unlock()
    }

    var sql: any SQLDatabase { database.sql }

    // MARK: Reading

    /// The newest audit sequence number: it changes with every change, so replicas poll it.
    public func headSeq() async throws(TernError) -> Int {
        try await run { try await self.sql.raw("SELECT seq FROM tern_head WHERE id = 1").first()?.decode(column: "seq", as: Int.self) ?? 0 }
    }

    public func snapshot() async throws(TernError) -> RegistrySnapshot {
        try await run {
            let seq = try await self.sql.raw("SELECT seq FROM tern_head WHERE id = 1").first()?.decode(column: "seq", as: Int.self) ?? 0
            return RegistrySnapshot(seq: seq, models: try await self.loadModels(name: nil))
        }
    }

    public func models() async throws(TernError) -> [ModelRecord] {
        try await run { try await self.loadModels(name: nil) }
    }

    public func model(_ name: String) async throws(TernError) -> ModelRecord {
        let found = try await run { try await self.loadModels(name: name).first }
        guard let found else { throw .notFound("unknown model '\(name)' in the registry") }
        return found
    }

    public func version(_ name: String, _ version: Int) async throws(TernError) -> VersionRecord {
        let model = try await model(name)
        guard let record = model.versions.first(where: { $0.version == version }) else {
            throw .notFound(
                "model '\(name)' has no version \(version); versions: "
                    + model.versions.map { String($0.version) }.joined(separator: ", "))
        }
        return record
    }

    /// The bundle archive of a version, as pushed.
    public func archive(_ name: String, _ version: Int) async throws(TernError) -> Data {
        let record = try await self.version(name, version)
        // New archives go where this registry was told; an archive is read from wherever it is (a replica
        // started without --artifacts-in-database still serves what another pushed into the database).
        let fromDatabase: () async throws(TernError) -> Data? = {
            let row = try await self.run {
                try await self.sql.raw("SELECT data FROM tern_artifacts WHERE sha256 = \(bind: record.sha256)").first()
            }
            return try row.map { row throws(TernError) in try self.run { try row.decode(column: "data", as: Data.self) } }
        }
        let data: Data
        switch artifactLocation {
        case .folder(let root):
            let folder = FolderArtifacts(root: root)
            if let stored = try? folder.get(record.sha256) {
                data = stored
            } else if let stored = try await fromDatabase() {
                data = stored
            } else {
                data = try folder.get(record.sha256)  // the folder's error names what is missing
            }
        case .database:
            guard let stored = try await fromDatabase() else { throw .internalError("artifact \(record.sha256) is missing from the database") }
            data = stored
        }
        guard Digest.sha256(data) == record.sha256 else {
            throw .internalError("artifact of \(name) v\(version) does not match its recorded sha256 \(record.sha256)")
        }
        return data
    }

    private func loadModels(name: String?) async throws -> [ModelRecord] {
        let filter: SQLQueryString = name.map { "WHERE model = \(bind: $0)" } ?? ""
        let versionRows = try await sql.raw(
            "SELECT model, version, state, sha256, bytes, manifest, metrics, created_at, created_by FROM tern_versions \(filter) ORDER BY model, version"
        ).all()
        let aliasRows = try await sql.raw("SELECT model, alias, version FROM tern_aliases \(filter) ORDER BY model, alias").all()
        var aliases: [String: [String: Int]] = [:]
        for row in aliasRows {
            aliases[try row.decode(column: "model", as: String.self), default: [:]][try row.decode(column: "alias", as: String.self)] =
                try row.decode(column: "version", as: Int.self)
        }
        var models: [String: [VersionRecord]] = [:]
        var order: [String] = []
        let decoder = JSONDecoder()
        for row in versionRows {
            let model = try row.decode(column: "model", as: String.self)
            let version = try row.decode(column: "version", as: Int.self)
            let metrics = try row.decode(column: "metrics", as: String?.self)
            let named = (aliases[model] ?? [:]).filter { $0.value == version }.keys.sorted()
            if models[model] == nil { order.append(model) }
            models[model, default: []].append(
                VersionRecord(
                    model: model, version: version, state: try row.decode(column: "state", as: String.self),
                    sha256: try row.decode(column: "sha256", as: String.self), bytes: try row.decode(column: "bytes", as: Int.self),
                    createdAt: try row.decode(column: "created_at", as: String.self),
                    createdBy: try row.decode(column: "created_by", as: String.self),
                    manifest: try decoder.decode(BundleManifest.self, from: Data(try row.decode(column: "manifest", as: String.self).utf8)),
                    metrics: try metrics.map { try decoder.decode(ValidationMetrics.self, from: Data($0.utf8)) },
                    aliases: named))
        }
        var traffic: [String: TrafficPolicy] = [:]
        for row in try await sql.raw("SELECT model, policy FROM tern_traffic \(filter)").all() {
            traffic[try row.decode(column: "model", as: String.self)] =
                try decoder.decode(TrafficPolicy.self, from: Data(try row.decode(column: "policy", as: String.self).utf8))
        }
        return order.map { ModelRecord(name: $0, versions: models[$0]!, aliases: aliases[$0] ?? [:], traffic: traffic[$0]) }
    }

    // MARK: Changing

    /// Registers a bundle as a new, immutable version. `bundle` must be `archive` read and checked
    /// (``ModelBundle/init(archive:limits:)``) and its signature checked against the model by the caller.
    ///
    /// - Parameter version: overrides the manifest's version; with neither, the next number.
    /// - Throws: ``TernError`` `conflict` if the version exists.
    @discardableResult
    public func push(
        archive: Data, bundle: ModelBundle, version: Int? = nil, actor: String, signer: String? = nil
    ) async throws(TernError) -> VersionRecord {
        try await register(archive: archive, bundle: bundle, version: version, actor: actor, signer: signer).record
    }

    /// ``push(archive:bundle:version:actor:)``, idempotent: the same archive pushed again for the same model
    /// (with no version, or the version it already has) changes nothing and answers that version with
    /// `created` false, so a client that lost the answer to a push can simply push again.
    /// - Parameter signer: the trusted key that signed the bundle, when checked: recorded in the audit trail.
    public func register(archive: Data, bundle: ModelBundle, version: Int? = nil, actor: String, signer: String? = nil)
        async throws(TernError) -> (record: VersionRecord, created: Bool)
    {
        // A signed manifest's version is part of what was signed: it may not be registered as another one.
        if let signature = bundle.signature, let signed = bundle.manifest.version, let version, version != signed {
            throw TernError.invalidArgument(
                "this bundle is signed (by \(signer ?? signature.signer)) as version \(signed); it cannot be "
                    + "registered as version \(version): pack and sign it again as that version")
        }
        let name = bundle.manifest.name
        let sha = Digest.sha256(archive)
        if case .folder(let root) = artifactLocation {
            // Content-addressed and written before the transaction: a crash leaves at most an unreferenced file.
            try FolderArtifacts(root: root).put(archive, sha256: sha)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let manifestJSON = String(decoding: try run { try encoder.encode(bundle.manifest) }, as: UTF8.self)
        let metrics = try bundle.decoded(ValidationMetrics.self, file: BundleFile.metrics)
        let metricsJSON = try metrics.map { m throws(TernError) in String(decoding: try run { try encoder.encode(m) }, as: UTF8.self) }
        let requested = version ?? bundle.manifest.version
        if let requested { try ModelVersionNumber.check(requested) }
        let created = BundleManifest.timestamp()
        let (number, isNew): (Int, Bool)
        do {
            (number, isNew) = try await insertVersion(
                name: name, sha: sha, archive: archive, requested: requested, manifestJSON: manifestJSON,
                metricsJSON: metricsJSON, created: created, actor: actor, signer: signer)
        } catch {
            // A refused push leaves no file behind (unless another version holds the same archive).
            if case .folder(let root) = artifactLocation {
                try? await write {
                    let used = try await self.sql.raw("SELECT 1 AS one FROM tern_versions WHERE sha256 = \(bind: sha)").first()
                    if used == nil { FolderArtifacts(root: root).remove(sha) }
                }
            }
            throw error
        }
        return (try await self.version(name, number), isNew)
    }

    private func insertVersion(
        name: String, sha: String, archive: Data, requested: Int?, manifestJSON: String, metricsJSON: String?,
        created: String, actor: String, signer: String?
    ) async throws(TernError) -> (Int, Bool) {
        try await write {
            // The same archive again: its version (the one asked for, else the newest holding it), unchanged.
            let same =
                try await self.sql.raw(
                    """
                    SELECT MAX(version) AS v FROM tern_versions
                    WHERE model = \(bind: name) AND sha256 = \(bind: sha) AND (\(bind: requested ?? 0) = 0 OR version = \(bind: requested ?? 0))
                    """
                ).first()?.decode(column: "v", as: Int?.self) ?? nil
            if let same { return (same, false) }
            let newest =
                try await self.sql.raw("SELECT MAX(version) AS v FROM tern_versions WHERE model = \(bind: name)").first()?
                .decode(column: "v", as: Int?.self) ?? nil
            let next = (newest ?? 0) < ModelVersionNumber.maximum ? (newest ?? 0) + 1 : nil
            guard let number = requested ?? next else {
                throw TernError.conflict(
                    "model '\(name)' has reached the highest version number, \(ModelVersionNumber.maximum); "
                        + "push under a new model name")
            }
            let exists = try await self.sql.raw("SELECT 1 AS one FROM tern_versions WHERE model = \(bind: name) AND version = \(bind: number)")
                .first()
            if exists != nil {
                throw TernError.conflict("model '\(name)' already has version \(number); versions are immutable: push a new version")
            }
            if self.artifactLocation == .database {
                try await self.sql.raw(
                    "INSERT INTO tern_artifacts (sha256, data) VALUES (\(bind: sha), \(bind: archive)) ON CONFLICT (sha256) DO NOTHING"
                ).run()
            }
            try await self.sql.raw(
                """
                INSERT INTO tern_versions (model, version, state, sha256, bytes, manifest, metrics, created_at, created_by)
                VALUES (\(bind: name), \(bind: number), 'active', \(bind: sha), \(bind: archive.count), \(bind: manifestJSON),
                        \(bind: metricsJSON), \(bind: created), \(bind: actor))
                """
            ).run()
            try await self.appendAudit(
                actor: actor, action: "push", model: name, version: number, before: nil,
                after: #"{"sha256":"\#(sha)","bytes":\#(archive.count)"#
                    + (signer.map { #","signer":\#(Self.jsonString($0))}"# } ?? "}"))
            return (number, true)
        }
    }

    /// Points `alias` of `model` at `version` (creating or moving it).
    ///
    /// - Throws: ``TernError`` `notFound` for a missing or archived version; `invalidArgument` for a bad alias name.
    public func setAlias(model: String, alias: String, version: Int, actor: String) async throws(TernError) {
        try Self.checkAlias(alias)
        try await write { try await self.moveAlias(model: model, alias: alias, version: version, actor: actor) }
    }

    /// Points an alias at a version, inside the caller's transaction.
    func moveAlias(model: String, alias: String, version: Int, actor: String) async throws {
        let state = try await self.sql.raw("SELECT state FROM tern_versions WHERE model = \(bind: model) AND version = \(bind: version)")
            .first()?.decode(column: "state", as: String.self)
        guard let state else {
            throw TernError.notFound("cannot point '\(alias)' at \(model) v\(version): no such version")
        }
        guard state == "active" else {
            throw TernError.conflict("cannot point '\(alias)' at \(model) v\(version): the version is archived")
        }
        let before = try await self.aliasTarget(model: model, alias: alias)
        if before == version { return }
        let now = BundleManifest.timestamp()
        if before == nil {
            try await self.sql.raw(
                "INSERT INTO tern_aliases (model, alias, version, updated_at) VALUES (\(bind: model), \(bind: alias), \(bind: version), \(bind: now))"
            ).run()
        } else {
            try await self.sql.raw(
                "UPDATE tern_aliases SET version = \(bind: version), updated_at = \(bind: now) WHERE model = \(bind: model) AND alias = \(bind: alias)"
            ).run()
        }
        try await self.appendAudit(
            actor: actor, action: "alias", model: model, version: version,
            before: before.map { #"{"alias":"\#(alias)","version":\#($0)}"# },
            after: #"{"alias":"\#(alias)","version":\#(version)}"#)
    }

    /// Sets (or, with nil, removes) a model's traffic policy; the versions it names must be active.
    public func setTraffic(model: String, policy: TrafficPolicy?, actor: String) async throws(TernError) {
        try await write {
            if let rollout = try await self.storedRollout(model), rollout.isActive {
                throw TernError.conflict(
                    "\(model)'s \(rollout.state) rollout to v\(rollout.candidate) sets its traffic policy; "
                        + "abort or promote it first (tern rollout abort \(model))")
            }
            try await self.applyTraffic(model: model, policy: policy, actor: actor)
        }
    }

    /// Sets or removes a traffic policy, inside the caller's transaction.
    func applyTraffic(model: String, policy: TrafficPolicy?, actor: String) async throws {
        let active = Set(
            try await self.sql.raw(
                "SELECT version FROM tern_versions WHERE model = \(bind: model) AND state = 'active'"
            ).all().map {
                try $0.decode(column: "version", as: Int.self)
            })
        let before = try await self.sql.raw("SELECT policy FROM tern_traffic WHERE model = \(bind: model)").first()?
            .decode(column: "policy", as: String.self)
        guard let policy else {
            guard before != nil else { throw TernError.notFound("model '\(model)' has no traffic policy") }
            try await self.sql.raw("DELETE FROM tern_traffic WHERE model = \(bind: model)").run()
            try await self.appendAudit(actor: actor, action: "traffic", model: model, version: nil, before: before, after: nil)
            return
        }
        guard !active.isEmpty else { throw TernError.notFound("no model '\(model)' with active versions in the registry") }
        try policy.validate(versions: active)
        // A shadow or fallback version gets the answering versions' requests: its inputs must take them.
        if !policy.shadows.isEmpty || policy.fallback != nil {
            var inputs: [Int: String] = [:]
            var signatures: [Int: [TensorSpec]] = [:]
            for row in try await self.sql.raw("SELECT version, manifest FROM tern_versions WHERE model = \(bind: model)").all() {
                let manifest = try JSONDecoder().decode(BundleManifest.self, from: Data(try row.decode(column: "manifest", as: String.self).utf8))
                let version = try row.decode(column: "version", as: Int.self)
                signatures[version] = manifest.signature.outputs.compactMap { spec in
                    DataType(rawValue: spec.datatype).map { TensorSpec(name: spec.name, datatype: $0, shape: spec.shape) }
                }
                inputs[version] = manifest.signature.inputs
                    .map { "\($0.name) \($0.datatype) \($0.shape.dropFirst().map(String.init).joined(separator: "x"))" }.joined(separator: ", ")
            }
            // The versions that may answer: weighted ones, else every active one (requests by alias or number).
            let answering = policy.weights.isEmpty ? Array(active) : policy.weights.filter { $0.value > 0 }.map(\.key)
            let takers = policy.shadows.map { ("shadow", $0) } + (policy.fallback?.version).map { [("fallback", $0)] }.orEmpty
            for (role, taker) in takers {
                for version in answering.sorted() where version != taker && inputs[version] != inputs[taker] {
                    throw TernError.invalidArgument(
                        "\(role) v\(taker) takes \(inputs[taker] ?? "?") but v\(version) takes "
                            + "\(inputs[version] ?? "?"): every copy would fail")
                }
            }
            if let fallback = policy.fallback, fallback.defaultOutputs != nil {
                for version in answering.sorted() {
                    guard let outputs = signatures[version] else { continue }
                    if case .failure(let error) = Result(catching: { () throws(TernError) in try fallback.validateDefault(outputs: outputs) }) {
                        throw TernError.invalidArgument("v\(version): \(error.message)")
                    }
                }
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let after = String(decoding: try encoder.encode(policy), as: UTF8.self)
        if before == after { return }
        try await self.sql.raw("DELETE FROM tern_traffic WHERE model = \(bind: model)").run()
        try await self.sql.raw(
            "INSERT INTO tern_traffic (model, policy, updated_at) VALUES (\(bind: model), \(bind: after), \(bind: BundleManifest.timestamp()))"
        ).run()
        try await self.appendAudit(actor: actor, action: "traffic", model: model, version: nil, before: before, after: after)
    }

    public func removeAlias(model: String, alias: String, actor: String) async throws(TernError) {
        try await write {
            guard let before = try await self.aliasTarget(model: model, alias: alias) else {
                throw TernError.notFound("model '\(model)' has no alias '\(alias)'")
            }
            try await self.sql.raw("DELETE FROM tern_aliases WHERE model = \(bind: model) AND alias = \(bind: alias)").run()
            try await self.appendAudit(
                actor: actor, action: "unalias", model: model, version: before,
                before: #"{"alias":"\#(alias)","version":\#(before)}"#, after: nil)
        }
    }

    /// Retires a version: kept with its artifact for the record, no longer served.
    public func archiveVersion(model: String, version: Int, actor: String) async throws(TernError) {
        try await write {
            let state = try await self.checkUnaliased(model: model, version: version, doing: "archive")
            if state == "archived" { return }
            try await self.sql.raw("UPDATE tern_versions SET state = 'archived' WHERE model = \(bind: model) AND version = \(bind: version)").run()
            try await self.appendAudit(
                actor: actor, action: "archive", model: model, version: version,
                before: #"{"state":"active"}"#, after: #"{"state":"archived"}"#)
        }
    }

    /// Deletes a version and, when no other version shares it, its artifact.
    public func deleteVersion(model: String, version: Int, actor: String) async throws(TernError) {
        let sha: String = try await write {
            _ = try await self.checkUnaliased(model: model, version: version, doing: "delete")
            let sha = try await self.sql.raw("SELECT sha256 FROM tern_versions WHERE model = \(bind: model) AND version = \(bind: version)")
                .first()!.decode(column: "sha256", as: String.self)
            try await self.sql.raw("DELETE FROM tern_versions WHERE model = \(bind: model) AND version = \(bind: version)").run()
            let shared = try await self.sql.raw("SELECT 1 AS one FROM tern_versions WHERE sha256 = \(bind: sha)").first() != nil
            if !shared, self.artifactLocation == .database {
                try await self.sql.raw("DELETE FROM tern_artifacts WHERE sha256 = \(bind: sha)").run()
            }
            try await self.appendAudit(
                actor: actor, action: "delete", model: model, version: version,
                before: #"{"sha256":"\#(sha)"}"#, after: nil)
            return shared ? "" : sha
        }
        if !sha.isEmpty, case .folder(let root) = artifactLocation { FolderArtifacts(root: root).remove(sha) }
    }

    /// Records an event that changes no registry state but belongs in the trail (a server loading or unloading a version).
    public func record(action: String, model: String, version: Int?, actor: String, detail: String? = nil) async throws(TernError) {
        try await write {
            try await self.appendAudit(actor: actor, action: action, model: model, version: version, before: nil, after: detail)
        }
    }

    // MARK: Audit

    public func auditLog(model: String? = nil) async throws(TernError) -> [AuditEntry] {
        try await run {
            let filter: SQLQueryString = model.map { "WHERE model = \(bind: $0)" } ?? ""
            return try await self.sql.raw(
                "SELECT seq, at, actor, action, model, version, before, after, prev_hash, hash FROM tern_audit \(filter) ORDER BY seq"
            ).all().map { row in
                AuditEntry(
                    seq: try row.decode(column: "seq", as: Int.self), at: try row.decode(column: "at", as: String.self),
                    actor: try row.decode(column: "actor", as: String.self), action: try row.decode(column: "action", as: String.self),
                    model: try row.decode(column: "model", as: String.self), version: try row.decode(column: "version", as: Int?.self),
                    before: try row.decode(column: "before", as: String?.self), after: try row.decode(column: "after", as: String?.self),
                    prevHash: try row.decode(column: "prev_hash", as: String.self), hash: try row.decode(column: "hash", as: String.self))
            }
        }
    }

    public func verifyAudit() async throws(TernError) -> AuditVerification {
        let entries = try await auditLog()
        let head = try await run { try await self.sql.raw("SELECT seq, hash FROM tern_head WHERE id = 1").first() }
        guard let head else { return AuditVerification(ok: false, entries: entries.count, problem: "the registry's head row is missing") }
        return try run {
            AuditVerification.verify(
                entries, headSeq: try head.decode(column: "seq", as: Int.self),
                headHash: try head.decode(column: "hash", as: String.self))
        }
    }

    // MARK: Helpers

    public static func checkAlias(_ alias: String) throws(TernError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        guard !alias.isEmpty, alias.count <= 64, alias.allSatisfy(allowed.contains), Int(alias) == nil else {
            throw .invalidArgument("alias '\(alias)' must be 1-64 letters, digits, '-', '_' or '.', and not a number (numbers name versions)")
        }
    }

    func aliasTarget(model: String, alias: String) async throws -> Int? {
        try await sql.raw("SELECT version FROM tern_aliases WHERE model = \(bind: model) AND alias = \(bind: alias)")
            .first()?.decode(column: "version", as: Int.self)
    }

    /// The version's state, after checking it exists and no alias names it.
    private func checkUnaliased(model: String, version: Int, doing verb: String) async throws -> String {
        let state = try await sql.raw("SELECT state FROM tern_versions WHERE model = \(bind: model) AND version = \(bind: version)")
            .first()?.decode(column: "state", as: String.self)
        guard let state else { throw TernError.notFound("model '\(model)' has no version \(version)") }
        let names = try await sql.raw("SELECT alias FROM tern_aliases WHERE model = \(bind: model) AND version = \(bind: version) ORDER BY alias")
            .all().map { try $0.decode(column: "alias", as: String.self) }
        if !names.isEmpty {
            throw TernError.conflict(
                "cannot \(verb) \(model) v\(version): alias \(names.map { "'\($0)'" }.joined(separator: ", ")) "
                    + "points at it; move or delete the alias first")
        }
        return state
    }

    func appendAudit(actor: String, action: String, model: String, version: Int?, before: String?, after: String?) async throws {
        let head = try await sql.raw("SELECT seq, hash FROM tern_head WHERE id = 1").first()!
        let seq = try head.decode(column: "seq", as: Int.self) + 1
        let prev = try head.decode(column: "hash", as: String.self)
        let at = BundleManifest.timestamp()
        let hash = AuditEntry.hash(
            prevHash: prev, seq: seq, at: at, actor: actor, action: action, model: model,
            version: version, before: before, after: after)
        try await sql.raw(
            """
            INSERT INTO tern_audit (seq, at, actor, action, model, version, before, after, prev_hash, hash)
            VALUES (\(bind: seq), \(bind: at), \(bind: actor), \(bind: action), \(bind: model), \(bind: version),
                    \(bind: before), \(bind: after), \(bind: prev), \(bind: hash))
            """
        ).run()
        try await sql.raw("UPDATE tern_head SET seq = \(bind: seq), hash = \(bind: hash) WHERE id = 1").run()
    }

    /// A write transaction, its errors as ``TernError``.
    func write<T: Sendable>(_ body: @Sendable () async throws -> T) async throws(TernError) -> T {
        try await run { try await self.database.writeTransaction(body) }
    }

    /// A lost connection is opened again before the next operation; the operation that found it lost failed
    /// (503) and changed nothing, as its transaction never committed.
    private func reconnectIfNeeded() async throws(TernError) {
        guard database.isClosed(), !closed else { return }
        logger.warning("registry connection lost; reconnecting", metadata: ["database": "\(location)"])
        database = try await RegistryDatabase.open(location, logger: logger)
    }

    func run<T>(_ body: () async throws -> T) async throws(TernError) -> T {
        await connection.lock()
        defer { connection.unlock() }
        // A query on a closed PostgreSQL connection may never answer: a closed registry refuses at once.
        if closed { throw .unavailable("the registry \(location) is closed") }
        try await reconnectIfNeeded()
        do {
            return try await body()
        } catch let error as TernError {
            throw error
        } catch {
            let text = String(reflecting: error)
            // A unique key another writer took between our check and our insert.
            if text.contains("sqlState: 23505") || text.contains("UNIQUE constraint failed") {
                throw .conflict("the registry changed concurrently: \(Self.firstLine(text)); try again")
            }
            throw .unavailable("registry database error: \(text)")
        }
    }

    /// `text` as a JSON string literal, quoted and escaped (control characters included).
    static func jsonString(_ text: String) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: text, options: [.fragmentsAllowed, .withoutEscapingSlashes]) else {
            return "\"\""
        }
        return String(decoding: data, as: UTF8.self)
    }

    private static func firstLine(_ text: String) -> String {
        if let range = text.range(of: "message: ") {
            return String(text[range.upperBound...].prefix { $0 != "," })
        }
        return String(text.prefix(200))
    }

    private func run<T>(_ body: () throws -> T) throws(TernError) -> T {
        do {
            return try body()
        } catch let error as TernError {
            throw error
        } catch {
            throw .internalError("registry data error: \(error)")
        }
    }
}

extension Optional where Wrapped == [(String, Int)] {
    fileprivate var orEmpty: [(String, Int)] { self ?? [] }
}
