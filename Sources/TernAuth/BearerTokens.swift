import AsyncHTTPClient
import Foundation
import JWTKit
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import TernCore

/// What a server accepts as bearer tokens: JWTs from one identity provider, checked against its published
/// keys (a JWKS), its issuer, an audience, expiry and not-before.
public struct TokenPolicy: Sendable {
    /// The `iss` tokens must carry; with no `jwks`, also where the keys are found (OpenID Connect discovery:
    /// `ISSUER/.well-known/openid-configuration` names the `jwks_uri`).
    public var issuer: String?
    /// A JWKS file, or an http(s) URL serving one.
    public var jwks: String?
    /// The `aud` tokens must carry (a string, or one of an array's).
    public var audience: String
    /// The claim holding Tern scopes: a space-separated string (OAuth's `scope`) or an array (`scp`, `roles`).
    /// Values name a scope (`infer`) or a namespaced one (`tern:infer`, `tern.infer`); others are ignored.
    public var scopesClaim = "scope"
    /// The claim limiting the models a token may use (an array, or a space- or comma-separated string);
    /// absent: every model.
    public var modelsClaim = "tern_models"
    /// How far the server's clock may disagree with the issuer's for `exp` and `nbf`.
    public var clockSkew: Duration = .seconds(60)
    /// How often the keys are read again (an unknown key id asks for a read at once, at most every 30 s).
    public var refreshInterval: Duration = .seconds(600)

    public init(issuer: String?, jwks: String?, audience: String) {
        self.issuer = issuer
        self.jwks = jwks
        self.audience = audience
    }

    /// Where the keys are read from, for messages.
    public var keySource: String { jwks ?? "\(issuer ?? "")/.well-known/openid-configuration" }
}

/// Verifies JWT bearer tokens against an issuer's keys. The keys are read (file, URL or discovery) before
/// the server starts and every refresh interval; jwt-kit turns each JWK into a verifier once, so a request
/// checks a signature synchronously, and a token verified once is cached until it expires.
public final class BearerTokens: CredentialVerifier, Service {
    /// One key of the issuer's JWKS, ready to check signatures.
    package struct SigningKey: Sendable {
        var id: String?
        /// `RS256`, `ES256`, `EdDSA`...: the only `alg` a token signed with this key may name.
        var algorithm: String
        var verifier: any JWTAlgorithm
    }

    private struct State {
        var keys: [SigningKey] = []
        var verified: [String: (caller: Caller, expiry: Date)] = [:]
        var readAt: Date?
        var lastUrgentRead: Date = .distantPast
    }

    package let policy: TokenPolicy
    private let state = Mutex(State())
    private let logger: Logger
    private let urgentRead: AsyncStream<Void>.Continuation
    private let urgentReads: AsyncStream<Void>
    private let cacheLimit = 10_000

