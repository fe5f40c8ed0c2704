import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TernCore
import TernModels
import TernRegistry
import TernRollouts

/// Validation gates and progressive rollouts over the management API.
///
/// ```
/// GET    /api/v1/models/{model}/gate                      the gate, with each version's newest verdict
/// PUT    /api/v1/models/{model}/gate                      set it (GatePolicy JSON)
/// DELETE /api/v1/models/{model}/gate
/// POST   /api/v1/models/{model}/gate/check                {"version": 2, "alias": "production"}: run it, record it
/// GET    /api/v1/models/{model}/rollout                   the rollout, with its current step's numbers
/// POST   /api/v1/models/{model}/rollout                   {"to": 2, "steps": [5, 25, 50, 100], "interval": "10m", ...}
/// POST   /api/v1/models/{model}/rollout/{action}          pause, resume, abort, promote[?force=true]
/// ```
struct RolloutRoutes: Sendable {
    let models: RegistryModels
    let driver: RolloutDriver?

    func register(on router: ScopedRouter) {
        let api = router.group("/api/v1")
        api.get("/models/{model}/gate", .read) { _, context in
            let model = try context.parameters.require("model")
            guard let gate = try await models.registry.gate(model: model) else {
                throw TernError.notFound("model '\(model)' has no validation gate")
            }
            var object = try Self.object(gate)
            object["verdicts"] = try await Self.verdicts(model: model, registry: models.registry)
            return try Self.json(object)
        }
        api.put("/models/{model}/gate", .admin) { request, context in
            let policy: GatePolicy = try await Self.decode(
                request, example: #"{"require": {"roc_auc": 0.75}, "max_regression": {"roc_auc": 0.01}, "max_latency_increase": 0.2}"#,
                known: GatePolicy.fieldNames)
            let model = try context.parameters.require("model")
            try await models.registry.setGate(model: model, policy: policy, actor: request.ternActor)
            return try Self.json(try Self.object(policy))
        }
        api.delete("/models/{model}/gate", .admin) { request, context in
            try await models.registry.setGate(model: try context.parameters.require("model"), policy: nil, actor: request.ternActor)
            return Response(status: .noContent)
        }
        api.post("/models/{model}/gate/check", .admin) { request, context in
            struct Body: Decodable {
                var version: Int
                var alias: String?
            }
            let body: Body = try await Self.decode(request, example: #"{"version": 2, "alias": "production"}"#, known: ["version", "alias"])
            guard (1...ModelVersionNumber.maximum).contains(body.version) else {
                throw TernError.invalidArgument("version must be 1...\(ModelVersionNumber.maximum)")
            }
            let result = try await models.gate.check(
                model: try context.parameters.require("model"), candidate: body.version, alias: body.alias ?? Registry.defaultAlias,
                actor: request.ternActor)
            return try Self.json(try Self.object(result))
        }
        api.get("/models/{model}/rollout", .read) { _, context in
            let model = try context.parameters.require("model")
            guard let rollout = try await models.registry.rollout(model: model) else {
                throw TernError.notFound("model '\(model)' has never had a rollout")
            }
            var object = try Self.object(rollout)
            if rollout.state == "running" || rollout.state == "paused", let driver {
                object["current_step"] = try Self.object(await driver.judge(rollout).numbers)
            }
            return try Self.json(object)
        }
        api.post("/models/{model}/rollout", .admin) { request, context in
            let start: RolloutStart = try await Self.decode(
                request, example: #"{"to": 2, "steps": [5, 25, 50, 100], "interval": "10m", "min_requests": 100}"#,
                known: RolloutStart.fieldNames)
            let model = try context.parameters.require("model")
            let proposed = try start.rollout(model: model)
            let watch = driver?.watch
            let rollout = try await models.startRollout(proposed, actor: request.ternActor, skipGate: start.skipGate ?? false) { started in
                watch?.watch(adding: started.model)  // before its shares are served: the first requests count
            }
            return try Self.json(try Self.object(rollout), status: .created)
        }
        api.post("/models/{model}/rollout/{action}", .admin) { request, context in
            let model = try context.parameters.require("model")
            let name = try context.parameters.require("action")
            guard let action = try? RolloutAction(name: name) else {
                throw TernError.notFound("no rollout action '\(Echo.clip(name))'; actions: pause, resume, abort, promote")
            }
            let rollout = try await models.updateRollout(
                model: model, action, actor: request.ternActor,
                force: try StrictJSON.flag(request.uri.queryParameters.get("force").map { String($0) }, name: "force"))
            return try Self.json(try Self.object(rollout))
        }
    }

    /// Each version's newest gate verdict, from the audit trail.
    static func verdicts(model: String, registry: Registry) async throws -> [String: Any] {
        var verdicts: [String: Any] = [:]
        for entry in try await registry.auditLog(model: model) where entry.action == "gate" || entry.action == "gate-forced" {
            guard let version = entry.version, let after = entry.after,
                let object = try? JSONSerialization.jsonObject(with: Data(after.utf8))
            else { continue }
            verdicts[String(version)] = object  // the log is oldest first: the newest stays
        }
        return verdicts
    }

    static func decode<T: Decodable>(_ request: Request, example: String, known: Set<String>) async throws -> T {
        let body = try await HTTPFrontEndConfiguration.collectBody(request, upTo: 64 << 10, flag: "(the body is small)")
        return try StrictJSON.decode(T.self, from: Data(buffer: body), shape: example, known: known)
    }

    static func object(_ value: some Encodable) throws -> [String: Any] {
        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try JSONSerialization.jsonObject(with: try encoder.encode(value)) as? [String: Any] ?? [:]
    }

    static func json(_ object: [String: Any], status: HTTPResponse.Status = .ok) throws -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(
                byteBuffer: ByteBuffer(
                    bytes: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))))
    }
}
