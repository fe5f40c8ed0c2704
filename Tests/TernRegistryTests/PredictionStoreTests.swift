import Foundation
import Logging
import SQLKit
import TernCore
import Testing

@testable import TernRegistry

/// The prediction log's blocks: what is written reads back as the JSON the API shows (the same text
/// ``PredictionEntry/record`` makes), found by request id, paged, kept within retention, on both databases.
@Suite struct PredictionStoreTests {
    static let names = ["age", "income", "housing"]

    /// A credit-like entry: a [1, 3] FP32 input spread into named features, a string input, a label and
    /// probabilities.
    static func entry(_ number: Int, model: String = "credit", version: Int = 1, redact: Set<String> = [], time: Int64? = nil)
        throws -> PredictionEntry
    {
        PredictionEntry(
            time: time ?? 1_700_000_000_000 + Int64(number), requestID: "r-\(number)", model: model, version: version, protocol: "v2_rest",
            latencyMicroseconds: Int64(100 + number), caller: number % 2 == 0 ? "team-a" : nil, traceID: number % 3 == 0 ? "abc\(number)" : nil,
            inputs: [
                try Tensor(name: "x", shape: [1, 3], values: [Float(20 + number), Float(1000 * number) + 0.25, Float(number % 4)]),
                try Tensor(name: "purpose", shape: [1, 1], strings: ["car \(number)"]),
            ],
            outputs: [
                try Tensor(name: "label", shape: [1], values: [Int64(number % 2)]),
                try Tensor(name: "probabilities", shape: [1, 2], values: [Float(0.25), Float(0.75)]),
            ],
            featureNames: names, redact: redact)
    }

    static func store(_ kind: String, cipher: PayloadCipher? = nil) async throws -> (PredictionStore, RegistryLocation) {
        let location: RegistryLocation
        if kind == "sqlite" {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tern-log-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            location = .sqlite(path: folder + "/p.sqlite")
        } else {
            location = .postgres(url: try await TestDatabases.createDatabase())
        }
        return (try await PredictionStore.open(location, cipher: cipher), location)
    }

    @Test(arguments: TestDatabases.kinds) func recordsReadBackAsTheirJSON(kind: String) async throws {
        let (store, _) = try await Self.store(kind)
        let entries = try (0..<1200).map { try Self.entry($0, version: $0 < 700 ? 1 : 2) }
        try await store.append(PredictionDraft.drafts(Array(entries[..<1000])))
        try await store.append(PredictionDraft.drafts(Array(entries[1000...])))
        #expect(try await store.count() == 1200)

        let one = try await store.records(requestID: "r-42")
        #expect(one == [entries[42].record])
        #expect(one[0].inputs == #"[{"age":62.0,"income":42000.25,"housing":2.0,"purpose":"car 42"}]"#)
        #expect(try await store.records(requestID: "nobody").isEmpty)

        // Paging through everything in order, 500 at a time.
        var seen: [PredictionRecord] = []
        var after: Int64 = 0
        while true {
            let page = try await store.records(model: "credit", since: nil, until: nil, afterID: after, limit: 500)
            guard let last = page.last else { break }
            seen += page.map(\.record)
            after = last.id
        }
        #expect(seen == entries.map(\.record))
        let window = try await store.records(model: "credit", since: entries[100].time, until: entries[110].time, afterID: 0, limit: 100)
        #expect(window.map(\.record.requestID) == (100..<110).map { "r-\($0)" })
        #expect(try await store.records(model: "other", since: nil, until: nil, afterID: 0, limit: 10).isEmpty)

        let recent = try await store.recent(model: "credit", version: 1, limit: 5)
        #expect(recent == entries[695..<700].map(\.record))

        let answered = try await store.answeredBy(["r-3", "r-900", "nobody"])
        #expect(answered.count == 2 && answered["r-3"]?.version == 1 && answered["r-900"]?.version == 2)
        let unknown = try await store.addFeedback([
            FeedbackRecord(requestID: "r-3", truth: "1", time: 5, received: 6), FeedbackRecord(requestID: "nobody", truth: "0", time: 5, received: 6),
        ])
        #expect(unknown == ["nobody"])
        let joined = try await store.predictionsWithFeedback(model: "credit", since: nil, limit: 10)
        #expect(joined.count == 1 && joined[0].record == entries[3].record && joined[0].feedback.truth == "1")

        // Retention keeps exactly the newest, across blocks, then by age.
        #expect(try await store.prune(olderThan: nil, keepingAtMost: 250) == 950)
        #expect(try await store.count() == 250)
        let kept = try await store.records(model: nil, since: nil, until: nil, afterID: 0, limit: 1000)
        #expect(kept.map(\.record) == entries[950...].map(\.record))
        #expect(try await store.records(requestID: "r-949").isEmpty)
        #expect(try await store.prune(olderThan: Int64.max, keepingAtMost: nil) == 250)
        #expect(try await store.count() == 0)
        await store.close()
    }

