import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresKit
import SQLKit
import SQLiteKit
import TernCore

/// Where the registry's tables live.
public enum RegistryLocation: Sendable, Equatable, CustomStringConvertible {
    /// An SQLite file (the embedded default: `<data>/registry.sqlite`).
    case sqlite(path: String)
    /// A PostgreSQL server, by URL: `postgres://user:password@host:5432/database`.
    case postgres(url: String)

    /// Parses `--database`: a `postgres://` / `postgresql://` URL, or `sqlite:PATH` / a file path.
    public init(_ text: String) throws(TernError) {
        if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            self = .postgres(url: text)
        } else if text.hasPrefix("sqlite:") {
            self = .sqlite(path: String(text.dropFirst("sqlite:".count)))
        } else if text.contains("://") {
            throw .invalidArgument("database '\(text)' is not supported: give a postgres:// URL or an SQLite file path")
        } else {
            self = .sqlite(path: text)
        }
    }

    public var description: String {
        switch self {
        case .sqlite(let path): return "sqlite:\(path)"
        case .postgres(let url):
            // Never print the password.
            if var components = URLComponents(string: url), components.password != nil {
                components.password = "***"
                return components.string ?? "postgres://…"
            }
            return url
        }
    }
}

/// One open connection to the registry's database, with the few dialect differences Tern needs.
///
/// The registry changes rarely, so one connection serves a process; writers in different processes are
/// serialized by the database (SQLite's write lock, a PostgreSQL row lock on `tern_head`).
final class RegistryDatabase: Sendable {
    enum Kind: Sendable { case sqlite, postgres }

    let sql: any SQLDatabase
    let kind: Kind
    /// The SQLite connection itself, for statements that skip SQLKit's query building (bulk appends).
    let sqlite: SQLiteConnection?
    private let closeConnection: @Sendable () async throws -> Void
    /// Whether the connection has gone (the server restarted, a failover, an idle timeout).
    let isClosed: @Sendable () -> Bool

    private init(
        sql: any SQLDatabase, kind: Kind, sqlite: SQLiteConnection? = nil, close: @escaping @Sendable () async throws -> Void,
        isClosed: @escaping @Sendable () -> Bool = { false }
    ) {
        self.sql = sql
        self.kind = kind
        self.sqlite = sqlite
        self.closeConnection = close
        self.isClosed = isClosed
    }

    static func open(_ location: RegistryLocation, logger: Logger) async throws(TernError) -> RegistryDatabase {
        switch location {
        case .sqlite(let path):
            let folder = (path as NSString).deletingLastPathComponent
            if !folder.isEmpty { try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
            do {
                let connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
                let database = RegistryDatabase(sql: connection.sql(queryLogLevel: nil), kind: .sqlite, sqlite: connection) {
                    try await connection.close()
                }
                // Several processes may share the file: wait for the write lock rather than fail at once.
                try await database.sql.raw("PRAGMA busy_timeout = 10000").run()
                try await database.sql.raw("PRAGMA journal_mode = WAL").run()
                try await database.sql.raw("PRAGMA foreign_keys = ON").run()
                try await database.sql.raw("PRAGMA synchronous = FULL").run()
                return database
            } catch {
                throw .unavailable("cannot open the registry database \(path): \(error)")
            }
        case .postgres(let url):
            let configuration: SQLPostgresConfiguration
            do {
                configuration = try SQLPostgresConfiguration(url: url)
            } catch {
                throw .invalidArgument("bad PostgreSQL URL \(location): \(error)")
            }
            do {
                let connection = try await PostgresConnection.connect(
                    on: MultiThreadedEventLoopGroup.singleton.any(), configuration: configuration.coreConfiguration,
                    id: 1, logger: logger)
                return RegistryDatabase(
                    sql: connection.sql(queryLogLevel: nil), kind: .postgres, close: { try await connection.close() },
                    isClosed: { connection.isClosed })
            } catch {
                throw .unavailable("cannot connect to the registry database \(location): \(String(reflecting: error))")
            }
        }
    }

    func close() async {
        // A connection the server has already dropped is gone: closing it again would wait forever.
        guard !isClosed() else { return }
        try? await closeConnection()
    }

    /// The column type for binary data.
    var blobType: String { kind == .sqlite ? "BLOB" : "BYTEA" }

    /// Runs `body` in a transaction that holds the registry's write lock, committing if it returns.
    func writeTransaction<T>(_ body: () async throws -> T) async throws -> T {
        try await sql.raw(kind == .sqlite ? "BEGIN IMMEDIATE" : "BEGIN").run()
        do {
            if kind == .postgres {
                // Every writer locks the one head row first: changes from all replicas form one sequence.
                try await sql.raw("SELECT seq FROM tern_head WHERE id = 1 FOR UPDATE").run()
            }
            let result = try await body()
            try await sql.raw("COMMIT").run()
            return result
        } catch {
            try? await sql.raw("ROLLBACK").run()
            throw error
        }
    }
}
