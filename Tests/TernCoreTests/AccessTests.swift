import Testing

@testable import TernCore

/// A verifier with fixed keys, to isolate the decision from the registry (the keyring is tested live).
private struct FixedKeys: CredentialVerifier {
    var keys: [String: Caller]
    var enforcing: Bool { !keys.isEmpty }
    func verify(_ credential: String) throws(TernError) -> Caller {
        guard let caller = keys[credential] else { throw TernError(.unauthenticated, "unknown API key") }
        return caller
    }
}

@Suite("Access: scopes, grants and credentials")
struct AccessTests {
    let access = AccessControl(
        verifier: FixedKeys(keys: [
            "i": Caller(name: "key:i", scopes: [.infer]),
            "a": Caller(name: "key:a", scopes: [.admin]),
            "c": Caller(name: "key:c", scopes: [.infer, .read], models: ["credit"]),
        ]))

    @Test("credentials come from Bearer or x-api-key; other schemes are no credential")
    func credentials() {
        #expect(AccessControl.credential(authorization: "Bearer tern_x", apiKey: nil) == "tern_x")
        #expect(AccessControl.credential(authorization: "bearer   tern_x ", apiKey: nil) == "tern_x")
        #expect(AccessControl.credential(authorization: nil, apiKey: "tern_y") == "tern_y")
        #expect(AccessControl.credential(authorization: "Basic dTpw", apiKey: nil) == nil)
        #expect(AccessControl.credential(authorization: "Bearer ", apiKey: nil) == nil)
    }

    @Test("no credential is 401, a missing scope 403, admin reads, open routes need nothing")
    func scopes() throws {
        #expect(throws: TernError.self) { try access.authorize(credential: nil, scope: .infer) }
        do {
            _ = try access.authorize(credential: "i", scope: .read)
            Issue.record("an infer key read")
        } catch {
            #expect(error.code == .permissionDenied)
            #expect(error.message == "key:i lacks the 'read' scope this needs (it has infer)")
        }
        #expect(try access.authorize(credential: "a", scope: .read)?.name == "key:a")
        #expect(try access.authorize(credential: nil, scope: nil) == nil)
        #expect(try AccessControl.open.authorize(credential: nil, scope: .admin) == nil)
        do {
            _ = try access.authorize(credential: "nope", scope: .infer)
            Issue.record("an unknown key passed")
        } catch {
            #expect(error.code == .unauthenticated)
        }
    }

    @Test("a model grant covers its aliases and nothing else")
    func grants() throws {
        #expect(try access.authorize(credential: "c", scope: .read, model: "credit@production")?.name == "key:c")
        do {
            _ = try access.authorize(credential: "c", scope: .read, model: "other")
            Issue.record("a limited key read another model")
        } catch {
            #expect(error.code == .permissionDenied)
            #expect(error.message == "key:c may not use model 'other'; it may use: credit")
        }
    }

    @Test("scope lists parse; an unknown scope is named")
    func scopeLists() throws {
        #expect(try Scope.parseList("infer, read") == [.infer, .read])
        #expect(throws: TernError.self) { try Scope.parseList("infer,root") }
        #expect(throws: TernError.self) { try Scope.parseList("") }
    }

    @Test("a token bucket: a burst, then one request per 1/rate, each key on its own")
    func rateLimiter() {
        let limiter = RateLimiter(RateLimit(perSecond: 2, burst: 3))
        let start = ContinuousClock.now
        #expect((0..<3).allSatisfy { _ in limiter.take("a", now: start) == nil })
        #expect(limiter.take("a", now: start) == .milliseconds(500))
        #expect(limiter.take("b", now: start) == nil)
        #expect(limiter.take("a", now: start + .milliseconds(250)) == .milliseconds(250))
        #expect(limiter.take("a", now: start + .milliseconds(500)) == nil)
        #expect(limiter.take("a", now: start + .seconds(100)) == nil)  // refilled to the burst, not beyond
        #expect(limiter.take("a", now: start + .seconds(100)) == nil)
        #expect(limiter.take("a", now: start + .seconds(100)) == nil)
        #expect(limiter.take("a", now: start + .seconds(100)) != nil)
    }

    @Test("requests in flight per caller: refused past the limit, places given back once, also when dropped")
    func concurrency() throws {
        let limiter = ConcurrencyLimiter(limit: 2)
        let first = try limiter.acquire("key:a")
        var second: ConcurrencySlot? = try limiter.acquire("key:a")
        #expect(throws: TernError.self) { try limiter.acquire("key:a") }
        _ = try limiter.acquire("key:b")  // another caller, its own count (released at once: dropped)
        first.release()
        first.release()  // once only
        #expect(limiter.count("key:a") == 1)
        second = nil  // dropped without release: its place comes back
        #expect(second == nil && limiter.count("key:a") == 0)
        #expect(limiter.count("key:b") == 0)
    }
}
