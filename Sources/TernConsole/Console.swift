import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TernBatch
import TernCore
import TernExplain
import TernHTTP
import TernModels
import TernMonitoring
import TernRegistry
import TernRollouts

/// What the console reads and acts on: the owners the REST API calls (nil: that part is absent on this server).
package struct ConsoleOwners: Sendable {
    package var service: InferenceService
    package var history: TrafficHistory
    package var models: RegistryModels?
    package var drift: LiveDrift?
    package var feedback: LiveFeedback?
    package var alerts: AlertEvaluator?
    package var jobs: BatchJobs?
    package var rollouts: RolloutDriver?
    package var explanations: Explanations?
    /// When each API key was last used on this server (the keys page).
    package var keyLastUse: @Sendable (String) -> Date?

    package init(
        service: InferenceService, history: TrafficHistory, models: RegistryModels? = nil, drift: LiveDrift? = nil,
        feedback: LiveFeedback? = nil, alerts: AlertEvaluator? = nil, jobs: BatchJobs? = nil, rollouts: RolloutDriver? = nil,
        explanations: Explanations? = nil, keyLastUse: @escaping @Sendable (String) -> Date? = { _ in nil }
    ) {
        self.service = service
        self.history = history
        self.models = models
        self.drift = drift
        self.feedback = feedback
        self.alerts = alerts
        self.jobs = jobs
        self.rollouts = rollouts
        self.explanations = explanations
        self.keyLastUse = keyLastUse
    }
}

