import HTTPTypes
import Hummingbird
import TernCore

/// A router whose every route declares its scope: the handler runs only for a caller the server's
/// ``AccessControl`` lets through (the caller is then ``CurrentCaller/value`` for the handler).
///
/// A route naming a model (`{model}` in its path) also needs a grant for that model; a caller limited to
/// some models may not use a non-inference route that spans all models (listing models, the prediction
/// log, pushes). Inference routes resolve their model later: the core checks the grant there.
public struct ScopedRouter {
    public let router: Router<BasicRequestContext>
    public let access: AccessControl
    public let table: RouteTable
    private let prefix: String

    public init(router: Router<BasicRequestContext>, access: AccessControl, table: RouteTable = RouteTable()) {
        self.router = router
        self.access = access
        self.table = table
        self.prefix = ""
    }

    private init(_ base: ScopedRouter, prefix: String) {
        self.router = base.router
        self.access = base.access
        self.table = base.table
        self.prefix = prefix
    }

    /// Routes under `prefix` (such as `/api/v1`).
    public func group(_ prefix: String) -> ScopedRouter { ScopedRouter(self, prefix: self.prefix + prefix) }

    /// - Parameter aboutNoModel: the route tells nothing of any model (server metadata): callers limited to
    ///   some models may use it too.
    @discardableResult
    public func on<Output: ResponseGenerator>(
        _ path: String, method: HTTPRequest.Method, scope: Scope?, aboutNoModel: Bool = false,
        use handler: @escaping @Sendable (Request, BasicRequestContext) async throws -> Output
    ) -> ScopedRouter {
        let full = prefix + path
        table.add(RouteEntry(method: method.rawValue, path: full, scope: scope))
        let access = self.access
        let management = scope == .admin || full.hasPrefix("/api/v1/")
        guard access.verifier != nil, let scope else {
            router.on(RouterPath(full), method: method) { request, context in
                if management { try access.refuseOpenManagement() }
                return try await handler(request, context).response(from: request, context: context)
            }
            return self
        }
        let namesModel = full.contains("{model}")
        router.on(RouterPath(full), method: method) { request, context in
            if management { try access.refuseOpenManagement() }
            let caller = try access.authorize(
                credential: Self.credential(request.headers), scope: scope,
                model: namesModel && scope != .infer ? context.parameters.get("model") : nil)
            if let caller, let models = caller.models, !namesModel, scope != .infer, !aboutNoModel {
                throw TernError(
                    .permissionDenied,
                    "\(caller.name) may use only \(models.sorted().joined(separator: ", ")); "
                        + "\(method.rawValue) \(full) spans every model")
            }
            defer { caller?.slot?.release() }
            return try await CurrentCaller.$value.withValue(caller) {
                try await handler(request, context).response(from: request, context: context)
            }
        }
        return self
    }

    @discardableResult
    public func get<Output: ResponseGenerator>(
        _ path: String, _ scope: Scope?, use handler: @escaping @Sendable (Request, BasicRequestContext) async throws -> Output
    ) -> ScopedRouter { on(path, method: .get, scope: scope, use: handler) }

    @discardableResult
    public func post<Output: ResponseGenerator>(
        _ path: String, _ scope: Scope?, use handler: @escaping @Sendable (Request, BasicRequestContext) async throws -> Output
    ) -> ScopedRouter { on(path, method: .post, scope: scope, use: handler) }

    @discardableResult
    public func put<Output: ResponseGenerator>(
        _ path: String, _ scope: Scope?, use handler: @escaping @Sendable (Request, BasicRequestContext) async throws -> Output
    ) -> ScopedRouter { on(path, method: .put, scope: scope, use: handler) }

    @discardableResult
    public func delete<Output: ResponseGenerator>(
        _ path: String, _ scope: Scope?, use handler: @escaping @Sendable (Request, BasicRequestContext) async throws -> Output
    ) -> ScopedRouter { on(path, method: .delete, scope: scope, use: handler) }

    /// The credential a request presents: `Authorization: Bearer KEY`, else `x-api-key: KEY`.
    public static func credential(_ headers: HTTPFields) -> String? {
        AccessControl.credential(authorization: headers.value(.authorization), apiKey: headers.value(Self.apiKeyField))
    }

    static let apiKeyField = HTTPField.Name("x-api-key")!
}

extension Request {
    /// Who a change is attributed to: the authenticated caller when the server checks credentials, else the
    /// `Tern-Actor` header (a label anyone can set, honoured only by an open server), else "anonymous".
    public var ternActor: String {
        if let caller = CurrentCaller.value { return caller.name }
        let given = headers[HTTPField.Name("Tern-Actor")!]?.trimmingCharacters(in: .whitespaces) ?? ""
        return given.isEmpty ? "anonymous" : String(given.prefix(200))
    }
}
