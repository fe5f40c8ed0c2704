import GRPCCore
import TernCore

/// Checks every RPC's credential (`authorization: Bearer KEY` or `x-api-key: KEY` metadata) against the
/// scope its method needs, before the service sees it; the caller is then ``CurrentCaller/value`` for the
/// handler, which checks model grants once it knows the model. A method with no declared scope is refused.
struct AccessInterceptor: ServerInterceptor {
    let access: AccessControl

    /// The scope of each method of `inference.GRPCInferenceService` (nil: open, for probes).
    static let scopes: [String: Scope?] = [
        "ServerLive": Scope?.none, "ServerReady": Scope?.none,
        "ModelReady": .read, "ServerMetadata": .read, "ModelMetadata": .read, "ModelConfig": .read,
        "ModelStatistics": .read, "RepositoryIndex": .read,
        "ModelInfer": .infer,
        "RepositoryModelLoad": .admin, "RepositoryModelUnload": .admin,
    ]

    /// Every method the service serves, with its scope, for `GET /api/v1/routes`.
    static var routes: [RouteEntry] {
        Inference_GRPCInferenceService.Method.descriptors.map { descriptor in
            RouteEntry(method: "RPC", path: descriptor.fullyQualifiedMethod, scope: scopes[descriptor.method] ?? nil, transport: "grpc")
        }
    }

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        guard let scope = Self.scopes[context.descriptor.method] else {
            throw RPCError(code: .permissionDenied, message: "\(context.descriptor.fullyQualifiedMethod) declares no scope")
        }
        if scope != nil { try access.admit(address: Self.address(context.remotePeer)) }
        let caller = try access.authorize(
            credential: AccessControl.credential(
                authorization: Self.first(request.metadata, "authorization"), apiKey: Self.first(request.metadata, "x-api-key")),
            scope: scope)
        defer { caller?.slot?.release() }
        return try await CurrentCaller.$value.withValue(caller) { try await next(request, context) }
    }

    /// The client's address from grpc-swift's peer (`ipv4:127.0.0.1:52314`, `ipv6:[::1]:52314`).
    static func address(_ peer: String) -> String? {
        guard let colon = peer.firstIndex(of: ":"), let port = peer.lastIndex(of: ":"), port > colon else { return nil }
        let host = peer[peer.index(after: colon)..<port]
        return String(host.hasPrefix("[") && host.hasSuffix("]") ? host.dropFirst().dropLast() : host)
    }

    static func first(_ metadata: Metadata, _ key: String) -> String? {
        for value in metadata[stringValues: key] { return value }
        return nil
    }

    /// Refuses a model outside the current caller's grants (a handler calls it once it knows the model).
    static func checkGrant(_ model: String) throws(TernError) {
        if let caller = CurrentCaller.value, !caller.mayUse(model: model) { throw caller.refusal(model: model) }
    }

    /// Refuses an RPC spanning every model to a caller limited to some.
    static func checkUnrestricted(_ what: String) throws(TernError) {
        if let caller = CurrentCaller.value, let models = caller.models {
            throw TernError(.permissionDenied, "\(caller.name) may use only \(models.sorted().joined(separator: ", ")); \(what) spans every model")
        }
    }
}
