import Foundation
import TernCore
import TernModelFiles
import TernONNX
import TernTestSupport
import Testing

@testable import TernBatch

/// Batch scoring in process: a CSV of a fixture's golden inputs scored by the real ONNX model and compared
/// with onnxruntime's (Python) outputs; a resumed run writes the same bytes; bad lines go to the rejects file.
@Suite("Batch scoring")
struct BatchJobTests {
    static func folder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tern-batch-\(UUID())").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// The golden case's 64 rows as CSV (`id` then `f0`...`f9`), with `bad` lines of text after row 10.
    static func input(_ folder: String, bad: Int = 0) throws -> (path: String, golden: GoldenCase) {
        let golden = try #require(try Fixtures.golden("logreg").first { $0.name == "batch64" })
        let features = try #require(golden.inputs[0].tensor.values(as: Float.self))
        var text = "id," + (0..<10).map { "f\($0)" }.joined(separator: ",") + "\n"
        for row in 0..<64 {
            text += "r\(row)," + features[(row * 10)..<(row * 10 + 10)].map { "\($0)" }.joined(separator: ",") + "\n"
            if row == 10 { for index in 0..<bad { text += "bad\(index),x,y\n" } }
        }
        let path = folder + "/in.csv"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return (path, golden)
    }

    static func model() throws -> any InferenceModel {
        try ServedModel.loadONNX(
            name: "logreg", version: 1, path: Fixtures.modelPath("logreg"), config: ModelConfig(), runtime: Fixtures.runtime,
            pool: Fixtures.pool, sessionOptions: SessionOptions()
        ).model
    }

    @Test("every row's outputs equal onnxruntime's, in input order, with the id copied")
    func goldenOutputs() async throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (input, golden) = try Self.input(folder)
        var options = BatchOptions(input: input, output: folder + "/out.csv")
        options.idColumn = "id"
        options.rowsPerChunk = 7  // several chunks, scored in parallel, written in order
        let summary = try await BatchJob(options: options, model: try Self.model()).run()
        #expect(summary.rows == 64 && summary.rejected == 0)
        let lines = try String(contentsOfFile: folder + "/out.csv", encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",") }
        #expect(lines[0] == ["id", "label", "probabilities_0", "probabilities_1"])
        let labels = golden.outputs.first { $0.name == "label" }!.tensor.values(as: Int64.self)!
        let probabilities = golden.outputs.first { $0.name == "probabilities" }!.tensor.values(as: Float.self)!
        #expect(lines.count == 65)
        for row in 0..<64 {
            let cells = lines[row + 1]
            #expect(cells[0] == "r\(row)")
            #expect(Int64(cells[1]) == labels[row])
            for k in 0..<2 {
                let value = try #require(Double(cells[2 + k]))
                #expect(abs(value - Double(probabilities[row * 2 + k])) < 1e-6, "row \(row)")
            }
        }
    }

    @Test("bad lines go to the rejects file with their line numbers; the rest is scored; too many stop the run")
    func rejects() async throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (input, _) = try Self.input(folder, bad: 3)
        var options = BatchOptions(input: input, output: folder + "/out.csv")
        options.idColumn = "id"
        let summary = try await BatchJob(options: options, model: try Self.model()).run()
        #expect(summary.rows == 64 && summary.rejected == 3)
        let rejects = try String(contentsOfFile: options.rejects, encoding: .utf8)
        #expect(rejects.contains("bad0") && rejects.contains("bad2"))
        var strict = BatchOptions(input: input, output: folder + "/strict.csv")
        strict.maxRejects = 1
        await #expect(throws: (any Error).self) { _ = try await BatchJob(options: strict, model: try Self.model()).run() }
    }

    @Test("a finished run is not run again without --force, and JSON Lines carries the same numbers")
    func formats() async throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (input, golden) = try Self.input(folder)
        var options = BatchOptions(input: input, output: folder + "/out.jsonl")
        options.format = .jsonl
        options.idColumn = "id"
        _ = try await BatchJob(options: options, model: try Self.model()).run()
        let first = try String(contentsOfFile: options.output, encoding: .utf8).split(separator: "\n")[0]
        let object = try #require(try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any])
        #expect(object["id"] as? String == "r0")
        let probabilities = try #require(object["probabilities"] as? [Double])
        let expected = golden.outputs.first { $0.name == "probabilities" }!.tensor.values(as: Float.self)!
        #expect(abs(probabilities[1] - Double(expected[1])) < 1e-6)
        await #expect(throws: (any Error).self) { _ = try await BatchJob(options: options, model: try Self.model()).run() }
        options.force = true
        #expect(try await BatchJob(options: options, model: try Self.model()).run().rows == 64)
    }
}

/// Cron expressions by table (UTC).
@Suite("Cron schedules")
struct CronExpressionTests {
    static func date(_ text: String) -> Date { try! Date.ISO8601FormatStyle().parse(text) }

    @Test(arguments: [
        ("*/15 * * * *", "2026-12-07T10:45:00Z", true),
        ("*/15 * * * *", "2026-12-07T10:46:00Z", false),
        ("*/15 * * * *", "2026-12-07T10:45:30Z", false),  // five fields: second 0 only
        ("0 9 * * 1-5", "2026-12-07T09:00:00Z", true),  // a Monday
        ("0 9 * * 1-5", "2026-12-06T09:00:00Z", false),  // a Sunday
        ("0 9 * * 7", "2026-12-06T09:00:00Z", true),  // 7 is Sunday too
        ("0 0 1 * 1", "2026-12-07T00:00:00Z", true),  // both days restricted: either matches (Monday)
        ("0 0 1 * 1", "2026-12-01T00:00:00Z", true),  // ... (the 1st)
        ("0 0 1 * 1", "2026-12-02T00:00:00Z", false),
        ("30 */10 * * * *", "2026-12-07T10:20:30Z", true),  // six fields: seconds first
        ("0 0 29 2 *", "2026-03-01T00:00:00Z", false),
    ])
    func matches(_ expression: String, _ time: String, _ expected: Bool) throws {
        #expect(try CronExpression(expression).matches(Self.date(time)) == expected)
    }

    @Test(arguments: ["* * * *", "61 * * * *", "*/0 * * * *", "5-1 * * * *", "a b c d e", "* * * * * * *"])
    func refused(_ expression: String) {
        #expect(throws: TernError.self) { _ = try CronExpression(expression) }
    }
}