    /// The log keeps a draft per core; the writer merges a version's drafts into one block with the predictions
    /// in the order their requests arrived (a client's requests one after another stay in order whichever core
    /// answered each), each draft's own order kept, layouts shared, other versions left as they are.
    @Test func draftsOfSeveralCoresMergeInTheOrderTheirRequestsArrived() throws {
        var entries = try (0..<300).map { try Self.entry($0) }
        // A second layout (three classes' probabilities, two rows), in both drafts.
        for number in [7, 9] {
            entries[number].inputs[0] = try Tensor(name: "x", shape: [2, 3], values: [Float](repeating: Float(number), count: 6))
            entries[number].inputs[1] = try Tensor(name: "purpose", shape: [2, 1], strings: ["a", "b"])
            entries[number].outputs = [
                try Tensor(name: "label", shape: [2], values: [Int64(0), 2]),
                try Tensor(name: "probabilities", shape: [2, 3], values: [Float(0.5), 0.25, 0.25, 0.125, 0.125, 0.75]),
            ]
        }
        var first = PredictionDraft(model: "credit", version: 1)
        var second = PredictionDraft(model: "credit", version: 1)
        var other = PredictionDraft(model: "other", version: 1)
        for entry in entries { entry.time % 3 == 0 ? second.append(entry) : first.append(entry) }
        other.append(try Self.entry(1000, model: "other"))
        let merged = PredictionDraft.merged([first, other, second])
        #expect(merged.map(\.model) == ["credit", "other"])
        #expect(merged[0].count == 300 && merged[0].first == entries[0].time && merged[0].last == entries[299].time)
        #expect(try merged[0].records() == entries.map(\.record))
        #expect(try merged[1].records() == [try Self.entry(1000, model: "other").record])
        // One layout table for the merged block: two layouts, not one per draft's.
        var reader = ByteReader(try merged[0].finish().plain)
        let (count, layouts) = (try reader.varint(), try reader.varint())
        #expect(count == 300 && layouts == 2)
        let alone = PredictionDraft.merged([first])
        #expect(try alone.map { try $0.records() } == [try first.records()])
    }

    @Test func redactedValuesNeverReachTheStore() async throws {
        let (store, location) = try await Self.store("sqlite")
        let entry = try Self.entry(7, redact: ["income", "purpose", "probabilities"])
        try await store.append(PredictionDraft.drafts([entry, try Self.entry(8)]))
        let record = try #require(try await store.records(requestID: "r-7").first)
        #expect(record == entry.record)
        #expect(record.inputs == #"[{"age":27.0,"income":"[redacted]","housing":3.0,"purpose":"[redacted]"}]"#)
        #expect(record.outputs == #"[{"label":1,"probabilities":"[redacted]"}]"#)
        await store.close()
        // The stored block, inflated: the other entry's values are there, the redacted ones are not.
        let database = try await RegistryDatabase.open(location, logger: Logger(label: "test"))
        let data = try #require(try await database.sql.raw("SELECT data FROM tern_prediction_blocks").first()?.decode(column: "data", as: Data.self))
        await database.close()
        let plain = Data(try PredictionBlock.plainBytes(Array(data), cipher: nil))
        func float(_ value: Float) -> Data { withUnsafeBytes(of: value.bitPattern.littleEndian) { Data($0) } }
        #expect(plain.range(of: Data("car 8".utf8)) != nil && plain.range(of: float(8000.25)) != nil)
        #expect(plain.range(of: Data("car 7".utf8)) == nil && plain.range(of: float(7000.25)) == nil)
    }

