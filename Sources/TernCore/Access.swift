import Synchronization

/// What a caller may do. Every route and RPC needs one scope (health routes none); a credential carries a
/// set of them.
public enum Scope: String, Sendable, CaseIterable, Codable, Comparable {
    /// Inference on any protocol.
    case infer
    /// Metadata, registry reads, the prediction log, drift and performance.
    case read
    /// Changes: push, alias, archive, delete, keys, load, unload. Implies `read`.
    case admin
    /// `GET /metrics`, when the server protects it (`--metrics-auth`).
    case metrics

    public static func < (lhs: Scope, rhs: Scope) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }

    /// Parses `infer,read,admin`; throws naming what is not a scope.
    public static func parseList(_ text: String) throws(TernError) -> Set<Scope> {
        var scopes = Set<Scope>()
        for part in text.split(separator: ",") {
            let name = part.trimmingCharacters(in: .whitespaces)
            guard let scope = Scope(rawValue: name) else {
                throw .invalidArgument("'\(name)' is not a scope; scopes are \(Scope.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            scopes.insert(scope)
        }
        guard !scopes.isEmpty else { throw .invalidArgument("give at least one scope: \(Scope.allCases.map(\.rawValue).joined(separator: ", "))") }
        return scopes
    }
}

/// Who is calling, once a credential was verified: the name changes are audited under, what it may do, and
/// the models it may use (nil: all of them).
public struct Caller: Sendable, Equatable {
    /// `key:NAME` for an API key, `token:SUBJECT` for a bearer token.
    public var name: String
    public var scopes: Set<Scope>
    public var models: Set<String>?
    /// The caller's place among its requests in flight (`--key-concurrency`), given back when the request
    /// ends; nil when concurrency is not limited.
    public var slot: ConcurrencySlot?

    public static func == (lhs: Caller, rhs: Caller) -> Bool {
        lhs.name == rhs.name && lhs.scopes == rhs.scopes && lhs.models == rhs.models
    }

    public init(name: String, scopes: Set<Scope>, models: Set<String>? = nil) {
        self.name = name
        self.scopes = scopes
        self.models = models
    }

    public func has(_ scope: Scope) -> Bool {
        scopes.contains(scope) || (scope == .read && scopes.contains(.admin))
    }

    /// Whether the caller may use `model` (a name, or `name@alias`).
    public func mayUse(model: String) -> Bool {
        guard let models else { return true }
        let name = model.firstIndex(of: "@").map { String(model[..<$0]) } ?? model
        return models.contains(name)
    }

    /// The refusal for a model outside the caller's grants.
    public func refusal(model: String) -> TernError {
        TernError(
            .permissionDenied,
            "\(name) may not use model '\(Echo.clip(model))'; it may use: "
                + (models ?? []).sorted().joined(separator: ", "))
    }
}

/// Checks a presented credential (an API key, a bearer token). Called on every request, so it must be
/// cheap: implementations cache what they verified.
public protocol CredentialVerifier: Sendable {
    /// Whether credentials are checked now: a keyring enforces as soon as it holds a key (even a revoked
    /// one: revoking the last key must not open the server).
    var enforcing: Bool { get }

    /// The caller a credential stands for; throws `unauthenticated` for an unknown, expired, revoked or
    /// malformed one, saying which.
    func verify(_ credential: String) throws(TernError) -> Caller
}

/// The one authorization decision every front-end asks for: with no verifier the server is open (every
/// request passes with no caller); with one, a request needs a valid credential with the route's scope and,
/// for a route naming a model, a grant for that model.
public struct AccessControl: Sendable {
    public let verifier: (any CredentialVerifier)?
    /// Whether `GET /metrics` needs the `metrics` scope (else it stays open, like the health routes).
    public let protectsMetrics: Bool
    /// Requests per API key (`--key-rate-limit`); checked once the key is verified.
    public let keyLimiter: RateLimiter?
    /// Requests per client address (`--ip-rate-limit`), health routes aside; checked by each transport.
    public let addressLimiter: RateLimiter?
    /// Requests in flight per API key (`--key-concurrency`).
    public let keyConcurrency: ConcurrencyLimiter?
    /// Set on an open server reachable beyond loopback (a platform's container, `--insecure-open`): while no
    /// credential is checked, management (admin scope, `/api/v1`) is refused with this; inference is served.
    public var openManagementRefusal: TernError?

    public static let open = AccessControl(verifier: nil)

    public init(
        verifier: (any CredentialVerifier)?, protectsMetrics: Bool = false, keyLimiter: RateLimiter? = nil,
        addressLimiter: RateLimiter? = nil, keyConcurrency: ConcurrencyLimiter? = nil
    ) {
        self.keyConcurrency = keyConcurrency
        self.verifier = verifier
        self.protectsMetrics = protectsMetrics
        self.keyLimiter = keyLimiter
        self.addressLimiter = addressLimiter
    }

    /// Whether a transport must look at requests at all (credentials or address limits).
    public var checksRequests: Bool { verifier != nil || addressLimiter != nil }

    /// Refuses a request from `address` over the per-address rate (nil address: not limited).
    public func admit(address: String?) throws(TernError) {
        guard let addressLimiter, let address, let wait = addressLimiter.take(address) else { return }
        throw addressLimiter.refusal("client \(address)", wait: wait, flag: "--ip-rate-limit")
    }

    /// Whether requests need credentials now.
    public var isOn: Bool { verifier?.enforcing ?? false }

    /// Refuses management on an open server reachable beyond loopback (``openManagementRefusal``).
    public func refuseOpenManagement() throws(TernError) {
        if let openManagementRefusal, !isOn { throw openManagementRefusal }
    }

    /// The refusal for such a server, naming the way to turn management on.
    public static let managementNeedsKeys = TernError(
        .permissionDenied,
        "management is off on a server without API keys "
            + "that listens beyond loopback: create a key on the server's registry (tern keys create NAME --scopes admin --data DIR) "
            + "and call with it")

    /// The credential from the `Authorization: Bearer` header value or the `x-api-key` value. Read on every
    /// request: plain UTF-8 scanning (Foundation's trimming cost 15% of a request's CPU here).
    public static func credential(authorization: String?, apiKey: String?) -> String? {
        if let apiKey, let key = trimmed(apiKey.utf8[...]), !key.isEmpty { return String(Substring(key)) }
        guard let authorization, var rest = trimmed(authorization.utf8[...]), rest.count > 7 else { return nil }
        let scheme = Array("bearer".utf8)
        for expected in scheme {
            guard let byte = rest.first, byte | 0x20 == expected else { return nil }
            rest = rest.dropFirst()
        }
        guard rest.first == UInt8(ascii: " ") else { return nil }
        guard let token = trimmed(rest), !token.isEmpty else { return nil }
        return String(Substring(token))
    }

    /// `text` without surrounding spaces and tabs.
    private static func trimmed(_ text: Substring.UTF8View) -> Substring.UTF8View? {
        var text = text
        while let first = text.first, first == 0x20 || first == 0x09 { text = text.dropFirst() }
        while let last = text.last, last == 0x20 || last == 0x09 { text = text.dropLast() }
        return text
    }

    /// The caller, when the request may go on; nil when the server is open or the route needs no scope.
    /// - Parameters:
    ///   - scope: what the route needs; nil for open routes (health).
    ///   - model: the model the route names, if it names one.
    public func authorize(credential: String?, scope: Scope?, model: String? = nil) throws(TernError) -> Caller? {
        if scope == .admin { try refuseOpenManagement() }
        guard let verifier, let scope, verifier.enforcing else { return nil }
        guard let credential, !credential.isEmpty else {
            throw TernError(
                .unauthenticated,
                "authentication required: send an API key or a token as 'Authorization: Bearer CREDENTIAL' (or a key as 'x-api-key: KEY')")
        }
        let caller = try verifier.verify(credential)
        guard caller.has(scope) else {
            throw TernError(
                .permissionDenied,
                "\(caller.name) lacks the '\(scope.rawValue)' scope this needs (it has "
                    + "\(caller.scopes.sorted().map(\.rawValue).joined(separator: ", ")))")
        }
        if let model, !caller.mayUse(model: model) { throw caller.refusal(model: model) }
        if let keyLimiter, let wait = keyLimiter.take(caller.name) {
            throw keyLimiter.refusal(caller.name, wait: wait, flag: "--key-rate-limit")
        }
        var admitted = caller
        if let keyConcurrency { admitted.slot = try keyConcurrency.acquire(caller.name) }
        return admitted
    }
}

/// The caller of the request the current task serves, set by the front-end once it authorized it (routes
/// read it to attribute changes to the caller).
public enum CurrentCaller {
    @TaskLocal public static var value: Caller?
}

/// One route a server serves and the scope it needs (nil: open, as the health routes).
public struct RouteEntry: Sendable, Codable, Equatable {
    public var method: String
    public var path: String
    public var scope: Scope?
    /// "http" or "grpc".
    public var transport: String

    public init(method: String, path: String, scope: Scope?, transport: String = "http") {
        self.method = method
        self.path = path
        self.scope = scope
        self.transport = transport
    }
}

/// Every route registered, as registered: what `GET /api/v1/routes` answers and the access tests walk, so a
/// route added without a scope cannot exist (the HTTP front-end's `ScopedRouter` is the only way to add one).
public final class RouteTable: Sendable {
    private let entries = Mutex<[RouteEntry]>([])

    public init() {}

    public func add(_ entry: RouteEntry) { entries.withLock { $0.append(entry) } }

    public var all: [RouteEntry] { entries.withLock { $0 } }

    /// The methods of the HTTP routes whose path matches `path`, a `{name}` segment matching any one segment
    /// (`{model}:predict` any one ending in `:predict`): what a 405's `Allow` header lists.
    public func methods(for path: String) -> [String] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        // KServe v1's `NAME:VERB` (`:predict`, `:explain`) is one path segment, which its POST routes take whole:
        // such a segment is theirs alone, and they take no other.
        let verb = path.hasPrefix("/v1/") && segments.last?.contains(":") == true
        let found = all.filter { entry in
            let pattern = entry.path.split(separator: "/", omittingEmptySubsequences: false)
            guard entry.transport == "http", pattern.count == segments.count else { return false }
            if entry.path.hasPrefix("/v1/"), pattern.last?.hasPrefix("{") == true, verb != (entry.method == "POST") { return false }
            return zip(pattern, segments).allSatisfy { pattern, segment in
                guard let open = pattern.firstIndex(of: "{"), let close = pattern.lastIndex(of: "}") else { return pattern == segment }
                let prefix = pattern[..<open], suffix = pattern[pattern.index(after: close)...]
                return segment.count > prefix.count + suffix.count && segment.hasPrefix(prefix) && segment.hasSuffix(suffix)
            }
        }
        return Array(Set(found.map(\.method))).sorted()
    }
}

