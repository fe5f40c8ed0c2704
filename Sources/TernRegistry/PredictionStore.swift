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

/// The prediction log in a database: in the registry's PostgreSQL database, or in an SQLite file of its own
/// (`predictions.sqlite` in the data folder: SQLite has one writer at a time, and the log's steady writes
/// must not queue the registry's changes behind them).
///
/// - `tern_prediction_blocks`: what one writer pass took of one model version, packed (``PredictionBlock``):
///   the model, version, first and last time, how many records, and how many of its first ones retention
///   removed (`pruned`).
/// - `tern_prediction_keys`: one row per record, its id (the block's id times ``PredictionBlock/capacity``
///   plus its place in the block) and its request id's key (``key(_:)``), so that a request is found without
///   reading blocks that do not hold it.
/// - `tern_feedback`: ground truth by request id (with the same key).
///
/// Records written by versions before blocks (`tern_predictions`, JSON text) are moved into blocks when the
/// store opens.
///
/// Not thread-safe on its own: one writer (``append(_:)`` and ``prune(olderThan:keepingAtMost:)``) at a
/// time; readers open their own store.
public final class PredictionStore: Sendable {
    private let connection: Mutex<RegistryDatabase>
    public let location: RegistryLocation
    private let logger: Logger
    /// Seals each block as it is written and opens it as it is read.
    private let cipher: PayloadCipher?

