import Foundation
import Logging
import ServiceLifecycle
import TernBundle
import TernCore
import TernModelFiles
import TernONNX
import TernRegistry

/// Where a registry-backed server keeps its registry and its unpacked models.
public struct RegistryServing: Sendable {
    public var database: RegistryLocation
    public var artifacts: ArtifactLocation
    /// Unpacked models by SHA-256, local to this server.
    public var cacheFolder: String
    /// How often to look for changes made through other replicas.
    public var pollInterval: Duration = .seconds(1)
    /// Largest bundle a push may upload.
    public var maxBundleBytes: Int = 2 << 30
    /// With them, pushes and loads take only bundles one of them signed (`--trusted-keys`).
    public var trustedKeys: TrustedKeys?
    /// The folder a validation gate's `data` must be in (`--gate-root`); nil: gates score bundles' holdouts only.
    public var gateRoot: String?
    /// Where pushes are written while they arrive and are checked: beside the cache folder.
    public var uploadFolder: String {
        URL(fileURLWithPath: cacheFolder).deletingLastPathComponent().appendingPathComponent("uploads").path
    }

    public init(database: RegistryLocation, artifacts: ArtifactLocation, cacheFolder: String) {
        self.database = database
        self.artifacts = artifacts
        self.cacheFolder = cacheFolder
    }
}

/// One model version.
public struct VersionKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var model: String
    public var version: Int

    public init(_ model: String, _ version: Int) {
        self.model = model
        self.version = version
    }

    public static func < (a: Self, b: Self) -> Bool { (a.model, a.version) < (b.model, b.version) }
    public var description: String { "\(model) v\(version)" }
}