/// The files of a server's TLS: its certificate chain and key (PEM), and for mutual TLS the CA bundle client
/// certificates must chain to. Each transport turns them into its own configuration (TLS 1.2 at least).
public struct TLSFiles: Sendable, Equatable {
    public var certificate: String
    public var key: String
    /// With it, clients must present a certificate this CA bundle signed (mTLS).
    public var clientCA: String?

    public init(certificate: String, key: String, clientCA: String? = nil) {
        self.certificate = certificate
        self.key = key
        self.clientCA = clientCA
    }
}

/// Requests in flight per caller: a caller past its limit is refused (429) until one of its requests ends.
public final class ConcurrencyLimiter: Sendable {
    public let limit: Int
    private let inFlight = Mutex<[String: Int]>([:])

    public init(limit: Int) { self.limit = limit }

    /// A place for one more request of `name`, or the refusal.
    public func acquire(_ name: String) throws(TernError) -> ConcurrencySlot {
        let admitted = inFlight.withLock { counts -> Bool in
            let current = counts[name, default: 0]
            guard current < limit else { return false }
            counts[name] = current + 1
            return true
        }
        guard admitted else {
            var error = TernError(.rateLimited, "\(name) has \(limit) requests in flight, its limit (--key-concurrency); retry when one ends")
            error.retryAfter = .seconds(1)
            throw error
        }
        return ConcurrencySlot(limiter: self, name: name)
    }

    fileprivate func release(_ name: String) {
        inFlight.withLock { counts in
            let left = counts[name, default: 1] - 1
            if left <= 0 { counts.removeValue(forKey: name) } else { counts[name] = left }
        }
    }

    /// Requests of `name` in flight now.
    public func count(_ name: String) -> Int { inFlight.withLock { $0[name, default: 0] } }
}

/// One request's place in its caller's limit, given back once (by whichever end of the request sees it
/// end first: the transport, or the core for inference).
public final class ConcurrencySlot: Sendable {
    private let limiter: ConcurrencyLimiter
    private let name: String
    private let held = Atomic<Bool>(true)

    init(limiter: ConcurrencyLimiter, name: String) {
        self.limiter = limiter
        self.name = name
    }

    public func release() {
        if held.exchange(false, ordering: .acquiringAndReleasing) { limiter.release(name) }
    }

    deinit { release() }
}
