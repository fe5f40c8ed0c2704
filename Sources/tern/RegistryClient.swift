import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL
import TernBundle
import TernCore
import TernModelFiles
import TernModels
import TernONNX
import TernRegistry
import TernRollouts
import TernServer

/// What the registry commands do, whether on a local data folder / database or through a server's API.
protocol RegistryClient: Sendable {
    func models() async throws -> [ModelRecord]
    func model(_ name: String) async throws -> ModelRecord
    func push(archive: Data, version: Int?) async throws -> VersionRecord
    /// Moves an alias once the model's validation gate lets it (with `force`, anyway: audited as forced).
    func setAlias(model: String, alias: String, version: Int, force: Bool) async throws
    func gate(model: String) async throws -> GatePolicy?
    /// Sets (nil: removes) a model's validation gate.
    func setGate(model: String, policy: GatePolicy?) async throws
    /// Runs the gate for a version as an alias, records the verdict.
    func checkGate(model: String, version: Int, alias: String) async throws -> GateResult
    /// The model's rollout, with its current step's numbers when a server answers.
    func rollout(model: String) async throws -> (Rollout, RolloutStepNumbers?)
    func startRollout(model: String, _ start: RolloutStart) async throws -> Rollout
    /// pause, resume, abort, promote (through the gate unless `force`).
    func updateRollout(model: String, action: String, force: Bool) async throws -> Rollout
    func removeAlias(model: String, alias: String) async throws
    func archiveVersion(model: String, version: Int) async throws
    /// Sets (nil: removes) a model's traffic policy.
    func setTraffic(model: String, policy: TrafficPolicy?) async throws
    /// A version's bundle archive, as pushed.
    func bundle(model: String, version: Int) async throws -> Data
    func deleteVersion(model: String, version: Int) async throws
    func auditLog(model: String?) async throws -> [AuditEntry]
    func verifyAudit() async throws -> AuditVerification
    func createKey(name: String, scopes: Set<Scope>, models: [String]?, expires: String?) async throws -> (record: APIKeyRecord, key: String)
    func keys() async throws -> [APIKeyRecord]
    func revokeKey(name: String, force: Bool) async throws -> APIKeyRecord
    func close() async
}

extension RegistryClient {
    /// The bundle `reference` names: `name` (its production alias, else its newest version), `name@alias`
    /// or `name@version`; with the version it resolved to.
    func bundle(named reference: String) async throws -> (archive: Data, version: Int) {
        let parts = reference.split(separator: "@", maxSplits: 1).map(String.init)
        let record = try await model(parts[0])
        let version: Int
        if parts.count == 1 {
            guard let chosen = record.defaultVersion else { throw TernError.notFound("model '\(parts[0])' has no active version") }
            version = chosen
        } else if let number = Int(parts[1]) {
            version = number
        } else {
            guard let aliased = record.aliases[parts[1]] else {
                throw TernError.notFound(
                    "model '\(parts[0])' has no alias '\(parts[1])'; aliases: "
                        + record.aliases.keys.sorted().joined(separator: ", "))
            }
            version = aliased
        }
        return (try await bundle(model: parts[0], version: version), version)
    }
}