/// Keeps the served models in step with the registry: loads what aliases and defaults name, each model's
/// newest version, and what was explicitly loaded; swaps the catalog in one step once new versions are ready, and drops versions no
/// longer named. A dropped version finishes the requests already running on it before it is freed.
public actor RegistryModels: ModelRepositoryControl {
    public nonisolated let registry: Registry
    public nonisolated let service: InferenceService
    public nonisolated let runtime: ONNXRuntime
    public nonisolated let pool: RunnerPool
    public nonisolated let sessionOptions: SessionOptions
    public nonisolated let cacheFolder: String
    public nonisolated let logger: Logger
    public let validator: BundleValidator
    /// Where a validation gate's `data` may be read (`--gate-root`); nil: nowhere on this server.
    public nonisolated let gateRoot: String?

    private var seenSeq = -1
    private var snapshot = RegistrySnapshot(seq: 0, models: [])
    private var loaded: [VersionKey: ServedModel] = [:]
    /// Versions loaded through the API, kept whatever the aliases say.
    private var pinned: Set<VersionKey> = []
    /// Models unloaded through the API: nothing of them is served until loaded again.
    private var unloadedModels: Set<String> = []
    private var failures: [VersionKey: String] = [:]
    /// Held by each operation from its first await to its last: two syncs interleaving across their awaits
    /// could install one's aliases over the other's loaded versions.
    private let serial = AsyncLock()

    public init(
        registry: Registry, service: InferenceService, runtime: ONNXRuntime, pool: RunnerPool,
        sessionOptions: SessionOptions, cacheFolder: String, logger: Logger, trustedKeys: TrustedKeys? = nil, gateRoot: String? = nil
    ) {
        self.gateRoot = gateRoot
        self.registry = registry
        self.service = service
        self.runtime = runtime
        self.pool = pool
        self.sessionOptions = sessionOptions
        self.cacheFolder = cacheFolder
        self.logger = logger
        self.validator = BundleValidator(runtime: runtime, pool: pool, scratch: cacheFolder, trustedKeys: trustedKeys)
    }

    /// Reads the registry if it changed (or always, with `force`) and brings the served models in step.
    public func refresh(force: Bool = false) async throws(TernError) {
        await serial.lock()
        defer { serial.unlock() }
        try await refreshHoldingLock(force: force)
    }

    private func refreshHoldingLock(force: Bool = false) async throws(TernError) {
        let seq = try await registry.headSeq()
        guard force || seq != seenSeq else { return }
        snapshot = try await registry.snapshot()
        seenSeq = snapshot.seq
        await apply()
        pruneCache()
    }

    /// Removes unpacked models that no version in the registry refers to any more (deleted versions).
    private func pruneCache() {
        let referenced = Set(snapshot.models.flatMap { $0.versions.map(\.sha256) })
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: cacheFolder)) ?? []
        for entry in entries where entry.count == 64 && !referenced.contains(entry) {
            try? FileManager.default.removeItem(atPath: cacheFolder + "/" + entry)
        }
    }

    /// The versions that should be loaded now.
    private func desired() -> Set<VersionKey> {
        var wanted: Set<VersionKey> = []
        for model in snapshot.models {
            let active = Set(model.versions.filter { $0.state == "active" }.map(\.version))
            var versions = pinned.filter { $0.model == model.name }.map(\.version)
            if !unloadedModels.contains(model.name) {
                versions += Array(model.aliases.values)
                if let preferred = model.defaultVersion { versions.append(preferred) }
                // What the traffic policy weights or shadows.
                if let traffic = model.traffic {
                    versions += traffic.weights.filter { $0.value > 0 }.map(\.key) + traffic.shadows
                    if let fallback = traffic.fallback?.version { versions.append(fallback) }
                }
                // The newest version too, so that it can be tried as model@N before an alias points at it.
                if let newest = active.max() { versions.append(newest) }
            }
            for version in versions where active.contains(version) { wanted.insert(VersionKey(model.name, version)) }
        }
        return wanted
    }

    private func apply() async {
        let wanted = desired()
        let loads = LoadMetrics(factory: service.catalog.metricsFactory)
        for key in wanted.subtracting(loaded.keys).sorted() {
            let started = ContinuousClock.now
            do {
                loaded[key] = try await load(key)
                failures[key] = nil
                loads.loaded(key.model, key.version, seconds: LoadMetrics.seconds(since: started))
                logger.info("model loaded", metadata: ["model": "\(key.model)", "version": "\(key.version)"])
            } catch {
                loads.failed(key.model, key.version)
                failures[key] = error.message
                logger.error("model failed to load", metadata: ["model": "\(key.model)", "version": "\(key.version)", "error": "\(error.message)"])
            }
        }
        let dropped = Set(loaded.keys).subtracting(wanted)
        for key in dropped { loaded[key] = nil }
        var state = ModelCatalog.State()
        for (key, served) in loaded { state.models[key.model, default: [:]][key.version] = served }
        for model in snapshot.models where state.models[model.name] != nil {
            state.aliases[model.name] = model.aliases
            if !unloadedModels.contains(model.name), let preferred = model.defaultVersion { state.defaults[model.name] = preferred }
            if !unloadedModels.contains(model.name), let traffic = model.traffic { state.traffic[model.name] = traffic }
        }
        // One step: requests see either the old versions and aliases or the new ones, never a mix.
        service.catalog.update { $0 = state }
        for key in dropped.sorted() {
            loads.unloaded(key.model, key.version)
            logger.info("model unloaded", metadata: ["model": "\(key.model)", "version": "\(key.version)"])
        }
    }

    /// Unpacks (once per SHA-256) and loads a version.
    private func load(_ key: VersionKey) async throws(TernError) -> ServedModel {
        guard let record = snapshot.models.first(where: { $0.name == key.model })?.versions.first(where: { $0.version == key.version }) else {
            throw .notFound("\(key) is not in the registry")
        }
        let folder = "\(cacheFolder)/\(record.sha256)"
        let modelPath = folder + "/" + BundleFile.model
        let configPath = folder + "/" + BundleFile.config
        let unpacked = FileManager.default.fileExists(atPath: modelPath)
        if !unpacked || validator.trustedKeys != nil {
            let bundle = try ModelBundle(archive: try await registry.archive(key.model, key.version))
            // Checked at every load, not only at push: keys may be trusted (or no longer) since, and the
            // registry's database or artifact folder may have been written by something other than Tern.
            _ = try validator.signer(of: bundle)
        }
        if !unpacked {
            let bundle = try ModelBundle(archive: try await registry.archive(key.model, key.version))
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                if let config = bundle.files[BundleFile.config] { try config.write(to: URL(fileURLWithPath: configPath), options: .atomic) }
                try bundle.model.write(to: URL(fileURLWithPath: modelPath), options: .atomic)
            } catch {
                throw .internalError("cannot unpack \(key) into \(folder): \(error.localizedDescription)")
            }
        }
        var parsed = FileManager.default.fileExists(atPath: configPath) ? try ModelRepository.parseConfig(path: configPath) : ModelConfig()
        if parsed.featureNames == nil { parsed.featureNames = record.manifest.featureNames }
        let (runtime, pool, sessionOptions, config) = (self.runtime, self.pool, self.sessionOptions, parsed)
        // Creating a session reads and optimises the whole model: seconds for a large one. It runs on a
        // thread of its own, never on Swift's cooperative pool that the front-ends share.
        return try await onOwnThread { () throws(TernError) in
            try ServedModel.loadONNX(
                name: key.model, version: key.version, path: modelPath, config: config, runtime: runtime, pool: pool,
                sessionOptions: sessionOptions)
        }
    }

    // MARK: Changes through the API

    public func setTraffic(model: String, policy: TrafficPolicy?, actor: String) async throws(TernError) {
        try await registry.setTraffic(model: model, policy: policy, actor: actor)
        try await refresh(force: true)
    }

    public func removeAlias(model: String, alias: String, actor: String) async throws(TernError) {
        try await registry.removeAlias(model: model, alias: alias, actor: actor)
        try await refresh(force: true)
    }

    /// Archives a version; it is no longer served.
    public func archiveVersion(model: String, version: Int, actor: String) async throws(TernError) {
        try await registry.archiveVersion(model: model, version: version, actor: actor)
        try await refresh(force: true)
    }

    /// Deletes a version; it is no longer served and its unpacked files go.
    public func deleteVersion(model: String, version: Int, actor: String) async throws(TernError) {
        try await registry.deleteVersion(model: model, version: version, actor: actor)
        try await refresh(force: true)
    }

    /// Validates an uploaded archive file on a thread of its own (unpacking and loading a large model takes
    /// seconds: neither this actor, nor loads, nor inference wait for it), registers it (idempotent: see
    /// ``Registry/register(archive:bundle:version:actor:)``) and serves it if an alias or the default names it.
    public nonisolated func push(archiveFile path: String, version: Int?, actor: String) async throws(TernError)
        -> (record: VersionRecord, created: Bool)
    {
        let validator = self.validator
        let (bundle, archive) = try await onOwnThread { () throws(TernError) in
            let bundle = try validator.validate(archiveFile: path)
            do {
                return (bundle, try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped))
            } catch {
                throw .internalError("cannot read the uploaded bundle back: \(error.localizedDescription)")
            }
        }
        if Task.isCancelled { throw .unavailable("the push was cancelled before it was registered") }
        let result = try await registry.register(
            archive: archive, bundle: bundle, version: version, actor: actor, signer: try validator.signer(of: bundle))
        if result.created { try await refresh(force: true) }
        return result
    }

    /// Loads a model (its default version, or `version`) and keeps it loaded; audited.
    public func load(model: String, version: Int?, actor: String) async throws(TernError) {
        await serial.lock()
        defer { serial.unlock() }
        try await refreshHoldingLock()
        guard let record = snapshot.models.first(where: { $0.name == model }) else {
            throw .notFound("unknown model '\(model)' in the registry")
        }
        guard let number = version ?? record.defaultVersion else {
            throw .notFound("model '\(model)' has no active version to load")
        }
        guard let entry = record.versions.first(where: { $0.version == number }) else {
            throw .notFound("model '\(model)' has no version \(number)")
        }
        guard entry.state == "active" else { throw .conflict("\(model) v\(number) is archived and cannot be loaded") }
        let key = VersionKey(model, number)
        unloadedModels.remove(model)
        pinned.insert(key)
        await apply()
        if let reason = failures[key] {
            pinned.remove(key)
            throw .invalidArgument("\(key) failed to load: \(reason)")
        }
        try await registry.record(action: "load", model: model, version: number, actor: actor)
        seenSeq = try await registry.headSeq()
    }

    /// Unloads one version, or (without `version`) the whole model; running requests finish first.
    public func unload(model: String, version: Int?, actor: String) async throws(TernError) {
        await serial.lock()
        defer { serial.unlock() }
        try await refreshHoldingLock()
        let versions = loaded.keys.filter { $0.model == model && (version == nil || $0.version == version) }
        guard !versions.isEmpty else {
            throw .notFound(version.map { "\(model) v\($0) is not loaded" } ?? "model '\(model)' is not loaded")
        }
        if let version {
            pinned.remove(VersionKey(model, version))
            if desired().contains(VersionKey(model, version)) {
                throw .conflict("\(model) v\(version) is named by an alias or is the default; move the alias, or unload the model")
            }
        } else {
            pinned = pinned.filter { $0.model != model }
            unloadedModels.insert(model)
        }
        await apply()
        try await registry.record(action: "unload", model: model, version: version, actor: actor)
        seenSeq = try await registry.headSeq()
    }

    /// Every version in the registry with its serving state, as the v2 repository index lists them.
    public func index(readyOnly: Bool) async throws -> [RepositoryEntry] {
        await serial.lock()
        defer { serial.unlock() }
        try await refreshHoldingLock()
        return snapshot.models.flatMap { model in
            model.versions.map { record in
                let key = VersionKey(model.name, record.version)
                let reason = loaded[key] != nil ? "" : failures[key] ?? (record.state == "archived" ? "archived" : "unloaded")
                return RepositoryEntry(
                    name: model.name, version: String(record.version),
                    state: reason.isEmpty ? "READY" : "UNAVAILABLE", reason: reason)
            }
        }.filter { !readyOnly || $0.state == "READY" }
    }

    public func unloadAll() {
        loaded.removeAll()
        service.catalog.update { $0 = ModelCatalog.State() }
    }
}

