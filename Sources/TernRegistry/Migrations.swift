import Foundation
import SQLKit
import TernBundle

/// The registry's schema, as numbered steps. A database records the steps applied in `tern_migrations`;
/// opening it applies the missing ones in one transaction. Steps are never edited once released: a
/// change is a new step.
enum Migrations {
    static func steps(blob: String) -> [(version: Int, statements: [String])] {
        [
            (
                1,
                [
                    """
                    CREATE TABLE tern_versions (
                        model TEXT NOT NULL, version BIGINT NOT NULL, state TEXT NOT NULL, sha256 TEXT NOT NULL,
                        bytes BIGINT NOT NULL, manifest TEXT NOT NULL, metrics TEXT, created_at TEXT NOT NULL,
                        created_by TEXT NOT NULL, PRIMARY KEY (model, version))
                    """,
                    """
                    CREATE TABLE tern_aliases (
                        model TEXT NOT NULL, alias TEXT NOT NULL, version BIGINT NOT NULL, updated_at TEXT NOT NULL,
                        PRIMARY KEY (model, alias), FOREIGN KEY (model, version) REFERENCES tern_versions (model, version))
                    """,
                    "CREATE TABLE tern_artifacts (sha256 TEXT PRIMARY KEY, data \(blob) NOT NULL)",
                    """
                    CREATE TABLE tern_audit (
                        seq BIGINT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
                        model TEXT NOT NULL, version BIGINT, before TEXT, after TEXT, prev_hash TEXT NOT NULL,
                        hash TEXT NOT NULL)
                    """,
                    "CREATE TABLE tern_head (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)",
                    "INSERT INTO tern_head (id, seq, hash) VALUES (1, 0, '\(AuditEntry.genesis)')",
                ]
            ),
            (
                2,
                [
                    """
                    CREATE TABLE tern_api_keys (
                        id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, salt TEXT NOT NULL, hash TEXT NOT NULL,
                        scopes TEXT NOT NULL, models TEXT, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
                        expires_at TEXT, revoked_at TEXT)
                    """
                ]
            ),
            (
                3,
                [
                    """
                    CREATE TABLE tern_jobs (
                        id TEXT PRIMARY KEY, model TEXT NOT NULL, version BIGINT, input TEXT NOT NULL, output TEXT NOT NULL,
                        options TEXT NOT NULL, schedule TEXT, state TEXT NOT NULL, rows BIGINT NOT NULL, rejected BIGINT NOT NULL,
                        error TEXT, created_by TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT)
                    """,
                    "CREATE TABLE tern_traffic (model TEXT PRIMARY KEY, policy TEXT NOT NULL, updated_at TEXT NOT NULL)",
                ]
            ),
            (
                4,
                [
                    "CREATE TABLE tern_rollouts (model TEXT PRIMARY KEY, rollout TEXT NOT NULL, updated_at TEXT NOT NULL)",
                    "CREATE TABLE tern_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL)",
                    "CREATE TABLE tern_gates (model TEXT PRIMARY KEY, gate TEXT NOT NULL, updated_at TEXT NOT NULL)",
                ]
            ),
            (
                5,
                [
                    // Each replica's numbers for a rollout's current window: the driver judges their sum.
                    """
                    CREATE TABLE tern_rollout_tallies (
                        model TEXT NOT NULL, window_key TEXT NOT NULL, replica TEXT NOT NULL, version BIGINT NOT NULL,
                        tally TEXT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (model, window_key, replica, version))
                    """
                ]
            ),
        ]
    }

    static var latest: Int { steps(blob: "").map(\.version).max()! }

    /// Applies the missing steps; concurrent openers (replicas starting together) wait for each other.
    static func apply(to database: RegistryDatabase) async throws {
        let sql = database.sql
        try await sql.raw(database.kind == .sqlite ? "BEGIN IMMEDIATE" : "BEGIN").run()
        do {
            if database.kind == .postgres {
                try await sql.raw("SELECT pg_advisory_xact_lock(7310571)").run()
            }
            try await sql.raw("CREATE TABLE IF NOT EXISTS tern_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)").run()
            let applied = Set(
                try await sql.raw("SELECT version FROM tern_migrations").all().map {
                    try $0.decode(column: "version", as: Int.self)
                })
            if let newest = applied.max(), newest > latest {
                throw RegistryError.newerSchema(newest, latest)
            }
            for step in steps(blob: database.blobType) where !applied.contains(step.version) {
                for statement in step.statements { try await sql.raw(SQLQueryString(statement)).run() }
                try await sql.raw(
                    "INSERT INTO tern_migrations (version, applied_at) VALUES (\(bind: step.version), \(bind: BundleManifest.timestamp()))"
                ).run()
            }
            try await sql.raw("COMMIT").run()
        } catch {
            try? await sql.raw("ROLLBACK").run()
            throw error
        }
    }
}

enum RegistryError: Error, CustomStringConvertible {
    case newerSchema(Int, Int)

    var description: String {
        switch self {
        case .newerSchema(let found, let known):
            "the registry's schema is at step \(found), newer than this Tern knows (\(known)): upgrade Tern"
        }
    }
}
