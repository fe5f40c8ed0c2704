import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TernBundle
import TernCore
import TernModels
import TernRegistry
import TernRollouts

/// The registry's REST API.
///
/// ```
/// GET    /api/v1/models                                   models, versions, aliases
/// GET    /api/v1/models/{model}                           one model
/// GET    /api/v1/models/{model}/versions/{version}        one version (manifest, metrics)
/// GET    /api/v1/models/{model}/versions/{version}/bundle the bundle as pushed
/// POST   /api/v1/bundles[?version=N]                      push a bundle (body: the .tern archive)
/// PUT    /api/v1/models/{model}/aliases/{alias}           {"version": N}: set or move an alias
/// DELETE /api/v1/models/{model}/aliases/{alias}
/// POST   /api/v1/models/{model}/versions/{version}/archive
/// DELETE /api/v1/models/{model}/versions/{version}
/// POST   /api/v1/models/{model}/versions/{version}/load | unload
/// GET    /api/v1/audit[?model=NAME]                       the audit trail
/// GET    /api/v1/audit/verify                             checks the hash chain
/// ```
///
/// The protocol's repository extension (`/v2/repository/...`) is served by ``V2Routes`` through
/// ``ModelRepositoryControl``.
///
/// Changes are attributed to the `Tern-Actor` header (until authentication names the caller).
struct ManagementRoutes: Sendable {
    let models: RegistryModels
    let shadows: ShadowTraffic?
    let maxBundleBytes: Int
    /// Where uploads are written while they arrive and are checked.
    let uploadFolder: String
    /// Called after a key is created or revoked: this server's keyring reads the keys again at once.
    var keysChanged: @Sendable () async -> Void = {}

    func register(on router: ScopedRouter) {
        let api = router.group("/api/v1")
        api.get("/models", .read) { _, _ in try encode(try await registry.models()) }
        api.get("/models/{model}", .read) { _, context in try encode(try await registry.model(context.parameters.require("model"))) }
        api.get("/models/{model}/versions/{version}", .read) { _, context in
            try encode(try await registry.version(context.parameters.require("model"), try version(context)))
        }
        api.get("/models/{model}/versions/{version}/bundle", .read) { _, context in
            let data = try await registry.archive(context.parameters.require("model"), try version(context))
            return Response(status: .ok, headers: [.contentType: "application/zip"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        api.get("/models/{model}/traffic", .read) { _, context in
            let record = try await registry.model(context.parameters.require("model"))
            guard let traffic = record.traffic else { throw TernError.notFound("model '\(record.name)' has no traffic policy") }
            // The policy, with how each shadow version compares with the answering versions so far.
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            var object = try JSONSerialization.jsonObject(with: try encoder.encode(traffic)) as? [String: Any] ?? [:]
            object["shadow_comparison"] = shadows?.comparison(model: record.name) ?? [:]
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(
                    byteBuffer: ByteBuffer(
                        bytes: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))))
        }
        api.put("/models/{model}/traffic", .admin) { request, context in
            let body = try await request.body.collect(upTo: 1 << 16)
            let policy = try StrictJSON.decode(
                TrafficPolicy.self, from: Data(buffer: body),
                shape:
                    #"{"weights": {"1": 90, "2": 10}, "sticky_header": "x-customer-id", "shadows": [3], "fallback": {"version": 1, "timeout_ms": 250}}"#,
                known: TrafficPolicy.fieldNames, nested: ["fallback": FallbackPolicy.fieldNames])
            let model = try context.parameters.require("model")
            try await models.setTraffic(model: model, policy: policy, actor: request.ternActor)
            return try encode(try await registry.model(model))
        }
        api.delete("/models/{model}/traffic", .admin) { request, context in
            let model = try context.parameters.require("model")
            try await models.setTraffic(model: model, policy: nil, actor: request.ternActor)
            return try encode(try await registry.model(model))
        }
        api.post("/bundles", .admin) { request, context in
            var requested: Int?
            if let text = request.uri.queryParameters.get("version") {
                requested = try ModelVersionNumber.parse(text)
            }
            let upload = try await receive(request)
            defer { try? FileManager.default.removeItem(atPath: upload) }
            let (record, created) = try await models.push(archiveFile: upload, version: requested, actor: request.ternActor)
            // 200: this archive was already that version (a repeated push changes nothing).
            return try encode(record, status: created ? .created : .ok)
        }
        api.put("/models/{model}/aliases/{alias}", .admin) { request, context in
            let body = try await body(request)
            guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any],
                object.keys.allSatisfy({ $0 == "version" }),
                let number = (object["version"] as? Int) ?? (object["version"] as? String).flatMap({ Int($0) })
            else {
                throw TernError.invalidArgument("the body must be {\"version\": N}")
            }
            let model = try context.parameters.require("model")
            let force = try StrictJSON.flag(request.uri.queryParameters.get("force").map { String($0) }, name: "force")
            try await models.setAlias(
                model: model, alias: try context.parameters.require("alias"), version: number, actor: request.ternActor,
                force: force)
            return try encode(try await registry.model(model))
        }
        api.delete("/models/{model}/aliases/{alias}", .admin) { request, context in
            let model = try context.parameters.require("model")
            try await models.removeAlias(model: model, alias: try context.parameters.require("alias"), actor: request.ternActor)
            return try encode(try await registry.model(model))
        }
        api.post("/models/{model}/versions/{version}/archive", .admin) { request, context in
            let model = try context.parameters.require("model")
            let number = try version(context)
            try await models.archiveVersion(model: model, version: number, actor: request.ternActor)
            return try encode(try await registry.version(model, number))
        }
        api.delete("/models/{model}/versions/{version}", .admin) { request, context in
            try await models.deleteVersion(model: try context.parameters.require("model"), version: try version(context), actor: request.ternActor)
            return Response(status: .noContent)
        }
        api.post("/models/{model}/versions/{version}/load", .admin) { request, context in
            try await models.load(model: try context.parameters.require("model"), version: try version(context), actor: request.ternActor)
            return json("{}")
        }
        api.post("/models/{model}/versions/{version}/unload", .admin) { request, context in
            try await models.unload(model: try context.parameters.require("model"), version: try version(context), actor: request.ternActor)
            return json("{}")
        }
        api.get("/audit", .read) { request, _ in
            try encode(try await registry.auditLog(model: request.uri.queryParameters.get("model")))
        }
        api.get("/audit/verify", .read) { _, _ in
            let result = try await registry.verifyAudit()
            return try encode(result, status: result.ok ? .ok : .conflict)
        }
        api.get("/keys", .admin) { _, _ in try encode(try await registry.keys()) }
        api.post("/keys", .admin) { request, _ in
            // On a server that checks no credential, anyone who reaches it could make themselves its first admin.
            guard CurrentCaller.value != nil else {
                throw TernError(
                    .permissionDenied,
                    "the first API key is created on the server's machine, not over the API: "
                        + "tern keys create NAME --scopes admin --data DIR (or tern serve --bootstrap-key-file FILE)")
            }
            let created = try await createKey(request)
            await keysChanged()
            return try encode(created, status: .created)
        }
        api.delete("/keys/{name}", .admin) { request, context in
            let force = try StrictJSON.flag(request.uri.queryParameters.get("force").map { String($0) }, name: "force")
            let revoked = try await registry.revokeKey(name: try context.parameters.require("name"), actor: request.ternActor, force: force)
            await keysChanged()
            return try encode(revoked)
        }
    }