/// Runs blocking work on a new thread and waits for it without holding a cooperative thread.
package func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () throws(TernError) -> T) async throws(TernError) -> T {
    let result: Result<T, TernError> = await withCheckedContinuation { continuation in
        let thread = Thread {
            do throws(TernError) {
                continuation.resume(returning: .success(try work()))
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
        thread.name = "tern.load"
        thread.start()
    }
    return try result.get()
}

/// Loads the registry's models at start, marks the server ready, then follows the registry (changes made
/// through other replicas show up within a poll interval). On shutdown, once the front-ends have drained,
/// it stops the runner threads (the server closes the registry once every service has stopped: the keyring
/// and the drift monitor read it too).
package struct RegistrySyncService: Service {
    package let models: RegistryModels
    package let service: InferenceService
    package let pool: RunnerPool
    package let pollInterval: Duration
    package let logger: Logger
    /// Ready is said only once the front-ends listen.
    package var listening: ListenerGate? = nil

    package init(
        models: RegistryModels, service: InferenceService, pool: RunnerPool, pollInterval: Duration, logger: Logger, listening: ListenerGate? = nil
    ) {
        self.models = models
        self.service = service
        self.pool = pool
        self.pollInterval = pollInterval
        self.logger = logger
        self.listening = listening
    }

    package func run() async throws {
        try await models.refresh(force: true)
        await listening?.wait()
        guard !Task.isCancelled else { return }  // a front-end failed to start: never ready
        service.isReady = true
        logger.info(
            "ready",
            metadata: [
                "models": "\(service.catalog.modelNames.joined(separator: ","))",
                "registry": "\(models.registry.location)",
            ])
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: pollInterval)
                do {
                    try await models.refresh()
                    LoadMetrics(factory: service.catalog.metricsFactory).synced(succeeded: true)
                } catch {
                    // A poll cut short by the stop is not a failure: a clean stop logs no warning.
                    if Task.isCancelled { break }
                    LoadMetrics(factory: service.catalog.metricsFactory).synced(succeeded: false)
                    logger.warning("registry poll failed", metadata: ["error": "\(error)"])
                }
            }
        }
        service.isReady = false
        await models.unloadAll()
        pool.shutdown()
    }
}