    private static let capacity = Int64(PredictionBlock.capacity)

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
        let sqlite = database.kind == .sqlite
        let id = sqlite ? "id INTEGER PRIMARY KEY AUTOINCREMENT" : "id BIGSERIAL PRIMARY KEY"
        do {
            if sqlite {
                // Rows are appended in batches; a power cut may lose the last ones, never corrupt the file (WAL).
                try await sql.raw("PRAGMA synchronous = NORMAL").run()
            }
            try await sql.raw(
                """
                CREATE TABLE IF NOT EXISTS tern_prediction_blocks (
                    \(unsafeRaw: id),
                    model TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    first_ms BIGINT NOT NULL,
                    last_ms BIGINT NOT NULL,
                    records INTEGER NOT NULL,
                    pruned INTEGER NOT NULL DEFAULT 0,
                    data \(unsafeRaw: database.blobType) NOT NULL)
                """
            ).run()
            try await sql.raw("CREATE INDEX IF NOT EXISTS tern_prediction_blocks_model ON tern_prediction_blocks (model, version, id)").run()
            try await sql.raw("CREATE INDEX IF NOT EXISTS tern_prediction_blocks_time ON tern_prediction_blocks (last_ms)").run()
            try await sql.raw(
                """
                CREATE TABLE IF NOT EXISTS tern_prediction_keys (
                    id \(unsafeRaw: sqlite ? "INTEGER" : "BIGINT") PRIMARY KEY,
                    key BIGINT NOT NULL)
                """
            ).run()
            try await sql.raw("CREATE INDEX IF NOT EXISTS tern_prediction_keys_key ON tern_prediction_keys (key)").run()
            // Ground truth, one row per request id (the last sent wins): a label or a value, or one per row.
            try await sql.raw(
                """
                CREATE TABLE IF NOT EXISTS tern_feedback (
                    request_id TEXT PRIMARY KEY,
                    truth TEXT NOT NULL,
                    time_ms BIGINT NOT NULL,
                    received_ms BIGINT NOT NULL,
                    key BIGINT)
                """
            ).run()
        } catch {
            await database.close()
            throw .unavailable("cannot prepare the prediction log in \(location): \(String(reflecting: error))")
        }
        let store = PredictionStore(database: database, location: location, logger: logger, cipher: cipher)
        do {
            try await store.upgrade()
        } catch {
            await database.close()
            throw error
        }
        return store
    }

    public func close() async {
        await connection.withLock { $0 }.close()
    }

    /// The key a request id is found by. Tern's own ids (`<16 hex digits>-<hex counter>`, ``RequestID/make()``)
    /// keep their order: a hash of the prefix above the counter's 40 bits, so one server's keys are appended
    /// at the end of the index (a hash of every id scattered each write over most of the index's pages, and
    /// SQLite wrote them all again at each commit). Any other id: 31 bits of its FNV-1a hash (4 bytes in
    /// the table and 4 in its index, where 8 would take 8 each). Different ids may share a key; readers
    /// compare the ids.
    static func key(_ requestID: String) -> Int64 {
        var id = requestID
        return id.withUTF8 { key(utf8: $0) }
    }

    /// The key of a request id given as its UTF-8 bytes.
    static func key(utf8 bytes: UnsafeBufferPointer<UInt8>) -> Int64 {
        if bytes.count >= 18, bytes.count <= 27, bytes[16] == UInt8(ascii: "-") {
            var prefix: UInt64 = 0
            var counter: UInt64 = 0
            var valid = true
            for (index, byte) in bytes.enumerated() where index != 16 {
                let digit: UInt64
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt64(byte - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt64(byte - UInt8(ascii: "a") + 10)
                default:
                    valid = false
                    digit = 0
                }
                if !valid { break }
                if index < 16 { prefix = prefix << 4 | digit } else { counter = counter << 4 | digit }
            }
            if valid, counter < 1 << 40 {
                return Int64(bitPattern: ((prefix &* 0x9E37_79B9_7F4A_7C15) >> 43) << 40 | counter)
            }
        }
        var hash: UInt32 = 2_166_136_261
        for byte in bytes {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        return Int64(hash & 0x7FFF_FFFF)
    }

    // MARK: Writing

    /// Appends drafts in one transaction: each one block.
    public func append(_ drafts: [PredictionDraft]) async throws(TernError) {
        let blocks = try drafts.filter { !$0.isEmpty }.map { draft throws(TernError) in try Block(draft, cipher: cipher) }
        guard !blocks.isEmpty else { return }
        try await write(blocks)
    }

    /// A packed block ready to insert.
    private struct Block {
        var model: String
        var version: Int
        var first: Int64
        var last: Int64
        var keys: [Int64]
        var data: [UInt8]

        init(_ draft: PredictionDraft, cipher: PayloadCipher?) throws(TernError) {
            (model, version, first, last) = (draft.model, draft.version, draft.first, draft.last)
            (data, keys) = try draft.block(cipher: cipher)
        }
    }

    private func write(_ blocks: [Block], removingOld: Int64? = nil) async throws(TernError) {
        let database = try await self.database
        try await run {
            try await database.sql.raw(database.kind == .sqlite ? "BEGIN IMMEDIATE" : "BEGIN").run()
            do {
                if let removingOld {
                    // Records from before blocks, moved: one replica at a time, each row once.
                    if database.kind == .postgres { try await database.sql.raw("LOCK TABLE tern_predictions IN EXCLUSIVE MODE").run() }
                    try await database.sql.raw("DELETE FROM tern_predictions WHERE id <= \(bind: removingOld)").run()
                }
                for block in blocks {
                    let row = try await database.sql.raw(
                        """
                        INSERT INTO tern_prediction_blocks (model, version, first_ms, last_ms, records, data)
                        VALUES (\(bind: block.model), \(bind: block.version), \(bind: block.first), \(bind: block.last),
                            \(bind: block.keys.count), \(bind: Data(block.data)))
                        RETURNING id
                        """
                    ).first()
                    guard let id = try row?.decode(column: "id", as: Int64.self) else { throw TernError.internalError("no block id") }
                    try await insertKeys(block.keys, block: id, database)
                }
                try await database.sql.raw("COMMIT").run()
            } catch {
                try? await database.sql.raw("ROLLBACK").run()
                throw error
            }
        }
    }

    /// The keys of a block's records. SQLite: one statement whatever their number, the keys a JSON array that
    /// SQLite reads itself (`json_each`): a statement with a placeholder per value cost more to parse than the
    /// inserts, and each statement is a hop to SQLite's thread and back. PostgreSQL: statements of 500 rows.
    private func insertKeys(_ keys: [Int64], block: Int64, _ database: RegistryDatabase) async throws {
        if let sqlite = database.sqlite {
            var list = "["
            list.reserveCapacity(keys.count * 14 + 2)
            for (index, key) in keys.enumerated() {
                if index > 0 { list += "," }
                list += String(key)
            }
            list += "]"
            try await sqlite.query(
                "INSERT INTO tern_prediction_keys (id, key) SELECT ? + key, value FROM json_each(?)",
                [.integer(Int(block * Self.capacity)), .text(list)]
            ) { _ in }
            return
        }
        for start in stride(from: 0, to: keys.count, by: 500) {
            let rows = keys[start..<min(keys.count, start + 500)].enumerated().map { offset, key -> [any SQLExpression] in
                [SQLBind(block * Self.capacity + Int64(start + offset)), SQLBind(key)]
            }
            try await database.sql.insert(into: "tern_prediction_keys").columns(["id", "key"]).rows(rows).run()
        }
    }

    /// Moves records written before blocks (the `tern_predictions` table) into blocks, 5,000 at a time, then
    /// drops that table; gives feedback from before blocks its key.
    private func upgrade() async throws(TernError) {
        let database = try await self.database
        let old: Bool = try await run {
            if database.kind == .sqlite {
                return try await database.sql.raw("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'tern_predictions'")
                    .first() != nil
            }
            return try await database.sql.raw("SELECT to_regclass('tern_predictions')::text AS name").first()?
                .decode(column: "name", as: String?.self) != nil
        }
        if old {
            var moved = 0
            while true {
                let rows = try await run {
                    try await database.sql.raw(
                        """
                        SELECT id, time_ms, request_id, model, version, protocol, latency_us, caller, trace_id, inputs, outputs
                        FROM tern_predictions ORDER BY id LIMIT 5000
                        """
                    ).all()
                }
                guard !rows.isEmpty else { break }
                var records: [(id: Int64, record: PredictionRecord)] = []
                try decoding {
                    for row in rows {
                        records.append(
                            (
                                try row.decode(column: "id", as: Int64.self),
                                PredictionRecord(
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
                            ))
                    }
                }
                let blocks = try PredictionDraft.drafts(records: records.map(\.record)).map { draft throws(TernError) in
                    try Block(draft, cipher: cipher)
                }
                try await write(blocks, removingOld: records.last!.id)
                moved += records.count
            }
            try await run { try await database.sql.raw("DROP TABLE IF EXISTS tern_predictions").run() }
            if moved > 0 { logger.info("prediction log moved into blocks", metadata: ["records": "\(moved)"]) }
        }
        try await run {
            if database.kind == .postgres {
                try await database.sql.raw("ALTER TABLE tern_feedback ADD COLUMN IF NOT EXISTS key BIGINT").run()
            } else {
                let columns = try await database.sql.raw("PRAGMA table_info(tern_feedback)").all()
                if try !columns.contains(where: { try $0.decode(column: "name", as: String.self) == "key" }) {
                    try await database.sql.raw("ALTER TABLE tern_feedback ADD COLUMN key BIGINT").run()
                }
            }
            let unkeyed = try await database.sql.raw("SELECT request_id FROM tern_feedback WHERE key IS NULL").all()
            for row in unkeyed {
                let id = try row.decode(column: "request_id", as: String.self)
                try await database.sql.raw("UPDATE tern_feedback SET key = \(bind: Self.key(id)) WHERE request_id = \(bind: id)").run()
            }
            try await database.sql.raw("CREATE INDEX IF NOT EXISTS tern_feedback_key ON tern_feedback (key)").run()
        }
    }

    // MARK: Reading

    /// A block as read: its id and its records, those retention removed from its start left out (nil).
    private struct ReadBlock {
        var id: Int64
        var records: [PredictionRecord?]
    }

    /// The blocks `filter` selects, with the records `keeping` wants (by block id and place in the block) and
    /// retention left; the others nil.
    private func blocks(
        _ filter: SQLQueryString, limit: Int, _ database: RegistryDatabase, keeping: (Int64, Int) -> Bool = { _, _ in true }
    ) async throws(TernError) -> [ReadBlock] {
        let rows = try await run {
            try await database.sql.raw("SELECT id, model, version, pruned, data FROM tern_prediction_blocks \(filter) LIMIT \(bind: limit)")
                .all()
        }
        var blocks: [ReadBlock] = []
        for row in rows {
            let (id, model, version, pruned, data) = try decoding {
                (
                    try row.decode(column: "id", as: Int64.self), try row.decode(column: "model", as: String.self),
                    try row.decode(column: "version", as: Int.self), try row.decode(column: "pruned", as: Int.self),
                    try row.decode(column: "data", as: Data.self)
                )
            }
            let records = try PredictionBlock.unpack(Array(data), model: model, version: version, cipher: cipher) { slot in
                slot >= pruned && keeping(id, slot)
            }
            blocks.append(ReadBlock(id: id, records: records))
        }
        return blocks
    }

    /// The records whose request ids hash to any of `keys`, by record id (the caller compares the ids).
    private func records(keyedBy keys: [Int64], _ database: RegistryDatabase) async throws(TernError) -> [(id: Int64, record: PredictionRecord)] {
        var ids: [Int64] = []
        for start in stride(from: 0, to: keys.count, by: 500) {
            var list = SQLQueryString("")
            for (index, key) in keys[start..<min(keys.count, start + 500)].enumerated() {
                list = list + (index == 0 ? "" : ", ") + "\(bind: key)"
            }
            let rows = try await run { try await database.sql.raw("SELECT id FROM tern_prediction_keys WHERE key IN (\(list))").all() }
            for row in rows { ids.append(try decoding { try row.decode(column: "id", as: Int64.self) }) }
        }
        return try await records(at: ids.sorted(), database)
    }

    /// The records with these ids (sorted; ids retention removed are absent): each block read once, and only
    /// these records' JSON made.
    private func records(at ids: [Int64], _ database: RegistryDatabase) async throws(TernError) -> [(id: Int64, record: PredictionRecord)] {
        var found: [(id: Int64, record: PredictionRecord)] = []
        var start = 0
        while start < ids.count {
            let block = ids[start] / Self.capacity
            var end = start
            while end < ids.count, ids[end] / Self.capacity == block { end += 1 }
            let slots = Set(ids[start..<end].map { Int($0 % Self.capacity) })
            if let read = try await blocks("WHERE id = \(bind: block)", limit: 1, database, keeping: { slots.contains($1) }).first {
                for slot in slots.sorted() where slot < read.records.count {
                    if let record = read.records[slot] { found.append((block * Self.capacity + Int64(slot), record)) }
                }
            }
            start = end
        }
        return found
    }

    /// The records of a request id, oldest first.
    public func records(requestID: String) async throws(TernError) -> [PredictionRecord] {
        let database = try await self.database
        return Array(try await records(keyedBy: [Self.key(requestID)], database).lazy.map(\.record).filter { $0.requestID == requestID }.prefix(100))
    }

    /// Records in the order they were written: of one model (all when nil), at or after `since` (ms since
    /// the epoch), before `until`, after record `afterID` (for paging), at most `limit`. Returns each with its id.
    public func records(model: String?, since: Int64?, until: Int64? = nil, afterID: Int64 = 0, limit: Int)
        async throws(TernError) -> [(id: Int64, record: PredictionRecord)]
    {
        let database = try await self.database
        var found: [(id: Int64, record: PredictionRecord)] = []
        var from = afterID / Self.capacity
        while found.count < limit {
            var filter: SQLQueryString = "WHERE id >= \(bind: from)"
            if let model { filter = filter + " AND model = \(bind: model)" }
            if let since { filter = filter + " AND last_ms >= \(bind: since)" }
            if let until { filter = filter + " AND first_ms < \(bind: until)" }
            let page = try await blocks(filter + " ORDER BY id", limit: 8, database) { block, slot in block * Self.capacity + Int64(slot) > afterID }
            for block in page {
                for (slot, record) in block.records.enumerated() {
                    guard let record, found.count < limit else { continue }
                    let id = block.id * Self.capacity + Int64(slot)
                    guard id > afterID, since.map({ record.time >= $0 }) ?? true, until.map({ record.time < $0 }) ?? true else { continue }
                    found.append((id, record))
                }
            }
            guard page.count == 8, let last = page.last else { break }
            from = last.id + 1
        }
        return found
    }

    /// The newest `limit` records of a model's version, oldest first.
    public func recent(model: String, version: Int, limit: Int) async throws(TernError) -> [PredictionRecord] {
        let database = try await self.database
        var newest: [PredictionRecord] = []
        var below = Int64.max
        while newest.count < limit {
            let page = try await blocks(
                "WHERE model = \(bind: model) AND version = \(bind: version) AND id < \(bind: below) ORDER BY id DESC", limit: 8, database)
            for block in page { newest += block.records.reversed().compactMap { $0 } }
            guard page.count == 8, let last = page.last else { break }
            below = last.id
        }
        return Array(newest.prefix(limit).reversed())
    }

    // MARK: Ground truth

    /// The model and version each of these request ids was answered by (ids the log does not know are absent).
    public func answeredBy(_ requestIDs: [String]) async throws(TernError) -> [String: (model: String, version: Int)] {
        let database = try await self.database
        let wanted = Set(requestIDs)
        var found: [String: (model: String, version: Int)] = [:]
        for (_, record) in try await records(keyedBy: Array(Set(wanted.map(Self.key))), database) where wanted.contains(record.requestID) {
            found[record.requestID] = (record.model, record.version)
        }
        return found
    }

    /// Stores feedback (replacing earlier feedback of the same request ids); returns the request ids the log
    /// does not know (their feedback is not stored).
    public func addFeedback(_ items: [FeedbackRecord]) async throws(TernError) -> [String] {
        guard !items.isEmpty else { return [] }
        let known = Set(try await answeredBy(items.map(\.requestID)).keys)
        let database = try await self.database
        try await run {
            try await database.sql.raw(database.kind == .sqlite ? "BEGIN IMMEDIATE" : "BEGIN").run()
            do {
                for item in items where known.contains(item.requestID) {
                    try await database.sql.raw(
                        """
                        INSERT INTO tern_feedback (request_id, truth, time_ms, received_ms, key)
                        VALUES (\(bind: item.requestID), \(bind: item.truth), \(bind: item.time), \(bind: item.received),
                            \(bind: Self.key(item.requestID)))
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
        }
        var unknown: [String] = []
        var seen = Set<String>()
        for item in items where !known.contains(item.requestID) && seen.insert(item.requestID).inserted {
            unknown.append(item.requestID)
        }
        return unknown
    }

    /// A model's predictions that have feedback, oldest first: each with its truth and when it came.
    public func predictionsWithFeedback(model: String, since: Int64?, limit: Int)
        async throws(TernError) -> [(record: PredictionRecord, feedback: FeedbackRecord)]
    {
        let database = try await self.database
        var filter: SQLQueryString = "WHERE b.model = \(bind: model)"
        if let since { filter = filter + " AND b.last_ms >= \(bind: since)" }
        let rows = try await run {
            try await database.sql.raw(
                """
                SELECT k.id AS record, f.request_id, f.truth, f.time_ms, f.received_ms
                FROM tern_feedback f
                JOIN tern_prediction_keys k ON k.key = f.key
                JOIN tern_prediction_blocks b ON b.id = k.id / \(unsafeRaw: String(Self.capacity))
                \(filter) ORDER BY k.id LIMIT \(bind: limit)
                """
            ).all()
        }
        let matches = try decoding {
            try rows.map { row in
                (
                    id: try row.decode(column: "record", as: Int64.self),
                    feedback: FeedbackRecord(
                        requestID: try row.decode(column: "request_id", as: String.self), truth: try row.decode(column: "truth", as: String.self),
                        time: try row.decode(column: "time_ms", as: Int64.self), received: try row.decode(column: "received_ms", as: Int64.self))
                )
            }
        }
        var found: [Int64: PredictionRecord] = [:]
        for (id, record) in try await records(at: matches.map(\.id), database) { found[id] = record }
        var joined: [(record: PredictionRecord, feedback: FeedbackRecord)] = []
        for match in matches {
            guard let record = found[match.id], record.requestID == match.feedback.requestID, since.map({ record.time >= $0 }) ?? true
            else { continue }
            joined.append((record, match.feedback))
        }
        return joined
    }

    // MARK: Retention

    /// Records in the log.
    public func count() async throws(TernError) -> Int {
        let database = try await self.database
        return try await run {
            try await database.sql.raw("SELECT COALESCE(SUM(records - pruned), 0) AS n FROM tern_prediction_blocks").first()?
                .decode(column: "n", as: Int.self) ?? 0
        }
    }

    /// Retention: deletes records older than `olderThan` (ms since the epoch; whole blocks, a block when its
    /// newest record is), then the oldest past `keepingAtMost` records (exactly: in the block at the edge,
    /// the oldest records are marked removed and their keys deleted). Returns how many went.
    @discardableResult
    public func prune(olderThan: Int64?, keepingAtMost: Int?) async throws(TernError) -> Int {
        let database = try await self.database
        return try await run {
            let before = try await self.count()
            if let olderThan {
                try await database.sql.raw("DELETE FROM tern_prediction_blocks WHERE last_ms < \(bind: olderThan)").run()
            }
            if let keepingAtMost, before > keepingAtMost {
                // The newest blocks, newest first, until they hold what is kept.
                var kept = 0
                var below = Int64.max
                search: while true {
                    let rows = try await database.sql.raw(
                        "SELECT id, records, pruned FROM tern_prediction_blocks WHERE id < \(bind: below) ORDER BY id DESC LIMIT 1000"
                    ).all()
                    for row in rows {
                        let id = try row.decode(column: "id", as: Int64.self)
                        let live = try row.decode(column: "records", as: Int.self) - (try row.decode(column: "pruned", as: Int.self))
                        if kept + live >= keepingAtMost {
                            let records = try row.decode(column: "records", as: Int.self)
                            let pruned = records - (keepingAtMost - kept)
                            try await database.sql.raw("UPDATE tern_prediction_blocks SET pruned = \(bind: pruned) WHERE id = \(bind: id)").run()
                            try await database.sql.raw(
                                "DELETE FROM tern_prediction_keys WHERE id >= \(bind: id * Self.capacity) AND id < \(bind: id * Self.capacity + Int64(pruned))"
                            ).run()
                            try await database.sql.raw("DELETE FROM tern_prediction_blocks WHERE id < \(bind: id)").run()
                            break search
                        }
                        kept += live
                        below = id
                    }
                    if rows.count < 1000 { break }
                }
            }
            // Keys of deleted blocks: those below the oldest block left (all when none is).
            let oldest = try await database.sql.raw("SELECT MIN(id) AS id FROM tern_prediction_blocks").first()?.decode(column: "id", as: Int64?.self)
            try await database.sql.raw("DELETE FROM tern_prediction_keys WHERE id < \(bind: (oldest ?? Int64.max / Self.capacity) * Self.capacity)")
                .run()
            return before - (try await self.count())
        }
    }

    /// Columns read from a row (a column of another type is a database error).
    private func decoding<T>(_ body: () throws -> T) throws(TernError) -> T {
        do {
            return try body()
        } catch {
            throw .unavailable("prediction log database error: \(String(reflecting: error))")
        }
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
