import Crypto
import Foundation
import SQLKit
import TernBundle
import TernCore

/// An API key as the registry lists it: never its secret, which is shown once, at creation.
public struct APIKeyRecord: Codable, Sendable, Equatable {
    /// The key's public id: the part of the key between `tern_` and the secret.
    public var id: String
    public var name: String
    public var scopes: [Scope]
    /// The models the key may use; nil: all.
    public var models: [String]?
    public var createdAt: String
    public var createdBy: String
    public var expiresAt: String?
    public var revokedAt: String?

    public var caller: Caller {
        Caller(name: "key:\(name)", scopes: Set(scopes), models: models.map(Set.init))
    }

    /// When the key stops working; nil: never.
    public var expiry: Date? { expiresAt.flatMap(APIKeySecret.date) }
}

/// What a server needs to check a presented key: the record and the salted hash of its secret.
public struct StoredAPIKey: Sendable {
    public var record: APIKeyRecord
    public var salt: [UInt8]
    public var hash: [UInt8]

    /// Whether `secret` is this key's (compared in constant time).
    public func matches(secret: Substring) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(hash, authenticating: Array(secret.utf8), using: SymmetricKey(data: salt))
    }
}

/// The form of keys: `tern_<id: 12 hex>_<secret: 64 hex>`. Only HMAC-SHA256(salt, secret) is stored; the secret
/// is 256 random bits, so a fast hash is enough (there is nothing to guess, unlike a password).
public enum APIKeySecret {
    public static let prefix = "tern_"

    /// Splits a presented key into its id and secret; nil when it is not of Tern's form.
    public static func parse(_ key: String) -> (id: Substring, secret: Substring)? {
        guard key.hasPrefix(prefix) else { return nil }
        let rest = key.dropFirst(prefix.count)
        guard let separator = rest.firstIndex(of: "_") else { return nil }
        let id = rest[..<separator], secret = rest[rest.index(after: separator)...]
        guard id.count == 12, secret.count == 64, id.allSatisfy(\.isHexDigit), secret.allSatisfy(\.isHexDigit) else { return nil }
        return (id, secret)
    }

    static func randomHex(bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    static func bytes(hex: String) -> [UInt8] {
        var result: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) {
            result.append(UInt8(hex[index..<next], radix: 16) ?? 0)
            index = next
        }
        return result
    }

    static func date(_ text: String) -> Date? {
        try? Date(
            text,
            strategy: .iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: true)
                .timeSeparator(.colon).timeZone(separator: .omitted))
    }

    /// When a key given `expires` stops working: an age from now (`90d`, `12h`, `30m`) or an RFC 3339 time.
    public static func expiry(_ text: String, now: Date = Date()) throws(TernError) -> Date {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let unit = trimmed.last, let seconds = ["m": 60.0, "h": 3600, "d": 86400][String(unit)],
            let count = Int(trimmed.dropLast()), count > 0, count <= 36_500 * 24 * 60
        {
            return now.addingTimeInterval(Double(count) * seconds)
        }
        if let date = try? Date.ISO8601FormatStyle().parse(trimmed) { return date }
        throw .invalidArgument("expiry '\(Echo.clip(text))' is not an age (90d, 12h, 30m) or an RFC 3339 time (2027-01-31T00:00:00Z)")
    }

    /// Key names are shown in logs and the audit trail: 1-64 letters, digits, '-', '_', '.'.
    public static func checkName(_ name: String) throws(TernError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        guard !name.isEmpty, name.count <= 64, name.allSatisfy(allowed.contains) else {
            throw .invalidArgument("key name '\(Echo.clip(name))' must be 1-64 letters, digits, '-', '_' or '.'")
        }
    }
}

