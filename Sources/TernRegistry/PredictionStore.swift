import Foundation
import Logging
import SQLKit
import SQLiteKit
import Synchronization
import TernCore

/// One recorded prediction.
public struct PredictionRecord: Sendable, Equatable, Codable {
    /// Ends the protocol of an explanation's record (`v2_rest:explain`): its outputs are the attributions.
    public static let explanationSuffix = ":explain"
    /// Whether the record is an explanation's, not a prediction's (drift looks at predictions only).
    public var isExplanation: Bool { `protocol`.hasSuffix(Self.explanationSuffix) }
    /// Milliseconds since the Unix epoch, when the request was received.
    public var time: Int64
    public var requestID: String
    public var model: String
    public var version: Int
    public var `protocol`: String
    public var latencyMicroseconds: Int64
    public var caller: String?
    public var traceID: String?
    /// JSON: one object per row, keyed by feature or input name (``PredictionRecordEncoder`` in TernHTTP).
    public var inputs: String
    /// JSON: one object per row, keyed by output name.
    public var outputs: String

    public init(
        time: Int64, requestID: String, model: String, version: Int, protocol: String, latencyMicroseconds: Int64,
        caller: String? = nil, traceID: String? = nil, inputs: String, outputs: String
    ) {
        self.time = time
        self.requestID = requestID
        self.model = model
        self.version = version
        self.protocol = `protocol`
        self.latencyMicroseconds = latencyMicroseconds
        self.caller = caller
        self.traceID = traceID
        self.inputs = inputs
        self.outputs = outputs
    }
}

/// Ground truth for one request: `truth` is JSON, a label (`"1"`, `1`), a value (`0.7`), or an array of
/// either, one per row of the request.
public struct FeedbackRecord: Sendable, Equatable {
    public var requestID: String
    public var truth: String
    /// When the outcome happened (ms since the epoch; the sender's, else when it arrived).
    public var time: Int64
    /// When Tern received it.
    public var received: Int64

    public init(requestID: String, truth: String, time: Int64, received: Int64) {
        self.requestID = requestID
        self.truth = truth
        self.time = time
        self.received = received
    }
}

/// The prediction log's table, `tern_predictions`: in the registry's PostgreSQL database, or in an SQLite
/// file of its own (`predictions.sqlite` in the data folder: SQLite has one writer at a time, and the log's
/// steady writes must not queue the registry's changes behind them).
///
/// Not thread-safe on its own: one writer (``append(_:)`` and ``prune(olderThan:keepingAtMost:)``) at a
/// time; readers open their own store.
public final class PredictionStore: Sendable {
    private let connection: Mutex<RegistryDatabase>
    public let location: RegistryLocation
    private let logger: Logger
    /// Seals each record's inputs and outputs as they are written and opens them as they are read.
    private let cipher: PayloadCipher?

    private init(database: RegistryDatabase, location: RegistryLocation, logger: Logger, cipher: PayloadCipher?) {
        self.connection = Mutex(database)
        self.location = location
        self.logger = logger
        self.cipher = cipher
    }

    /// The open connection, reopened when the server dropped it (a restart, a failover, an idle timeout).
    private var database: RegistryDatabase {
        get async throws(TernError) {
            let current = connection.withLock { $0 }
            guard current.isClosed() else { return current }
            logger.warning("prediction log connection lost; reconnecting", metadata: ["database": "\(location)"])
            let reopened = try await RegistryDatabase.open(location, logger: logger)
            connection.withLock { $0 = reopened }
            return reopened
        }
    }