    @Test(arguments: TestDatabases.kinds) func sealedBlocksNeedTheKey(kind: String) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tern-key-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let keyFile = folder + "/keys"
        FileManager.default.createFile(
            atPath: keyFile, contents: Data("k1 \(Data(repeating: 7, count: 32).base64EncodedString())\n".utf8),
            attributes: [.posixPermissions: 0o600])
        let cipher = try PayloadCipher(file: keyFile)
        let (store, location) = try await Self.store(kind, cipher: cipher)
        let entry = try Self.entry(1)
        try await store.append(PredictionDraft.drafts([entry]))
        #expect(try await store.records(requestID: "r-1") == [entry.record])
        await store.close()
        let plain = try await PredictionStore.open(location)
        await #expect(throws: TernError.self) { try await plain.records(requestID: "r-1") }
        await plain.close()
    }

    /// A log written before blocks (the `tern_predictions` table) is moved into blocks when opened.
    @Test(arguments: TestDatabases.kinds) func anOldLogIsMovedIntoBlocks(kind: String) async throws {
        let (store, location) = try await Self.store(kind)
        await store.close()
        let database = try await RegistryDatabase.open(location, logger: Logger(label: "test"))
        let id = database.kind == .sqlite ? "id INTEGER PRIMARY KEY AUTOINCREMENT" : "id BIGSERIAL PRIMARY KEY"
        try await database.sql.raw(
            """
            CREATE TABLE tern_predictions (\(unsafeRaw: id), time_ms BIGINT NOT NULL, request_id TEXT NOT NULL, model TEXT NOT NULL,
                version INTEGER NOT NULL, protocol TEXT NOT NULL, latency_us BIGINT NOT NULL, caller TEXT, trace_id TEXT,
                inputs TEXT NOT NULL, outputs TEXT NOT NULL)
            """
        ).run()
        let old = try (0..<12).map { try Self.entry($0, version: $0 < 5 ? 1 : 2).record }
        for record in old {
            try await database.sql.raw(
                """
                INSERT INTO tern_predictions (time_ms, request_id, model, version, protocol, latency_us, caller, trace_id, inputs, outputs)
                VALUES (\(bind: record.time), \(bind: record.requestID), \(bind: record.model), \(bind: record.version),
                    \(bind: record.protocol), \(bind: record.latencyMicroseconds), \(bind: record.caller), \(bind: record.traceID),
                    \(bind: record.inputs), \(bind: record.outputs))
                """
            ).run()
        }
        try await database.sql.raw("INSERT INTO tern_feedback (request_id, truth, time_ms, received_ms) VALUES ('r-6', '0', 1, 2)").run()
        await database.close()

        let reopened = try await PredictionStore.open(location)
        #expect(try await reopened.records(model: nil, since: nil, until: nil, afterID: 0, limit: 100).map(\.record) == old)
        #expect(try await reopened.records(requestID: "r-6") == [old[6]])
        #expect(try await reopened.predictionsWithFeedback(model: "credit", since: nil, limit: 10).map(\.record) == [old[6]])
        let next = try Self.entry(12)
        try await reopened.append(PredictionDraft.drafts([next]))
        #expect(try await reopened.recent(model: "credit", version: 1, limit: 100) == old[..<5] + [next.record])
        await reopened.close()
    }
}
