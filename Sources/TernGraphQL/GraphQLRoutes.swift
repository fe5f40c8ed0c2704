import Foundation
import GraphQL
import HTTPTypes
import Hummingbird
import NIOCore
import TernCore
import TernHTTP

extension WireProtocol {
    /// The predict mutation at `/graphql`.
    public static let graphql = WireProtocol(rawValue: "graphql")
}

/// GraphQL at `/graphql`: translates between HTTP and the schema (``TernGraphAPI``), which reads and runs the
/// same owners as the REST API.
///
/// `POST /graphql` takes `{"query": ..., "variables": {...}, "operationName": ...}` (or the document itself as
/// `application/graphql`); `GET /graphql?query=...` runs queries only. The operation picks the scope: queries
/// need `read`, the predict mutation `infer`; a caller limited to some models sees only those. Before anything
/// runs, a document is refused (400, GraphQL errors) when it does not parse, names no single operation, nests
/// deeper than ``maxDepth`` or selects more than ``maxFields`` fields.
package struct GraphQLRoutes: Sendable {
    let owners: GraphQLOwners
    let http: HTTPFrontEndConfiguration
    /// The schema, built on the first request (about 20 ms a server that is never asked would pay at start).
    let api = OnFirstUse { try TernGraphAPI() }
    /// `GET /graphql` from a browser answers a page to write queries in (`--graphql-playground`).
    let playground: Bool

    /// The deepest selection a document may make (`models { versions { inputs { name } } }` is 4 deep).
    package static let maxDepth = 8
    /// The most fields a document may select, fragments expanded.
    package static let maxFields = 500

    package init(owners: GraphQLOwners, http: HTTPFrontEndConfiguration, playground: Bool = false) {
        self.owners = owners
        self.http = http
        self.playground = playground
    }

    package func register(on router: ScopedRouter) {
        router.table.add(RouteEntry(method: "POST", path: "/graphql", scope: .read))
        router.table.add(RouteEntry(method: "GET", path: "/graphql", scope: .read))
        let access = router.access
        router.router.post("/graphql") { request, _ in
            try Self.authenticate(request, access: access)
            let body = try await HTTPFrontEndConfiguration.collectBody(request, upTo: http.maxRequestBytes, flag: "--max-request-size")
            let contentType = request.headers[.contentType]?.lowercased() ?? ""
            let graphRequest: GraphQLRequest
            if contentType.hasPrefix("application/graphql") {
                graphRequest = GraphQLRequest(query: String(buffer: body))
            } else if contentType.isEmpty || contentType.hasPrefix("application/json") {
                do {
                    graphRequest = try JSONDecoder().decode(GraphQLRequest.self, from: Data(buffer: body))
                } catch {
                    return Self.refusal(
                        "the body is not a GraphQL request: send JSON {\"query\": \"...\", \"variables\": {...}} "
                            + "(application/json) or the document itself (application/graphql)")
                }
            } else {
                throw TernError(.invalidArgument, "a GraphQL request is application/json or application/graphql, not '\(Echo.clip(contentType))'")
            }
            return try await run(graphRequest, request, access: access, allowMutation: true)
        }
        if playground {
            for (path, type, text) in [
                ("/graphql/playground.js", "text/javascript; charset=utf-8", GraphQLPlayground.script),
                ("/graphql/playground.css", "text/css; charset=utf-8", GraphQLPlayground.css),
            ] {
                router.table.add(RouteEntry(method: "GET", path: path, scope: nil, transport: "console"))
                router.router.get(RouterPath(path)) { _, _ in
                    Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: text)))
                }
            }
        }
        router.router.get("/graphql") { request, _ in
            let query = FormFields.parse(request.uri.query ?? "")
            // A browser opening /graphql gets the playground page (a static page: the queries it sends carry the credential).
            if playground, query["query"] == nil, request.headers[.accept]?.contains("text/html") == true {
                return Response(
                    status: .ok,
                    headers: [
                        .contentType: "text/html; charset=utf-8",
                        HTTPField.Name("Content-Security-Policy")!:
                            "default-src 'none'; script-src 'self'; style-src 'self'; img-src data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
                    ], body: .init(byteBuffer: ByteBuffer(string: GraphQLPlayground.page)))
            }
            try Self.authenticate(request, access: access)
            guard let text = query["query"] else {
                return Self.refusal("give the document in ?query= (queries only; mutations are POSTed)")
            }
            var variables: [String: Map] = [:]
            if let given = query["variables"] {
                guard let decoded = try? JSONDecoder().decode([String: Map].self, from: Data(String(given).utf8)) else {
                    return Self.refusal("variables is not a JSON object")
                }
                variables = decoded
            }
            let graphRequest = GraphQLRequest(
                query: text, operationName: query["operationName"], variables: variables)
            return try await run(graphRequest, request, access: access, allowMutation: false)
        }
    }

    /// Who is asking, checked before the document is read (an anonymous or forged request learns nothing of
    /// the schema); the operation's scope is checked once the document says which it is.
    static func authenticate(_ request: Request, access: AccessControl) throws {
        guard let verifier = access.verifier, verifier.enforcing else { return }
        guard let credential = ScopedRouter.credential(request.headers), !credential.isEmpty else {
            _ = try access.authorize(credential: nil, scope: .read)
            return
        }
        _ = try verifier.verify(credential)
    }

    private func run(_ graphRequest: GraphQLRequest, _ request: Request, access: AccessControl, allowMutation: Bool) async throws -> Response {
        let document: Document
        do {
            document = try parse(source: graphRequest.query)
        } catch let error as GraphQLError {
            return Self.answer(GraphQLResult(errors: [error]), status: .badRequest)
        }
        let operation: OperationDefinition
        switch Self.operation(in: document, named: graphRequest.operationName) {
        case .success(let found): operation = found
        case .failure(let message): return Self.refusal(message)
        }
        let shape = DocumentShape(document)
        let (depth, fields) = shape.measure(operation.selectionSet)
        if depth > Self.maxDepth {
            return Self.refusal("the query is \(depth) levels deep; the limit is \(Self.maxDepth)", code: "QUERY_TOO_DEEP")
        }
        if fields > Self.maxFields {
            return Self.refusal("the query selects \(fields) fields; the limit is \(Self.maxFields)", code: "QUERY_TOO_COMPLEX")
        }
        let scope: Scope
        switch operation.operation {
        case .query: scope = .read
        case .mutation:
            guard allowMutation else { return Self.refusal("a mutation is POSTed, not sent with GET", status: .methodNotAllowed) }
            scope = .infer
        case .subscription: return Self.refusal("subscriptions are not served")
        }
        // Reading the registry's models and audit is management, as under /api/v1; predicting is inference.
        if scope == .read { try access.refuseOpenManagement() }
        let caller = try access.verifier == nil ? nil : access.authorize(credential: ScopedRouter.credential(request.headers), scope: scope)
        defer { caller?.slot?.release() }
        let call = CallContext(
            wire: .graphql, requestID: request.headers[HTTPField.Name("X-Request-ID")!],
            traceparent: request.headers[HTTPField.Name("traceparent")!], peer: nil)
        call.caller = caller
        let context = GraphContext(owners: owners, caller: caller, call: call)
        let result = try await CurrentCaller.$value.withValue(caller) {
            try await api.get().execute(request: graphRequest, context: context)
        }
        return Self.answer(GraphErrors.clientFacing(result), status: Self.status(result))
    }

    /// 200 when the operation ran, even with some fields' errors (GraphQL's convention: the data holds what
    /// was answered). With no data at all: 400 for a document the schema refuses (unknown field, wrong
    /// argument type), else the status REST gives the first error (a refused prediction: 400, an unknown model: 404).
    static func status(_ result: GraphQLResult) -> HTTPResponse.Status {
        guard result.data == nil || result.data == .null, let first = result.errors.first else { return .ok }
        guard let original = first.originalError else { return .badRequest }
        return (original as? TernError)?.code.httpStatus ?? .internalServerError
    }

    /// The operation a request runs: the one named, or the document's only one.
    static func operation(in document: Document, named name: String?) -> Result<OperationDefinition, Refusal> {
        let operations = document.definitions.compactMap { $0 as? OperationDefinition }
        if let name {
            guard let found = operations.first(where: { $0.name?.value == name }) else {
                return .failure(Refusal("the document has no operation named '\(Echo.clip(name))'"))
            }
            return .success(found)
        }
        guard operations.count == 1 else {
            return .failure(
                Refusal(
                    operations.isEmpty
                        ? "the document has no operation" : "the document has \(operations.count) operations: name one in operationName"))
        }
        return .success(operations[0])
    }

    struct Refusal: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    private static func refusal(_ refusal: Refusal) -> Response { self.refusal(refusal.message) }

    static func refusal(_ message: String, code: String = "BAD_REQUEST", status: HTTPResponse.Status = .badRequest) -> Response {
        answer(GraphQLResult(errors: [GraphQLError(message: message, extensions: ["code": .string(code)])]), status: status)
    }

    static func answer(_ result: GraphQLResult, status: HTTPResponse.Status) -> Response {
        // GraphQL's own encoder keeps the fields in the order the query asked for them.
        let encoder = GraphQLJSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        let data = (try? encoder.encode(result)) ?? Data(#"{"errors":[{"message":"the answer could not be encoded"}]}"#.utf8)
        return Response(
            status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// How deep and how wide a document's selection is, its fragments expanded (a fragment that spreads itself
/// counts once: the validator refuses such a cycle later).
struct DocumentShape {
    let fragments: [String: FragmentDefinition]

    init(_ document: Document) {
        var fragments: [String: FragmentDefinition] = [:]
        for case let fragment as FragmentDefinition in document.definitions { fragments[fragment.name.value] = fragment }
        self.fragments = fragments
    }

    func measure(_ selections: SelectionSet) -> (depth: Int, fields: Int) {
        var visiting: Set<String> = []
        return measure(selections, visiting: &visiting)
    }

    private func measure(_ set: SelectionSet, visiting: inout Set<String>) -> (depth: Int, fields: Int) {
        var depth = 0
        var fields = 0
        for selection in set.selections where fields <= GraphQLRoutes.maxFields {
            switch selection {
            case let field as Field:
                fields += 1
                if let inner = field.selectionSet {
                    let (innerDepth, innerFields) = measure(inner, visiting: &visiting)
                    depth = max(depth, innerDepth + 1)
                    fields += innerFields
                } else {
                    depth = max(depth, 1)
                }
            case let inline as InlineFragment:
                let (innerDepth, innerFields) = measure(inline.selectionSet, visiting: &visiting)
                depth = max(depth, innerDepth)
                fields += innerFields
            case let spread as FragmentSpread:
                // A spread counts as a field: fragments spreading fragments cannot multiply the work unseen.
                fields += 1
                guard let fragment = fragments[spread.name.value], !visiting.contains(spread.name.value) else { continue }
                visiting.insert(spread.name.value)
                let (innerDepth, innerFields) = measure(fragment.selectionSet, visiting: &visiting)
                visiting.remove(spread.name.value)
                depth = max(depth, innerDepth)
                fields += innerFields
            default:
                continue
            }
        }
        return (depth, fields)
    }
}
