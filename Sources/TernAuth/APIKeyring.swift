import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TernCore
import TernRegistry

/// The registry's API keys as a server checks them: read before the server starts, read again every poll
/// interval (so a key created or revoked through any replica or the CLI counts everywhere within it), and
/// each verified key cached so that a request costs a dictionary lookup, not a hash.
///
/// It enforces as soon as the registry holds a key (a server started before the first key was made starts
/// checking at the next poll); revoking every key leaves it enforcing, refusing everyone.
public final class APIKeyring: CredentialVerifier, Service {
    private struct State {
        var registry: Registry?
        var keys: [Substring: StoredAPIKey] = [:]
        /// Keys verified since the keys last changed, by the whole presented key.
        var verified: [String: (caller: Caller, expiry: Date?)] = [:]
        /// When each key (by caller name) was last verified here: the console's keys page.
        var lastUse: [String: Date] = [:]
    }
    private let state = Mutex(State())
    private let holdsKeys = Atomic<Bool>(false)
    private let pollInterval: Duration
    private let logger: Logger
    /// Bounds the cache: unknown keys never enter it, but a server with very many valid keys keeps at most this many.
    private let cacheLimit = 10_000

    public init(pollInterval: Duration, logger: Logger) {
        self.pollInterval = pollInterval
        self.logger = logger
    }

    public var enforcing: Bool { holdsKeys.load(ordering: .relaxed) }

    /// Reads the registry's keys (before the server starts; a failure stops the start) and keeps reading
    /// them from there.
    public func load(from registry: Registry) async throws(TernError) {
        state.withLock { $0.registry = registry }
        install(try await registry.storedKeys())
    }

    /// Reads the keys again now (after this server created or revoked one: effective at once here).
    public func reload() async {
        guard let registry = state.withLock({ $0.registry }) else { return }
        if let keys = try? await registry.storedKeys() { install(keys) }
    }

    private func install(_ keys: [StoredAPIKey]) {
        var table: [Substring: StoredAPIKey] = [:]
        for key in keys { table[Substring(key.record.id)] = key }
        state.withLock { state in
            let changed = state.keys.count != table.count || table.contains { id, key in state.keys[id]?.record != key.record }
            state.keys = table
            if changed { state.verified = [:] }
        }
        if !keys.isEmpty, !holdsKeys.exchange(true, ordering: .relaxed) {
            logger.notice("authentication on: requests need an API key", metadata: ["keys": "\(keys.count)"])
        }
    }

    public func verify(_ credential: String) throws(TernError) -> Caller {
        let now = Date()
        let cached = state.withLock { state in
            let hit = state.verified[credential]
            if let hit { state.lastUse[hit.caller.name] = now }
            return hit
        }
        if let hit = cached {
            if let expiry = hit.expiry, expiry <= now { throw Self.expired(hit.caller.name, expiry) }
            return hit.caller
        }
        guard let (id, secret) = APIKeySecret.parse(credential) else {
            throw TernError(.unauthenticated, "the credential is not a Tern API key (tern_<id>_<secret>)")
        }
        guard let key = state.withLock({ $0.keys[id] }), key.matches(secret: secret) else {
            throw TernError(.unauthenticated, "unknown API key")
        }
        let record = key.record
        if record.revokedAt != nil { throw TernError(.unauthenticated, "API key '\(record.name)' was revoked") }
        let expiry = record.expiry
        if let expiry, expiry <= now { throw Self.expired("key:\(record.name)", expiry) }
        let caller = record.caller
        state.withLock { state in
            if state.verified.count >= cacheLimit { state.verified.removeAll(keepingCapacity: true) }
            state.verified[credential] = (caller, expiry)
            state.lastUse[caller.name] = now
        }
        return caller
    }

    /// When the key named `name` was last used on this server, if it was since the server started.
    public func lastUse(of name: String) -> Date? {
        state.withLock { $0.lastUse["key:" + name] }
    }

    private static func expired(_ name: String, _ expiry: Date) -> TernError {
        TernError(.unauthenticated, "\(name) expired at \(expiry.formatted(.iso8601))")
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: self.pollInterval)
                guard let registry = self.state.withLock({ $0.registry }) else { return }
                do {
                    self.install(try await registry.storedKeys())
                } catch {
                    // Keep the keys last read: a registry hiccup must neither open the server nor lock everyone out.
                    self.logger.warning("cannot reload API keys; keeping the last ones read", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