    private var registry: Registry { models.registry }

    /// `POST /api/v1/keys` with `{"name": "ci", "scopes": ["infer"], "models": ["credit-risk"], "expires": "90d"}`.
    private func createKey(_ request: Request) async throws -> CreatedKey {
        let body = try await HTTPFrontEndConfiguration.collectBody(request, upTo: 64 << 10, flag: "(a key request is small)")
        struct Body: Decodable {
            var name: String
            var scopes: [String]
            var models: [String]?
            var expires: String?
        }
        let given = try StrictJSON.decode(
            Body.self, from: Data(buffer: body), shape: #"{"name": "ci", "scopes": ["infer", "read"], "models": ["credit"], "expires": "90d"}"#,
            known: ["name", "scopes", "models", "expires"])
        let scopes = try Scope.parseList(given.scopes.joined(separator: ","))
        let expiry = try given.expires.map { text throws(TernError) in try APIKeySecret.expiry(text) }
        let (record, key) = try await registry.createKey(
            name: given.name, scopes: scopes, models: given.models, expiresAt: expiry, actor: request.ternActor)
        return CreatedKey(key: key, record: record)
    }

    /// A small JSON body (an alias move): buffered up to 64 KiB, its own limit, not the bundle's.
    private func body(_ request: Request) async throws -> ByteBuffer {
        try await HTTPFrontEndConfiguration.collectBody(request, upTo: 64 << 10, flag: "(an alias move is small)")
    }

    /// Writes an uploaded bundle to a file as it arrives (memory stays flat whatever its size), refused by
    /// its `Content-Length` before anything is read, or as soon as it passes the limit. A client that goes
    /// away ends the upload; the file is removed.
    private func receive(_ request: Request) async throws -> String {
        try HTTPFrontEndConfiguration.refuseByLength(request.headers, upTo: maxBundleBytes, flag: "--max-bundle-size")
        try FileManager.default.createDirectory(atPath: uploadFolder, withIntermediateDirectories: true)
        let path = "\(uploadFolder)/upload-\(UUID().uuidString).tern"
        guard FileManager.default.createFile(atPath: path, contents: nil), let file = FileHandle(forWritingAtPath: path) else {
            throw TernError.internalError("cannot create a file for the upload in the server's cache folder")
        }
        defer { try? file.close() }
        do {
            var received = 0
            for try await chunk in request.body {
                received += chunk.readableBytes
                if received > maxBundleBytes {
                    throw HTTPFrontEndConfiguration.tooLarge(nil, limit: maxBundleBytes, flag: "--max-bundle-size")
                }
                try file.write(contentsOf: chunk.readableBytesView)
            }
        } catch {
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
        return path
    }

    private func version(_ context: BasicRequestContext) throws -> Int {
        try ModelVersionNumber.parse(try context.parameters.require("version"))
    }
}

private func encode<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return Response(
        status: status, headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
}

private func jsonObject(_ value: Any) throws -> Response {
    Response(
        status: .ok, headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys]))))
}

private func json(_ text: String) -> Response {
    Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
}

/// A new key as the API answers it: the only time its secret is shown.
struct CreatedKey: Encodable {
    var key: String
    var record: APIKeyRecord
}