/// The console at `/ui`: pages rendered here from the same owners the API reads, a little script that
/// refreshes the live parts, and forms for the actions.
///
/// With keys or a token issuer configured, a person signs in with an API key or a bearer token, which the
/// console keeps in an HttpOnly, SameSite=Strict cookie (Secure under TLS); every form carries a token
/// derived from it (CSRF), and every action is checked against the caller's scopes like its API twin
/// (`read` views, `admin` acts) and audited under the caller's name.
package struct ConsoleRoutes: Sendable {
    let owners: ConsoleOwners
    let access: AccessControl
    let secure: Bool
    /// The templates, compiled on the first page asked for (not at the server's start).
    let compiled = OnFirstUse { try ConsolePages() }
    /// Signs the forms' CSRF tokens; made when the server starts.
    let formKey: SymmetricKey

    static let cookie = "tern_console"

    package init(owners: ConsoleOwners, access: AccessControl, secure: Bool) {
        self.owners = owners
        self.access = access
        self.secure = secure
        self.formKey = SymmetricKey(size: .bits256)
    }

    /// Who is looking, and the token their forms carry.
    struct Session: Sendable {
        var caller: Caller?
        /// The key or token signed in with (nil on an open server).
        var credential: String? = nil
        var csrf: String
        var signedIn: Bool

        func may(_ scope: Scope) -> Bool { caller?.has(scope) ?? true }
    }

    enum Outcome: Error {
        case redirect(String)
    }

    var pages: ConsolePages {
        get throws { try compiled.get() }
    }

    package func register(on router: ScopedRouter) {
        // Listed beside the API's routes with their scopes; their own transport, since they answer pages, not JSON.
        func open(
            _ method: HTTPRequest.Method, _ path: String,
            _ handler: @escaping @Sendable (Request) async throws -> Response
        ) {
            router.table.add(RouteEntry(method: method.rawValue, path: path, scope: nil, transport: "console"))
            router.router.on(RouterPath(path), method: method) { request, _ in try await handler(request) }
        }
        /// A page (or a fragment the script polls), run by ``page`` for a session with `scope` (and the grant
        /// for the model its path names).
        func page(
            _ method: HTTPRequest.Method, _ path: String, _ scope: Scope, fragment: Bool = false,
            _ body: @escaping @Sendable (Request, String?, Session) async throws -> String
        ) {
            router.table.add(RouteEntry(method: method.rawValue, path: path, scope: scope, transport: "console"))
            router.router.on(RouterPath(path), method: method) { request, context in
                let model = context.parameters.get("model")
                return try await self.page(request, needs: scope, model: model, fragment: fragment) { session in
                    try await body(request, model, session)
                }
            }
        }

        open(.get, "/ui/assets/console.css") { _ in Self.asset(ConsoleAssets.css, type: "text/css; charset=utf-8") }
        open(.get, "/ui/assets/console.js") { _ in Self.asset(ConsoleAssets.script, type: "text/javascript; charset=utf-8") }
        open(.get, "/ui/login") { request in
            try openPage(request) { session in
                try pages.login(next: Self.safeNext(FormFields.parse(request.uri.query ?? "")["next"]), message: nil, session: session)
            }
        }
        open(.post, "/ui/login") { request in try await signIn(request) }
        open(.post, "/ui/logout") { request in
            let fields = try await form(request)
            let session = try sessionFor(request)
            try checkCSRF(fields, session)
            var response = Self.redirect("/ui/login")
            response.headers[values: .setCookie] = [cookie(value: "", maxAge: 0)]
            return response
        }
        page(.get, "/ui", .read) { _, _, session in try await pages.models(owners, session: session) }
        page(.get, "/ui/live", .read, fragment: true) { _, _, session in try await pages.modelsTable(owners, session: session) }
        page(.get, "/ui/models/{model}", .read) { request, model, session in
            try await pages.model(model ?? "", owners, session: session, query: FormFields.parse(request.uri.query ?? ""))
        }
        page(.get, "/ui/models/{model}/live", .read, fragment: true) { request, model, _ in
            let span = Int(FormFields.parse(request.uri.query ?? "")["span"] ?? "") ?? 300
            return try pages.live(model ?? "", owners, span: span)
        }
        page(.get, "/ui/models/{model}/confirm", .admin) { request, model, session in
            try pages.confirm(model ?? "", try ConsoleAction(fields: FormFields.parse(request.uri.query ?? "")), session: session)
        }
        page(.post, "/ui/models/{model}/act", .admin) { request, model, session in
            let model = model ?? ""
            let fields = try await form(request)
            try checkCSRF(fields, session)
            let action = try ConsoleAction(fields: fields)
            try await action.perform(on: model, owners, actor: session.caller?.name ?? request.ternActor)
            throw Outcome.redirect("/ui/models/\(Self.pathSegment(model))?done=\(Self.pathSegment(action.summary(model)))")
        }
        page(.post, "/ui/models/{model}/explain", .infer) { request, model, session in
            let fields = try await form(request)
            try checkCSRF(fields, session)
            return try await pages.explanation(model ?? "", owners, request: fields["request"] ?? "", session: session)
        }
        page(.get, "/ui/jobs", .read) { _, _, session in try await pages.jobs(owners, session: session) }
        page(.get, "/ui/jobs/live", .read, fragment: true) { _, _, session in try await pages.jobsTable(owners, session: session) }
        page(.get, "/ui/keys", .admin) { _, _, session in try await pages.keys(owners, session: session) }
    }

    // MARK: - Sessions

    /// The caller from the console's cookie (or an Authorization header); nil credential: not signed in.
    func sessionFor(_ request: Request) throws -> Session {
        guard let verifier = access.verifier, verifier.enforcing else {
            try access.refuseOpenManagement()
            return Session(caller: nil, csrf: csrf(for: "open"), signedIn: false)
        }
        guard let credential = request.cookies[Self.cookie]?.value ?? ScopedRouter.credential(request.headers), !credential.isEmpty
        else { throw Outcome.redirect("/ui/login?next=" + Self.pathSegment(request.uri.path)) }
        // A key revoked or expired since signing in: sign in again.
        guard let caller = try? verifier.verify(credential) else {
            throw Outcome.redirect("/ui/login?next=" + Self.pathSegment(request.uri.path))
        }
        return Session(caller: caller, credential: credential, csrf: csrf(for: credential), signedIn: true)
    }

    func csrf(for credential: String) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Data(credential.utf8), using: formKey)
        return Data(code).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// A form's token must be the one this session's pages carry: a page of another site cannot know it.
    func checkCSRF(_ fields: [String: String], _ session: Session) throws {
        let given = Data((fields["csrf"] ?? "").utf8), expected = Data(session.csrf.utf8)
        guard given.count == expected.count, zip(given, expected).reduce(0, { $0 | ($1.0 ^ $1.1) }) == 0 else {
            throw TernError(.permissionDenied, "the form's token is missing or not this session's: reload the page and try again")
        }
    }

    private func signIn(_ request: Request) async throws -> Response {
        let fields = try await form(request)
        let next = Self.safeNext(fields["next"])
        guard let verifier = access.verifier, verifier.enforcing else { return Self.redirect(next) }
        let credential = (fields["credential"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let message: String
        do {
            guard !credential.isEmpty else { throw TernError.invalidArgument("give an API key or a bearer token") }
            guard
                credential.utf8.allSatisfy({
                    $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: ";") && $0 != UInt8(ascii: ",") && $0 != UInt8(ascii: "\"")
                        && $0 != UInt8(ascii: "\\")
                })
            else {
                throw TernError.invalidArgument("that is not an API key or a token")
            }
            let caller = try verifier.verify(credential)
            guard caller.has(.read) else {
                throw TernError(.permissionDenied, "\(caller.name) lacks the 'read' scope the console needs")
            }
            var response = Self.redirect(next)
            response.headers[values: .setCookie] = [cookie(value: credential, maxAge: nil)]
            return response
        } catch let error as TernError {
            message = error.message
        }
        let html = try pages.login(next: next, message: message, session: Session(caller: nil, csrf: "", signedIn: false))
        return Self.html(html, status: .unauthorized)
    }

    private func cookie(value: String, maxAge: Int?) -> String {
        var text = "\(Self.cookie)=\(value); Path=/ui; HttpOnly; SameSite=Strict"
        if secure { text += "; Secure" }
        if let maxAge { text += "; Max-Age=\(maxAge)" }
        return text
    }

    // MARK: - Answers

    /// Runs a page's work for a session allowed `scope` (and the model), as HTML; what goes wrong is a page
    /// with the API's status and message; a session that is not signed in goes to the login page.
    private func page(
        _ request: Request, needs scope: Scope?, model: String? = nil, fragment: Bool = false,
        _ body: (Session) async throws -> String
    ) async throws -> Response {
        do {
            var session = try sessionFor(request)
            // The API's own check: the scope, the model grant, the key's rate and requests in flight.
            if let credential = session.credential {
                session.caller = try access.authorize(credential: credential, scope: scope, model: model) ?? session.caller
            }
            defer { session.caller?.slot?.release() }
            return try await CurrentCaller.$value.withValue(session.caller) {
                Self.html(try await body(session))
            }
        } catch Outcome.redirect(let location) {
            return fragment ? Self.html("", status: .unauthorized) : Self.redirect(location)
        } catch {
            let (status, message) = ErrorAnswer.clientFacing(error)
            if fragment { return Self.html("<p class=\"error\">\(HTML.escape(message))</p>", status: status) }
            return Self.html((try? pages.error(status: status, message: message)) ?? HTML.escape(message), status: status)
        }
    }

    /// A page anyone may see (the login page): the session when there is one, else an anonymous one.
    private func openPage(_ request: Request, _ body: (Session) throws -> String) throws -> Response {
        do {
            let session = try sessionFor(request)
            return Self.html(try body(session))
        } catch Outcome.redirect {
            return Self.html(try body(Session(caller: nil, csrf: "", signedIn: false)))
        }
    }

    private func form(_ request: Request) async throws -> [String: String] {
        let body = try await HTTPFrontEndConfiguration.collectBody(request, upTo: 1 << 20, flag: "(a console form is small)")
        return FormFields.parse(String(buffer: body))
    }

    static let securityHeaders: HTTPFields = [
        .contentType: "text/html; charset=utf-8",
        HTTPField.Name("Content-Security-Policy")!:
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        HTTPField.Name("X-Frame-Options")!: "DENY",
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        HTTPField.Name("Referrer-Policy")!: "same-origin",
        .cacheControl: "no-store",
    ]

    static func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: securityHeaders, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func redirect(_ location: String) -> Response {
        var headers = securityHeaders
        headers[.location] = location
        return Response(status: .seeOther, headers: headers)
    }

    static func asset(_ text: String, type: String) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: type, .cacheControl: "max-age=300", HTTPField.Name("X-Content-Type-Options")!: "nosniff"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// Where to go after signing in: a console path only (never another site).
    static func safeNext(_ next: String?) -> String {
        guard let next, next.hasPrefix("/ui"), !next.hasPrefix("//"), !next.contains("\\") else { return "/ui" }
        return next
    }

    static func pathSegment(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~/"))) ?? ""
    }
}