extension Registry {
    /// Creates a key and returns it with its secret, which is stored nowhere: the caller shows it once.
    /// Audited as `key-create` (model "*") with the key's name, scopes, models and expiry.
    /// - Parameter given: a key made elsewhere, of Tern's form (`tern_<12 hex>_<64 hex>`), to store instead of
    ///   a new one: a deployment's Secret (Helm generates it) becomes the first admin key of every replica.
    public func createKey(
        name: String, scopes: Set<Scope>, models: [String]?, expiresAt: Date?, actor: String, given: String? = nil
    ) async throws(TernError) -> (record: APIKeyRecord, key: String) {
        try APIKeySecret.checkName(name)
        guard !scopes.isEmpty else { throw .invalidArgument("a key needs at least one scope") }
        if let models {
            guard !models.isEmpty else { throw .invalidArgument("--models names no model; leave it out for all models") }
            for model in models { try BundleManifest.checkName(model) }
        }
        if let expiresAt, expiresAt <= Date() { throw .invalidArgument("the key's expiry is in the past") }
        var parts = (id: APIKeySecret.randomHex(bytes: 6), secret: APIKeySecret.randomHex(bytes: 32))
        if let given {
            guard let parsed = APIKeySecret.parse(given.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw .invalidArgument("the given key is not of Tern's form tern_<12 hex digits>_<64 hex digits>")
            }
            parts = (String(parsed.id), String(parsed.secret))
        }
        let (id, secret) = parts
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255) }
        let hash = APIKeySecret.hex(HMAC<SHA256>.authenticationCode(for: Array(secret.utf8), using: SymmetricKey(data: salt)))
        let record = APIKeyRecord(
            id: id, name: name, scopes: scopes.sorted(), models: models?.sorted(), createdAt: BundleManifest.timestamp(),
            createdBy: actor, expiresAt: expiresAt.map { BundleManifest.timestamp($0) }, revokedAt: nil)
        let detail = Self.keyDetail(record)
        try await write {
            let taken = try await self.sql.raw("SELECT revoked_at FROM tern_api_keys WHERE name = \(bind: name)").first()
            if taken != nil {
                throw TernError.conflict("a key named '\(name)' exists (revoked keys keep their names, for the record); choose another name")
            }
            try await self.sql.raw(
                """
                INSERT INTO tern_api_keys (id, name, salt, hash, scopes, models, created_at, created_by, expires_at, revoked_at)
                VALUES (\(bind: id), \(bind: name), \(bind: APIKeySecret.hex(salt)), \(bind: hash),
                        \(bind: record.scopes.map(\.rawValue).joined(separator: ",")), \(bind: record.models?.joined(separator: ",")),
                        \(bind: record.createdAt), \(bind: actor), \(bind: record.expiresAt), \(bind: nil as String?))
                """
            ).run()
            try await self.appendAudit(actor: actor, action: "key-create", model: "*", version: nil, before: nil, after: detail)
        }
        return (record, APIKeySecret.prefix + id + "_" + secret)
    }

    /// Revokes a key by name: every server refuses it within its poll interval (the server that revoked it, at
    /// once). Audited as `key-revoke`. The last active key with the admin scope is revoked only with `force`:
    /// without it nobody could manage the registry over the API again.
    public func revokeKey(name: String, actor: String, force: Bool = false) async throws(TernError) -> APIKeyRecord {
        try await write {
            let all = try await self.storedKeys(name: nil).map(\.record)
            guard var key = all.first(where: { $0.name == name }) else {
                throw TernError.notFound("no key named '\(Echo.clip(name))'")
            }
            if key.revokedAt != nil { return key }
            let now = Date()
            func activeAdmin(_ record: APIKeyRecord) -> Bool {
                record.revokedAt == nil && record.scopes.contains(.admin) && !(record.expiry.map { $0 <= now } ?? false)
            }
            if !force, activeAdmin(key), !all.contains(where: { $0.name != name && activeAdmin($0) }) {
                throw TernError.conflict(
                    "'\(name)' is the last active key with the admin scope: revoking it leaves nobody able to "
                        + "manage this registry over the API; create another admin key first, or force it (tern keys revoke --force, "
                        + "API: ?force=true)")
            }
            key.revokedAt = BundleManifest.timestamp()
            try await self.sql.raw("UPDATE tern_api_keys SET revoked_at = \(bind: key.revokedAt) WHERE name = \(bind: name)").run()
            try await self.appendAudit(
                actor: actor, action: "key-revoke", model: "*", version: nil,
                before: Self.keyDetail(key), after: nil)
            return key
        }
    }

    /// Every key, revoked and expired ones too, oldest first.
    public func keys() async throws(TernError) -> [APIKeyRecord] {
        try await run { try await self.storedKeys(name: nil).map(\.record) }
    }

    /// Every key with what checking it needs (for a server's keyring).
    public func storedKeys() async throws(TernError) -> [StoredAPIKey] {
        try await run { try await self.storedKeys(name: nil) }
    }

    private func storedKeys(name: String?) async throws -> [StoredAPIKey] {
        let filter: SQLQueryString = name.map { "WHERE name = \(bind: $0)" } ?? ""
        return try await sql.raw(
            """
            SELECT id, name, salt, hash, scopes, models, created_at, created_by, expires_at, revoked_at
            FROM tern_api_keys \(filter) ORDER BY created_at, name
            """
        ).all().map { row in
            let models = try row.decode(column: "models", as: String?.self)
            let record = APIKeyRecord(
                id: try row.decode(column: "id", as: String.self), name: try row.decode(column: "name", as: String.self),
                scopes: try row.decode(column: "scopes", as: String.self).split(separator: ",").compactMap { Scope(rawValue: String($0)) },
                models: models.map { $0.split(separator: ",").map(String.init) },
                createdAt: try row.decode(column: "created_at", as: String.self),
                createdBy: try row.decode(column: "created_by", as: String.self),
                expiresAt: try row.decode(column: "expires_at", as: String?.self),
                revokedAt: try row.decode(column: "revoked_at", as: String?.self))
            return StoredAPIKey(
                record: record, salt: APIKeySecret.bytes(hex: try row.decode(column: "salt", as: String.self)),
                hash: APIKeySecret.bytes(hex: try row.decode(column: "hash", as: String.self)))
        }
    }

    private static func keyDetail(_ key: APIKeyRecord) -> String {
        var object: [String: Any] = ["name": key.name, "id": key.id, "scopes": key.scopes.map(\.rawValue)]
        if let models = key.models { object["models"] = models }
        if let expires = key.expiresAt { object["expires_at"] = expires }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