    public static func open(
        _ location: RegistryLocation, cipher: PayloadCipher? = nil, logger: Logger = Logger(label: "tern.predictions")
    ) async throws(TernError) -> PredictionStore {
        let database = try await RegistryDatabase.open(location, logger: logger)
        let sql = database.sql
        let id = database.kind == .sqlite ? "id INTEGER PRIMARY KEY AUTOINCREMENT" : "id BIGSERIAL PRIMARY KEY"
        do {
            if database.kind == .sqlite {
                // Rows are appended in batches; a power cut may lose the last ones, never corrupt the file (WAL).
                try await sql.raw("PRAGMA synchronous = NORMAL").run()
            }
            try await sql.raw(
                """
                CREATE TABLE IF NOT EXISTS tern_predictions (
                    \(unsafeRaw: id),
                    time_ms BIGINT NOT NULL,
                    request_id TEXT NOT NULL,
                    model TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    protocol TEXT NOT NULL,
                    latency_us BIGINT NOT NULL,
                    caller TEXT,
                    trace_id TEXT,
                    inputs TEXT NOT NULL,
                    outputs TEXT NOT NULL)
                """
            ).run()
            try await sql.raw("CREATE INDEX IF NOT EXISTS tern_predictions_request ON tern_predictions (request_id)").run()
            try await sql.raw("CREATE INDEX IF NOT EXISTS tern_predictions_model_time ON tern_predictions (model, time_ms)").run()
            // Ground truth, one row per request id (the last sent wins): a label or a value, or one per row.
            try await sql.raw(
                """
                CREATE TABLE IF NOT EXISTS tern_feedback (
                    request_id TEXT PRIMARY KEY,
                    truth TEXT NOT NULL,
                    time_ms BIGINT NOT NULL,
                    received_ms BIGINT NOT NULL)
                """
            ).run()
        } catch {
            await database.close()
            throw .unavailable("cannot prepare the prediction log in \(location): \(String(reflecting: error))")
        }
        return PredictionStore(database: database, location: location, logger: logger, cipher: cipher)
    }

    public func close() async {
        await connection.withLock { $0 }.close()
    }

    private static let columns = [
        "time_ms", "request_id", "model", "version", "protocol", "latency_us", "caller", "trace_id", "inputs", "outputs",
    ]

    /// Appends records in one transaction (in statements of at most 500 rows).
    public func append(_ records: [PredictionRecord]) async throws(TernError) {
        guard !records.isEmpty else { return }
        let records = try PayloadCipher.seal(records, with: cipher)
        let database = try await self.database
        if let sqlite = database.sqlite {
            try await run { try await self.appendSQLite(records, sqlite) }
            return
        }
        try await run {
            try await database.sql.raw("BEGIN").run()
            do {
                for start in stride(from: 0, to: records.count, by: 500) {
                    let rows = records[start..<min(records.count, start + 500)].map { record -> [any SQLExpression] in
                        [
                            SQLBind(record.time), SQLBind(record.requestID), SQLBind(record.model), SQLBind(record.version),
                            SQLBind(record.protocol), SQLBind(record.latencyMicroseconds), SQLBind(record.caller),
                            SQLBind(record.traceID), SQLBind(record.inputs), SQLBind(record.outputs),
                        ]
                    }
                    try await database.sql.insert(into: "tern_predictions").columns(Self.columns).rows(rows).run()
                }
                try await database.sql.raw("COMMIT").run()
            } catch {
                try? await database.sql.raw("ROLLBACK").run()
                throw error
            }
        }
    }

    /// SQLite's bulk append: one multi-row statement text per size (built once), values bound directly.
    /// SQLKit's builder spent more time serializing 5,000 binds than SQLite spent inserting them.
    private func appendSQLite(_ records: [PredictionRecord], _ connection: SQLiteConnection) async throws {
        try await connection.query("BEGIN", []) { _ in }
        do {
            for start in stride(from: 0, to: records.count, by: 500) {
                let chunk = records[start..<min(records.count, start + 500)]
                var binds: [SQLiteData] = []
                binds.reserveCapacity(chunk.count * 10)
                for record in chunk {
                    binds += [
                        .integer(Int(record.time)), .text(record.requestID), .text(record.model), .integer(record.version),
                        .text(record.protocol), .integer(Int(record.latencyMicroseconds)),
                        record.caller.map(SQLiteData.text) ?? .null, record.traceID.map(SQLiteData.text) ?? .null,
                        .text(record.inputs), .text(record.outputs),
                    ]
                }
                try await connection.query(Self.insertStatement(rows: chunk.count), binds) { _ in }
            }
            try await connection.query("COMMIT", []) { _ in }
        } catch {
            try? await connection.query("ROLLBACK", []) { _ in }
            throw error
        }
    }

    private static let fullInsert = insertText(rows: 500)

    private static func insertStatement(rows: Int) -> String { rows == 500 ? fullInsert : insertText(rows: rows) }