    public init(policy: TokenPolicy, logger: Logger) {
        self.policy = policy
        self.logger = logger
        (urgentReads, urgentRead) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// A configured issuer always enforces.
    public var enforcing: Bool { true }

    /// Reads the keys (before the server starts; a failure stops the start, naming the source).
    public func load() async throws(TernError) {
        let keys: [SigningKey]
        do {
            keys = try await Self.signingKeys(from: try await fetchJWKS(), logger: logger)
        } catch let error as TernError {
            throw error
        } catch {
            throw TernError(.invalidArgument, "cannot read the token keys from \(policy.keySource): \(error)")
        }
        guard !keys.isEmpty else {
            throw TernError(.invalidArgument, "the JWKS at \(policy.keySource) holds no signing key Tern can use (RSA, EC P-256/384/521, Ed25519)")
        }
        install(keys)
    }

    private func install(_ keys: [SigningKey]) {
        state.withLock { state in
            let before = state.keys.map { "\($0.id ?? "") \($0.algorithm)" }
            state.keys = keys
            state.readAt = Date()
            // A key the issuer withdrew revokes every token it signed.
            if before != keys.map({ "\($0.id ?? "") \($0.algorithm)" }) { state.verified = [:] }
        }
    }

    // MARK: Verifying

    public func verify(_ credential: String) throws(TernError) -> Caller {
        let now = Date()
        if let hit = state.withLock({ $0.verified[credential] }) {
            guard now < hit.expiry else { throw Self.refusal("the token expired at \(hit.expiry.formatted(.iso8601))") }
            return hit.caller
        }
        let parts = credential.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = JWTBase64.decode(parts[0]), let payloadBytes = JWTBase64.decode(parts[1]),
            let signature = JWTBase64.decode(parts[2]),
            let header = (try? JSONSerialization.jsonObject(with: Data(headerBytes))) as? [String: Any],
            let claims = (try? JSONSerialization.jsonObject(with: Data(payloadBytes))) as? [String: Any]
        else {
            throw Self.refusal("the credential is neither a Tern API key (tern_<id>_<secret>) nor a JWT")
        }
        guard let algorithm = header["alg"] as? String, algorithm != "none" else {
            throw Self.refusal("the token is unsigned ('alg' is missing or 'none')")
        }
        let key = try signingKey(id: header["kid"] as? String, algorithm: algorithm)
        let signed = credential.utf8.prefix(parts[0].count + 1 + parts[1].count)
        guard (try? key.verifier.verify(signature, signs: Array(signed))) == true else {
            throw Self.refusal("the token's signature does not verify with the issuer's key '\(key.id ?? "")'")
        }
        let (caller, expiry) = try admit(claims, now: now)
        state.withLock { state in
            if state.verified.count >= cacheLimit { state.verified.removeAll(keepingCapacity: true) }
            state.verified[credential] = (caller, expiry)
        }
        return caller
    }

    /// The key a token names; an unknown id asks for the keys to be read again (the issuer may have rotated).
    private func signingKey(id: String?, algorithm: String) throws(TernError) -> SigningKey {
        let (keys, readAt) = state.withLock { ($0.keys, $0.readAt) }
        let candidates = id.map { id in keys.filter { $0.id == id } } ?? (keys.count == 1 ? keys : [])
        guard !candidates.isEmpty else {
            if id != nil { askForKeys() }
            let known = keys.map { $0.id ?? "(no id)" }.joined(separator: ", ")
            throw Self.refusal(
                id.map {
                    "the token names key '\(Echo.clip($0))', which the issuer's keys (read "
                        + "\(readAt?.formatted(.iso8601) ?? "never")) do not hold: \(known)"
                }
                    ?? "the token names no key ('kid') and the issuer has several: \(known)")
        }
        guard let key = candidates.first(where: { $0.algorithm == algorithm }) else {
            throw Self.refusal(
                "the token says it is signed with \(Echo.clip(algorithm)); key '\(id ?? "")' signs with "
                    + candidates.map(\.algorithm).joined(separator: ", "))
        }
        return key
    }

    /// The caller the verified claims describe, and until when.
    package func admit(_ claims: [String: Any], now: Date) throws(TernError) -> (Caller, Date) {
        let skew = Double(policy.clockSkew.components.seconds)
        guard let exp = Self.seconds(claims["exp"]) else { throw Self.refusal("the token has no expiry ('exp')") }
        let expiry = Date(timeIntervalSince1970: exp + skew)
        guard now < expiry else {
            throw Self.refusal("the token expired at \(Date(timeIntervalSince1970: exp).formatted(.iso8601))")
        }
        if let nbf = Self.seconds(claims["nbf"]), now.timeIntervalSince1970 + skew < nbf {
            throw Self.refusal("the token is not valid before \(Date(timeIntervalSince1970: nbf).formatted(.iso8601))")
        }
        if let issuer = policy.issuer, (claims["iss"] as? String) != issuer {
            throw Self.refusal("the token's issuer is '\(Echo.clip(claims["iss"] as? String ?? ""))', not '\(issuer)'")
        }
        let audiences = Self.strings(claims["aud"], separators: [])
        guard audiences.contains(policy.audience) else {
            throw Self.refusal("the token is for '\(Echo.clip(audiences.joined(separator: ", ")))', not '\(policy.audience)'")
        }
        var scopes = Set<Scope>()
        for value in Self.strings(claims[policy.scopesClaim], separators: [" "]) {
            let name = value.hasPrefix("tern:") || value.hasPrefix("tern.") ? String(value.dropFirst(5)) : value
            if let scope = Scope(rawValue: name) { scopes.insert(scope) }
        }
        let models = claims[policy.modelsClaim].map { Set(Self.strings($0, separators: [" ", ","])) }
        let subject = (claims["sub"] as? String).map { Echo.clip($0) } ?? "unknown"
        return (Caller(name: "token:\(subject)", scopes: scopes, models: models), expiry)
    }

    private static func seconds(_ value: Any?) -> Double? {
        (value as? NSNumber).map(\.doubleValue)
    }

    /// A claim's strings: an array of strings, or one string split at `separators`.
    private static func strings(_ value: Any?, separators: Set<Character>) -> [String] {
        if let list = value as? [Any] { return list.compactMap { $0 as? String } }
        guard let text = value as? String else { return [] }
        guard !separators.isEmpty else { return [text] }
        return text.split(whereSeparator: { separators.contains($0) }).map(String.init)
    }

    private static func refusal(_ why: String) -> TernError {
        TernError(.unauthenticated, "bearer token refused: \(why)")
    }

    // MARK: Reading the keys

    private func askForKeys() {
        let due = state.withLock { state in
            guard Date().timeIntervalSince(state.lastUrgentRead) >= 30 else { return false }
            state.lastUrgentRead = Date()
            return true
        }
        if due { urgentRead.yield() }
    }

    public func run() async throws {
        let policy = self.policy
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [urgentReads] in
                for await _ in urgentReads { await self.reload(why: "a token named an unknown key") }
            }
            group.addTask {
                try? await cancelWhenGracefulShutdown {
                    while !Task.isCancelled {
                        try await Task.sleep(for: policy.refreshInterval)
                        await self.reload(why: "refresh")
                    }
                }
                self.urgentRead.finish()
            }
        }
    }

    private func reload(why: String) async {
        do {
            let keys = try await Self.signingKeys(from: try await fetchJWKS(), logger: logger)
            if keys.isEmpty {
                logger.warning("the issuer's JWKS holds no usable key; keeping the last ones", metadata: ["source": "\(policy.keySource)"])
            } else {
                install(keys)
            }
        } catch {
            // Keep the keys last read: an issuer hiccup must not lock everyone out.
            logger.warning(
                "cannot read the token keys; keeping the last ones",
                metadata: [
                    "source": "\(policy.keySource)", "reason": "\(why)", "error": "\(error)",
                ])
        }
    }

    /// The JWKS document: a file, a URL, or the URL the issuer's discovery document names.
    private func fetchJWKS() async throws -> Data {
        if let jwks = policy.jwks {
            guard jwks.hasPrefix("http://") || jwks.hasPrefix("https://") else {
                guard let data = FileManager.default.contents(atPath: jwks) else {
                    throw TernError(.invalidArgument, "cannot read the JWKS file \(jwks): no such readable file")
                }
                return data
            }
            return try await Self.get(jwks)
        }
        guard let issuer = policy.issuer else { throw TernError(.invalidArgument, "give --jwt-jwks or --jwt-issuer") }
        let base = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        let discovery = try await Self.get(base + "/.well-known/openid-configuration")
        guard let document = (try? JSONSerialization.jsonObject(with: discovery)) as? [String: Any],
            let uri = document["jwks_uri"] as? String
        else { throw TernError(.invalidArgument, "\(base)/.well-known/openid-configuration names no jwks_uri") }
        return try await Self.get(uri)
    }

    private static func get(_ url: String) async throws -> Data {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
        guard response.status == .ok else { throw TernError(.invalidArgument, "GET \(url) answered \(response.status)") }
        return Data(buffer: try await response.body.collect(upTo: 1 << 20))
    }

    /// The signing keys of a JWKS document, each turned into a verifier by jwt-kit. Keys for encryption
    /// (`use: enc`) and of kinds jwt-kit cannot verify with are skipped, with a log line.
    package static func signingKeys(from document: Data, logger: Logger) async throws -> [SigningKey] {
        guard let object = try JSONSerialization.jsonObject(with: document) as? [String: Any],
            let entries = object["keys"] as? [[String: Any]]
        else { throw TernError(.invalidArgument, "not a JWKS: a JSON object with a 'keys' array") }
        var keys: [SigningKey] = []
        for (index, entry) in entries.enumerated() where (entry["use"] as? String ?? "sig") == "sig" {
            let id = entry["kid"] as? String
            do {
                var jwk = try JSONDecoder().decode(JWK.self, from: JSONSerialization.data(withJSONObject: entry))
                guard let algorithm = jwk.algorithm?.rawValue ?? Self.defaultAlgorithm(jwk) else {
                    logger.warning("skipping a token key of an unknown kind", metadata: ["kid": "\(id ?? "#\(index)")"])
                    continue
                }
                let handle = JWKIdentifier(string: id ?? "#\(index)")
                jwk.keyIdentifier = handle
                let collection = JWTKeyCollection()
                try await collection.add(jwk: jwk)
                let verifier = try await collection.getKey(for: handle, alg: algorithm)
                keys.append(SigningKey(id: id, algorithm: verifier.name, verifier: verifier))
            } catch {
                logger.warning("skipping a token key jwt-kit cannot use", metadata: ["kid": "\(id ?? "#\(index)")", "error": "\(error)"])
            }
        }
        return keys
    }

    /// The algorithm a JWK without `alg` signs with, from its kind and curve.
    private static func defaultAlgorithm(_ jwk: JWK) -> String? {
        switch (jwk.keyType, jwk.curve?.rawValue) {
        case (.rsa, _): "RS256"
        case (.ecdsa, "P-256"): "ES256"
        case (.ecdsa, "P-384"): "ES384"
        case (.ecdsa, "P-521"): "ES512"
        case (.octetKeyPair, "Ed25519"): "EdDSA"
        default: nil
        }
    }
}

/// API keys and bearer tokens together: a credential shaped like a Tern API key goes to the keyring,
/// anything else to the token verifier.
public struct Credentials: CredentialVerifier {
    package let keys: APIKeyring?
    package let tokens: BearerTokens?

    public var enforcing: Bool { tokens != nil || keys?.enforcing == true }

    public init(keys: APIKeyring?, tokens: BearerTokens?) {
        self.keys = keys
        self.tokens = tokens
    }

    public func verify(_ credential: String) throws(TernError) -> Caller {
        if credential.hasPrefix("tern_") || tokens == nil {
            guard let keys else { throw TernError(.unauthenticated, "this server accepts bearer tokens (JWTs), not API keys") }
            return try keys.verify(credential)
        }
        return try tokens!.verify(credential)
    }
}

/// Base64url without padding, as JWTs carry it.
package enum JWTBase64 {
    package static func decode(_ text: Substring.UTF8View.SubSequence) -> [UInt8]? {
        var base64 = String(decoding: text, as: UTF8.self)
            .replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.utf8.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64).map { [UInt8]($0) }
    }
}
