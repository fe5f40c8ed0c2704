import HTTPTypes
import Hummingbird
import NIOCore
import TernCodecs
import TernCore

/// The Open Inference Protocol's model repository extension, as Triton serves it and tritonclient calls it:
///
/// ```
/// POST /v2/repository/index                     {"ready": true}? -> [{"name", "version", "state", "reason"}]
/// POST /v2/repository/models/{model}/load       {"parameters": {"version": N}}? (version: a Tern extension)
/// POST /v2/repository/models/{model}/unload
/// ```
struct RepositoryRoutes: Sendable {
    let service: InferenceService
    let configuration: HTTPFrontEndConfiguration

    func register(on router: ScopedRouter) {
        router.post("/v2/repository/index", .read) { request, _ in
            let body = try await object(request, allowed: "ready")
            var readyOnly = false
            if let ready = body?["ready"] {
                guard case .bool(let flag) = ready else { throw TernError.invalidArgument("'ready' must be true or false") }
                readyOnly = flag
            }
            var writer = JSONWriter()
            writer.byte(UInt8(ascii: "["))
            for (index, entry) in try await service.repositoryIndex(readyOnly: readyOnly).enumerated() {
                if index > 0 { writer.byte(UInt8(ascii: ",")) }
                writer.raw("{\"name\":")
                writer.string(entry.name)
                writer.raw(",\"version\":")
                writer.string(entry.version)
                writer.raw(",\"state\":")
                writer.string(entry.state)
                if !entry.reason.isEmpty {
                    writer.raw(",\"reason\":")
                    writer.string(entry.reason)
                }
                writer.byte(UInt8(ascii: "}"))
            }
            writer.byte(UInt8(ascii: "]"))
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: writer.buffer))
        }
        router.post("/v2/repository/models/{model}/load", .admin) { request, context in
            try await service.repositoryLoad(
                model: context.parameters.require("model"), version: try await version(request), actor: request.ternActor)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{}")))
        }
        router.post("/v2/repository/models/{model}/unload", .admin) { request, context in
            try await service.repositoryUnload(
                model: context.parameters.require("model"), version: try await version(request), actor: request.ternActor)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{}")))
        }
    }

    /// The body as a JSON object of the `allowed` object-or-value fields; nil when empty.
    private func object(_ request: Request, allowed: String = "parameters") async throws -> JSONValue? {
        let body = try await configuration.collectBody(request)
        guard body.readableBytes > 0 else { return nil }
        let value = try JSONValue.parse(Array(body.readableBytesView))
        guard case .object(let fields) = value else { throw TernError.invalidArgument("the request body must be a JSON object") }
        for (key, field) in fields {
            guard key == allowed else {
                throw TernError.invalidArgument("unknown field '\(Echo.clip(key))'; the body's one field is \(allowed)")
            }
            if key == "parameters" {
                guard case .object = field else { throw TernError.invalidArgument("parameters must be a JSON object") }
            }
        }
        return value
    }

    /// The optional `parameters.version`: a positive integer, as a number or a string.
    private func version(_ request: Request) async throws -> Int? {
        guard let parameters = try await object(request)?["parameters"], let value = parameters["version"] else { return nil }
        switch value {
        case .number(_, let exact?) where exact >= 1: return Int(exact)
        case .string(let text) where (Int(text) ?? 0) >= 1: return Int(text)
        default: throw TernError.invalidArgument("parameters.version must be a positive integer")
        }
    }
}