/// Where the registry commands act: `--server URL`, or a registry opened in-process (`--data`, `--database`).
struct RegistryOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Data folder: registry.sqlite, artifacts/, cache/ (default: $TERN_DATA, else .tern/data).", valueName: "dir"))
    var data: String?

    @Option(help: ArgumentHelp("Registry database: a postgres:// URL, or an SQLite file (default: DATA/registry.sqlite).", valueName: "url"))
    var database: String?

    @Option(help: ArgumentHelp("Act through a running server's API instead (http://host:8000).", valueName: "url"))
    var server: String?

    /// `--api-key` and `--ca-cert`, as every command that addresses a server takes them.
    @OptionGroup var access: ServerAccess
    var apiKey: String? { access.apiKey }
    var caCert: String? { access.caCert }

    /// The HTTP client of the commands that call a server: its TLS trusts `--ca-cert` / `$TERN_CA_CERT` when given.
    static func httpClient(caCert: String?, connectTimeout: TimeAmount = .seconds(5), readTimeout: TimeAmount? = nil) throws -> HTTPClient {
        var configuration = HTTPClient.Configuration(timeout: .init(connect: connectTimeout, read: readTimeout))
        if let path = caCert ?? ProcessInfo.processInfo.environment["TERN_CA_CERT"].flatMap({ $0.isEmpty ? nil : $0 }) {
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw TernError.invalidArgument("cannot read the CA bundle \(path) (--ca-cert or TERN_CA_CERT)")
            }
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(path)
            configuration.tlsConfiguration = tls
        }
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// The key a command sends to a server: `--api-key`, else `$TERN_API_KEY`.
    static func apiKey(_ given: String?) -> String? {
        given ?? ProcessInfo.processInfo.environment["TERN_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
    }

    var dataFolder: String { Self.dataFolder(data) }

    /// `--data`, else `$TERN_DATA`, else `.tern/data`: the one default of every command, `serve` included.
    static func dataFolder(_ data: String?) -> String {
        data ?? ProcessInfo.processInfo.environment["TERN_DATA"] ?? FileManager.default.currentDirectoryPath + "/.tern/data"
    }

    /// The serving settings of this registry.
    func serving(artifactsInDatabase: Bool = false) throws -> RegistryServing {
        let location = try RegistryLocation(database ?? dataFolder + "/registry.sqlite")
        return RegistryServing(
            database: location, artifacts: artifactsInDatabase ? .database : .folder(dataFolder + "/artifacts"),
            cacheFolder: dataFolder + "/cache")
    }

    func client(
        artifactsInDatabase: Bool, actor: String, trustedKeys: TrustedKeys? = nil, runtime: @escaping @Sendable () -> ONNXRuntime
    ) async throws
        -> any RegistryClient
    {
        if let server {
            guard let url = URL(string: server), url.scheme == "http" || url.scheme == "https" else {
                throw ValidationError("--server must be an http:// or https:// URL")
            }
            return RemoteRegistry(
                base: server.hasSuffix("/") ? String(server.dropLast()) : server, actor: actor, apiKey: Self.apiKey(apiKey),
                caCert: caCert)
        }
        let serving = try serving(artifactsInDatabase: artifactsInDatabase)
        let registry = try await Registry.open(database: serving.database, artifacts: serving.artifacts)
        let pool = RunnerPool(threads: 1, name: "tern.validate")
        let scratch = serving.cacheFolder
        return LocalRegistry(
            registry: registry, validator: { BundleValidator(runtime: runtime(), pool: pool, scratch: scratch, trustedKeys: trustedKeys) },
            gate: { ValidationGate(registry: registry, runtime: runtime, pool: pool, sessionOptions: .init(), scratch: scratch) },
            pool: pool, actor: actor)
    }
}

/// The options of the commands that change the registry: who is changing it, and where new archives go.
struct ChangeOptions: ParsableArguments {
    @Flag(help: "Keep bundle archives in the database rather than in DATA/artifacts (a database-only deployment).")
    var artifactsInDatabase = false

    @Option(help: "Who is making the change, for the audit trail (default: the user name).")
    var actor: String?

    var actorName: String { actor ?? Self.defaultActor }

    static var defaultActor: String { ProcessInfo.processInfo.environment["USER"] ?? NSUserName() }
}

/// Which signed bundles a push takes (`tern push`; the server's pushes follow `tern serve --trusted-keys`).
struct TrustOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Take only bundles signed by one of these public keys (a PEM file or a folder of *.pub; default: $TERN_TRUSTED_KEYS).",
            valueName: "path"))
    var trustedKeys: String?

    /// The keys `--trusted-keys` or `$TERN_TRUSTED_KEYS` names, read.
    func trusted() throws -> TrustedKeys? {
        try (trustedKeys ?? ProcessInfo.processInfo.environment["TERN_TRUSTED_KEYS"].flatMap { $0.isEmpty ? nil : $0 })
            .map { path throws(TernError) in try TrustedKeys(path: path) }
    }
}