    private static func insertText(rows: Int) -> String {
        "INSERT INTO tern_predictions (" + columns.joined(separator: ", ") + ") VALUES "
            + Array(repeating: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", count: rows).joined(separator: ", ")
    }

    /// The records of a request id, oldest first.
    public func records(requestID: String) async throws(TernError) -> [PredictionRecord] {
        try await select("WHERE request_id = \(bind: requestID) ORDER BY id", limit: 100)
    }

    /// Records in the order they were written: of one model (all when nil), at or after `since` (ms since
    /// the epoch), after row `afterID` (for paging), at most `limit`. Returns each with its row id.
    public func records(model: String?, since: Int64?, until: Int64? = nil, afterID: Int64 = 0, limit: Int)
        async throws(TernError) -> [(id: Int64, record: PredictionRecord)]
    {
        var filter: SQLQueryString = "WHERE id > \(bind: afterID)"
        if let model { filter = filter + " AND model = \(bind: model)" }
        if let since { filter = filter + " AND time_ms >= \(bind: since)" }
        if let until { filter = filter + " AND time_ms < \(bind: until)" }
        return try await selectWithIDs(filter + " ORDER BY id", limit: limit)
    }

    /// The newest `limit` records of a model's version, oldest first.
    public func recent(model: String, version: Int, limit: Int) async throws(TernError) -> [PredictionRecord] {
        let newest = try await selectWithIDs(
            "WHERE model = \(bind: model) AND version = \(bind: version) ORDER BY id DESC", limit: limit)
        return newest.reversed().map(\.record)
    }

    // MARK: Ground truth

    /// Stores feedback (replacing earlier feedback of the same request ids); returns the request ids the log
    /// does not know (their feedback is not stored).
    /// The model and version each of these request ids was answered by (ids the log does not know are absent).
    public func answeredBy(_ requestIDs: [String]) async throws(TernError) -> [String: (model: String, version: Int)] {
        let database = try await self.database
        return try await run {
            var found: [String: (model: String, version: Int)] = [:]
            let ids = Array(Set(requestIDs))
            for start in stride(from: 0, to: ids.count, by: 500) {
                let chunk = ids[start..<min(ids.count, start + 500)]
                var list = SQLQueryString("")
                for (index, id) in chunk.enumerated() { list = list + (index == 0 ? "" : ", ") + "\(bind: id)" }
                let rows = try await database.sql.raw(
                    "SELECT DISTINCT request_id, model, version FROM tern_predictions WHERE request_id IN (\(list))"
                ).all()
                for row in rows {
                    found[try row.decode(column: "request_id", as: String.self)] =
                        (try row.decode(column: "model", as: String.self), try row.decode(column: "version", as: Int.self))
                }
            }
            return found
        }
    }

    public func addFeedback(_ items: [FeedbackRecord]) async throws(TernError) -> [String] {
        guard !items.isEmpty else { return [] }
        let database = try await self.database
        return try await run {
            var known = Set<String>()
            let ids = Array(Set(items.map(\.requestID)))
            for start in stride(from: 0, to: ids.count, by: 500) {
                let chunk = ids[start..<min(ids.count, start + 500)]
                var list = SQLQueryString("")
                for (index, id) in chunk.enumerated() { list = list + (index == 0 ? "" : ", ") + "\(bind: id)" }
                let rows = try await database.sql.raw("SELECT DISTINCT request_id FROM tern_predictions WHERE request_id IN (\(list))").all()
                for row in rows { known.insert(try row.decode(column: "request_id", as: String.self)) }
            }
            try await database.sql.raw(database.kind == .sqlite ? "BEGIN IMMEDIATE" : "BEGIN").run()
            do {
                for item in items where known.contains(item.requestID) {
                    try await database.sql.raw(
                        """
                        INSERT INTO tern_feedback (request_id, truth, time_ms, received_ms)
                        VALUES (\(bind: item.requestID), \(bind: item.truth), \(bind: item.time), \(bind: item.received))
                        ON CONFLICT (request_id) DO UPDATE SET truth = excluded.truth, time_ms = excluded.time_ms,
                            received_ms = excluded.received_ms
                        """
                    ).run()
                }
                try await database.sql.raw("COMMIT").run()
            } catch {
                try? await database.sql.raw("ROLLBACK").run()
                throw error
            }
            var unknown: [String] = []
            var seen = Set<String>()
            for item in items where !known.contains(item.requestID) && seen.insert(item.requestID).inserted {
                unknown.append(item.requestID)
            }
            return unknown
        }
    }

    /// A model's predictions that have feedback, oldest first: each with its truth and when it came.
    public func predictionsWithFeedback(model: String, since: Int64?, limit: Int)
        async throws(TernError) -> [(record: PredictionRecord, feedback: FeedbackRecord)]
    {
        let database = try await self.database
        var filter: SQLQueryString = "WHERE p.model = \(bind: model)"
        if let since { filter = filter + " AND p.time_ms >= \(bind: since)" }
        return try await run {
            let rows = try await database.sql.raw(
                """
                SELECT p.time_ms, p.request_id, p.model, p.version, p.protocol, p.latency_us, p.caller, p.trace_id,
                       p.inputs, p.outputs, f.truth, f.time_ms AS feedback_time, f.received_ms
                FROM tern_predictions p JOIN tern_feedback f ON f.request_id = p.request_id
                \(filter) ORDER BY p.id LIMIT \(bind: limit)
                """
            ).all()
            return try rows.map { row in
                let record = try self.record(row)
                let feedback = FeedbackRecord(
                    requestID: record.requestID, truth: try row.decode(column: "truth", as: String.self),
                    time: try row.decode(column: "feedback_time", as: Int64.self),
                    received: try row.decode(column: "received_ms", as: Int64.self))
                return (record, feedback)
            }
        }
    }

    /// Rows in the log.
    public func count() async throws(TernError) -> Int {
        let database = try await self.database
        return try await run {
            try await database.sql.raw("SELECT COUNT(*) AS n FROM tern_predictions").first()?.decode(column: "n", as: Int.self) ?? 0
        }
    }

    /// Retention: deletes records older than `olderThan` (ms since the epoch), then the oldest past
    /// `keepingAtMost` rows. Returns how many went.
    @discardableResult
    public func prune(olderThan: Int64?, keepingAtMost: Int?) async throws(TernError) -> Int {
        let database = try await self.database
        return try await run {
            var removed = 0
            if let olderThan {
                let before = try await self.countRows(database)
                try await database.sql.raw("DELETE FROM tern_predictions WHERE time_ms < \(bind: olderThan)").run()
                removed += before - (try await self.countRows(database))
            }
            if let keepingAtMost {
                let total = try await self.countRows(database)
                if total > keepingAtMost {
                    // The id of the oldest row kept: everything before it goes.
                    let cutoff = try await database.sql.raw(
                        """
                        SELECT id FROM tern_predictions ORDER BY id DESC LIMIT 1 OFFSET \(bind: keepingAtMost - 1)
                        """
                    ).first()?.decode(column: "id", as: Int64.self)
                    if let cutoff {
                        try await database.sql.raw("DELETE FROM tern_predictions WHERE id < \(bind: cutoff)").run()
                        removed += total - keepingAtMost
                    }
                }
            }
            return removed
        }
    }

    private func countRows(_ database: RegistryDatabase) async throws -> Int {
        try await database.sql.raw("SELECT COUNT(*) AS n FROM tern_predictions").first()?.decode(column: "n", as: Int.self) ?? 0
    }

    private func select(_ filter: SQLQueryString, limit: Int) async throws(TernError) -> [PredictionRecord] {
        try await selectWithIDs(filter, limit: limit).map(\.record)
    }

    private func selectWithIDs(_ filter: SQLQueryString, limit: Int) async throws(TernError) -> [(id: Int64, record: PredictionRecord)] {
        let database = try await self.database
        return try await run {
            let rows = try await database.sql.raw(
                """
                SELECT id, time_ms, request_id, model, version, protocol, latency_us, caller, trace_id, inputs, outputs
                FROM tern_predictions \(filter) LIMIT \(bind: limit)
                """
            ).all()
            return try rows.map { row in
                (id: try row.decode(column: "id", as: Int64.self), record: try self.record(row))
            }
        }
    }

    /// A record from a row holding the table's columns.
    private func record(_ row: any SQLRow) throws -> PredictionRecord {
        let record = PredictionRecord(
            time: try row.decode(column: "time_ms", as: Int64.self),
            requestID: try row.decode(column: "request_id", as: String.self),
            model: try row.decode(column: "model", as: String.self),
            version: try row.decode(column: "version", as: Int.self),
            protocol: try row.decode(column: "protocol", as: String.self),
            latencyMicroseconds: try row.decode(column: "latency_us", as: Int64.self),
            caller: try row.decode(column: "caller", as: String?.self),
            traceID: try row.decode(column: "trace_id", as: String?.self),
            inputs: try row.decode(column: "inputs", as: String.self),
            outputs: try row.decode(column: "outputs", as: String.self))
        return try PayloadCipher.open(record, with: cipher)
    }

    private func run<T>(_ body: () async throws -> T) async throws(TernError) -> T {
        do {
            return try await body()
        } catch let error as TernError {
            throw error
        } catch {
            throw .unavailable("prediction log database error: \(String(reflecting: error))")
        }
    }
}