struct LocalRegistry: RegistryClient {
    let registry: Registry
    /// Made on first push: only pushing needs ONNX Runtime.
    let validator: @Sendable () -> BundleValidator
    /// Made when an alias moves: only a gate with bounds needs ONNX Runtime.
    let gate: @Sendable () -> ValidationGate
    let pool: RunnerPool
    let actor: String

    func models() async throws -> [ModelRecord] { try await registry.models() }
    func model(_ name: String) async throws -> ModelRecord { try await registry.model(name) }
    func bundle(model: String, version: Int) async throws -> Data { try await registry.archive(model, version) }
    func setTraffic(model: String, policy: TrafficPolicy?) async throws {
        try await registry.setTraffic(model: model, policy: policy, actor: actor)
    }
    func push(archive: Data, version: Int?) async throws -> VersionRecord {
        let validator = validator()
        let bundle = try validator.validate(archive)
        return try await registry.push(archive: archive, bundle: bundle, version: version, actor: actor, signer: try validator.signer(of: bundle))
    }
    func setAlias(model: String, alias: String, version: Int, force: Bool) async throws {
        try await gate().moveAlias(model: model, alias: alias, version: version, force: force, actor: actor)
    }
    func gate(model: String) async throws -> GatePolicy? { try await registry.gate(model: model) }
    func setGate(model: String, policy: GatePolicy?) async throws { try await registry.setGate(model: model, policy: policy, actor: actor) }
    func checkGate(model: String, version: Int, alias: String) async throws -> GateResult {
        try await gate().check(model: model, candidate: version, alias: alias, actor: actor)
    }
    func rollout(model: String) async throws -> (Rollout, RolloutStepNumbers?) {
        guard let rollout = try await registry.rollout(model: model) else { throw TernError.notFound("model '\(model)' has never had a rollout") }
        return (rollout, nil)
    }
    func startRollout(model: String, _ start: RolloutStart) async throws -> Rollout {
        try await gate().startRollout(try start.rollout(model: model), actor: actor, skipGate: start.skipGate ?? false)
    }
    func updateRollout(model: String, action: String, force: Bool) async throws -> Rollout {
        try await gate().updateRollout(model: model, try RolloutAction(name: action), actor: actor, force: force)
    }
    func removeAlias(model: String, alias: String) async throws {
        try await registry.removeAlias(model: model, alias: alias, actor: actor)
    }
    func archiveVersion(model: String, version: Int) async throws {
        try await registry.archiveVersion(model: model, version: version, actor: actor)
    }
    func deleteVersion(model: String, version: Int) async throws {
        try await registry.deleteVersion(model: model, version: version, actor: actor)
    }
    func auditLog(model: String?) async throws -> [AuditEntry] { try await registry.auditLog(model: model) }
    func verifyAudit() async throws -> AuditVerification { try await registry.verifyAudit() }
    func createKey(name: String, scopes: Set<Scope>, models: [String]?, expires: String?) async throws -> (record: APIKeyRecord, key: String) {
        try await registry.createKey(
            name: name, scopes: scopes, models: models, expiresAt: try expires.map { text throws(TernError) in try APIKeySecret.expiry(text) },
            actor: actor)
    }
    func keys() async throws -> [APIKeyRecord] { try await registry.keys() }
    func revokeKey(name: String, force: Bool) async throws -> APIKeyRecord {
        try await registry.revokeKey(name: name, actor: actor, force: force)
    }
    func close() async {
        pool.shutdown()
        await registry.close()
    }
}

/// The registry commands over a server's management API.
struct RemoteRegistry: RegistryClient {
    let base: String
    let actor: String
    let apiKey: String?
    let caCert: String?

    func models() async throws -> [ModelRecord] { try await call("GET", "/api/v1/models") }
    func model(_ name: String) async throws -> ModelRecord { try await call("GET", "/api/v1/models/\(escape(name))") }
    func bundle(model: String, version: Int) async throws -> Data {
        try await send("GET", "/api/v1/models/\(escape(model))/versions/\(version)/bundle", body: nil).1
    }
    func setTraffic(model: String, policy: TrafficPolicy?) async throws {
        if let policy {
            _ = try await send("PUT", "/api/v1/models/\(escape(model))/traffic", body: try JSONEncoder().encode(policy))
        } else {
            _ = try await send("DELETE", "/api/v1/models/\(escape(model))/traffic", body: nil)
        }
    }
    /// A push whose connection breaks may still have been registered: the registry is asked, and the user
    /// told which. Pushing the same archive again is always safe (the server registers an archive once).
    func push(archive: Data, version: Int?) async throws -> VersionRecord {
        do {
            return try await call("POST", "/api/v1/bundles" + (version.map { "?version=\($0)" } ?? ""), body: archive)
        } catch let error as TernError where error.code == .unavailable {
            let sha = Digest.sha256(archive)
            guard let registered = try? await models() else {
                throw TernError.unavailable(
                    "\(error.message)\nwhether the bundle was registered is unknown (the server "
                        + "does not answer); once it does, push again: an archive already registered is not registered twice")
            }
            if let record = registered.flatMap(\.versions).first(where: { $0.sha256 == sha }) {
                FileHandle.standardError.write(
                    Data("the connection broke, but the registry holds this bundle as \(record.model) v\(record.version)\n".utf8))
                return record
            }
            throw TernError.unavailable(
                "\(error.message)\nthe registry holds no version with this bundle (sha256 \(sha)): "
                    + "nothing was registered; pushing again is safe")
        }
    }
    func setAlias(model: String, alias: String, version: Int, force: Bool) async throws {
        let _: ModelRecord = try await call(
            "PUT", "/api/v1/models/\(escape(model))/aliases/\(escape(alias))" + (force ? "?force=true" : ""),
            body: Data(#"{"version":\#(version)}"#.utf8))
    }
    func gate(model: String) async throws -> GatePolicy? {
        let (status, data) = try await send("GET", "/api/v1/models/\(escape(model))/gate", body: nil, accept: [200, 404])
        return status == 404 ? nil : try JSONDecoder().decode(GatePolicy.self, from: data)
    }
    func setGate(model: String, policy: GatePolicy?) async throws {
        if let policy {
            _ = try await send("PUT", "/api/v1/models/\(escape(model))/gate", body: try JSONEncoder().encode(policy))
        } else {
            _ = try await send("DELETE", "/api/v1/models/\(escape(model))/gate", body: nil)
        }
    }
    func checkGate(model: String, version: Int, alias: String) async throws -> GateResult {
        try await call(
            "POST", "/api/v1/models/\(escape(model))/gate/check",
            body: try JSONSerialization.data(withJSONObject: ["version": version, "alias": alias]))
    }
    func rollout(model: String) async throws -> (Rollout, RolloutStepNumbers?) {
        struct View: Decodable { var current_step: RolloutStepNumbers? }
        let (_, data) = try await send("GET", "/api/v1/models/\(escape(model))/rollout", body: nil)
        return (try JSONDecoder().decode(Rollout.self, from: data), try JSONDecoder().decode(View.self, from: data).current_step)
    }
    func startRollout(model: String, _ start: RolloutStart) async throws -> Rollout {
        try await call("POST", "/api/v1/models/\(escape(model))/rollout", body: try JSONEncoder().encode(start))
    }
    func updateRollout(model: String, action: String, force: Bool) async throws -> Rollout {
        _ = try RolloutAction(name: action)
        return try await call("POST", "/api/v1/models/\(escape(model))/rollout/\(action)" + (force ? "?force=true" : ""))
    }
    func removeAlias(model: String, alias: String) async throws {
        let _: ModelRecord = try await call("DELETE", "/api/v1/models/\(escape(model))/aliases/\(escape(alias))")
    }
    func archiveVersion(model: String, version: Int) async throws {
        let _: VersionRecord = try await call("POST", "/api/v1/models/\(escape(model))/versions/\(version)/archive")
    }
    func deleteVersion(model: String, version: Int) async throws {
        _ = try await send("DELETE", "/api/v1/models/\(escape(model))/versions/\(version)", body: nil)
    }
    func auditLog(model: String?) async throws -> [AuditEntry] {
        try await call("GET", "/api/v1/audit" + (model.map { "?model=\(escape($0))" } ?? ""))
    }
    func verifyAudit() async throws -> AuditVerification {
        let (status, body) = try await send("GET", "/api/v1/audit/verify", body: nil, accept: [200, 409])
        _ = status
        return try JSONDecoder().decode(AuditVerification.self, from: body)
    }
    func createKey(name: String, scopes: Set<Scope>, models: [String]?, expires: String?) async throws -> (record: APIKeyRecord, key: String) {
        var object: [String: Any] = ["name": name, "scopes": scopes.sorted().map(\.rawValue)]
        if let models { object["models"] = models }
        if let expires { object["expires"] = expires }
        struct Created: Decodable {
            var key: String
            var record: APIKeyRecord
        }
        let created: Created = try await call("POST", "/api/v1/keys", body: try JSONSerialization.data(withJSONObject: object))
        return (created.record, created.key)
    }
    func keys() async throws -> [APIKeyRecord] { try await call("GET", "/api/v1/keys") }
    func revokeKey(name: String, force: Bool) async throws -> APIKeyRecord {
        try await call("DELETE", "/api/v1/keys/\(escape(name))" + (force ? "?force=true" : ""))
    }
    func close() async {}

    private func escape(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(.init(charactersIn: "/"))) ?? segment
    }

    private func call<T: Decodable>(_ method: String, _ path: String, body: Data? = nil) async throws -> T {
        let (_, data) = try await send(method, path, body: body)
        return try JSONDecoder().decode(T.self, from: data)
    }

    /// Sends a request; a status outside `accept` becomes the server's error message.
    private func send(_ method: String, _ path: String, body: Data?, accept: Set<Int> = [200, 201, 204]) async throws -> (Int, Data) {
        var request = HTTPClientRequest(url: base + path)
        request.method = .init(rawValue: method)
        request.headers.add(name: "Tern-Actor", value: actor)
        if let apiKey { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        if let body {
            request.body = .bytes(ByteBuffer(bytes: body))
            request.headers.add(name: "Content-Type", value: "application/octet-stream")
        }
        let response: HTTPClientResponse
        // A refused connection is retried until the connect timeout: keep it short for a CLI.
        let client = try RegistryOptions.httpClient(caCert: caCert, readTimeout: .seconds(600))
        defer { _ = client.shutdown() }
        do {
            response = try await client.execute(request, timeout: .seconds(600))
        } catch {
            throw ServerErrors.unreachable(base, error)
        }
        let buffer = try await response.body.collect(upTo: 1 << 30)
        let data = Data(buffer: buffer)
        let status = Int(response.status.code)
        guard accept.contains(status) else {
            let message =
                (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["error"] as? String
                ?? String(decoding: data, as: UTF8.self)
            if status == 404, message.hasPrefix("no route") {
                throw TernError.invalidArgument(
                    "\(base) serves no registry (it was started with --models; "
                        + "a registry needs tern serve --data or --database)")
            }
            throw ServerErrors.answered(base, status: status, message: message)
        }
        return (status, data)
    }
}
