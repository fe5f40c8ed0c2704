import CGzip
import Foundation
import TernCore

/// What a batch run does: its input, output, model and options.
public struct BatchOptions: Sendable {
    public var input: String
    public var output: String
    public var format: OutputFormat = .csv
    public var rejectsPath: String?
    public var idColumn: String?
    public var passthrough: [String] = []
    public var outputs: [String] = []
    public var labels: [String]?
    public var featureNames: [String]?
    /// The I-th (0-based) of N byte ranges of the input.
    public var shard: (index: Int, count: Int) = (0, 1)
    public var rowsPerChunk = 8192
    /// Chunks scored at once (parsing and running): the cores.
    public var parallelChunks = ProcessInfo.processInfo.activeProcessorCount
    public var maxRejects: Int?
    public var resume = false
    public var force = false
    /// Identifies the model: a resumed run must score with the same one.
    public var modelFingerprint = ""
    /// Adds each row's `explainTop` largest attributions (`--explain N`).
    public var explainer: ChunkScorer.RowExplainer?
    public var explainTop = 0
    /// Where parsing and formatting run (a server's low-priority threads); nil: Swift's tasks.
    public var executor: (any BlockingExecutor)?
    /// How often the output is synced and the checkpoint moved (every chunk when zero).
    public var commitInterval: Duration = .milliseconds(500)

    public init(input: String, output: String) {
        self.input = input
        self.output = output
    }

    public var rejects: String { rejectsPath ?? output + ".rejects.csv" }
    public var checkpoint: String { output + ".checkpoint" }
}

/// How far a run got, written beside the output after every chunk committed (output and rejects synced
/// first), so an interrupted run continues where it stopped and writes the same bytes.
public struct BatchCheckpoint: Codable, Equatable, Sendable {
    public var input: String
    public var inputSize: Int64
    public var inputModified: Double
    public var settings: String
    public var offset: Int64
    public var end: Int64
    public var nextLine: Int
    public var outputBytes: Int64
    public var rejectBytes: Int64
    public var rows: Int
    public var rejected: Int
}

public struct BatchSummary: Sendable {
    public var rows: Int
    public var rejected: Int
    public var seconds: Double
    public var resumedFrom: Int
}

/// Scores a CSV file with a model into CSV or JSON Lines: chunks of lines parsed and run on all cores,
/// written in input order, committed chunk by chunk with a checkpoint; bad lines go to a rejects file.
public final class BatchJob: @unchecked Sendable {
    let options: BatchOptions
    let model: any InferenceModel
    let progress: (@Sendable (BatchProgress) -> Void)?

    public init(options: BatchOptions, model: any InferenceModel, progress: (@Sendable (BatchProgress) -> Void)? = nil) {
        self.options = options
        self.model = model
        self.progress = progress
    }

    /// What the checks before a run found: the plan, the shard's byte range, and where to start.
    struct Prepared {
        var plan: BatchPlan
        var size: Int64
        var modified: Double
        var start: Int64
        var end: Int64
        var settings: String
        var checkpoint: BatchCheckpoint?
        var gzipInput: Bool
    }

    /// Everything that can fail before a byte is written: the input (readable, a header that fits the
    /// model), the output (its folder writable, not a finished output unless --force, the checkpoint of
    /// the same input and options for --resume).
    func prepare() throws -> Prepared {
        let fm = FileManager.default
        let input = options.input
        guard fm.isReadableFile(atPath: input),
            let attributes = try? fm.attributesOfItem(atPath: input),
            (attributes[.type] as? FileAttributeType) == .typeRegular
        else {
            throw TernError.invalidArgument("cannot read the input '\(input)': no such file (or not a regular file)")
        }
        let gzipInput = ByteSource.isGzip(input)
        // A gzip input's uncompressed size is known only at its end: it is read to the end, not to a size.
        let size = gzipInput ? Int64.max : (attributes[.size] as? NSNumber)?.int64Value ?? 0
        if gzipInput, options.shard.count > 1 {
            throw TernError.invalidArgument("a gzip input cannot be split into shards (they are byte ranges of the file): decompress it first")
        }
        let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        // The header: the first line.
        let headerReader = try LineChunkReader(path: input, start: 0, end: Int64.max, firstLine: 1, rowsPerChunk: 1)
        guard let first = try headerReader.next(), first.lineCount == 1, !first.line(0).isEmpty else {
            throw TernError.invalidArgument("the input '\(input)' is empty: it needs a header line naming its columns")
        }
        let jsonLines = JSONLines.isJSONLines(input)
        // A JSON Lines input has no header line: its columns are the first object's keys, and it starts at 0.
        let header =
            jsonLines
            ? try JSONLines.header(first.line(0))
            : first.bytes.withUnsafeBufferPointer { buffer in
                var fields: [Field] = []
                CSVFields.split(buffer[first.lineRange(0)], into: &fields)
                return fields.map { CSVFields.text($0).trimmingCharacters(in: .whitespaces) }
            }
        let plan = try BatchPlan(
            signature: model.signature, featureNames: options.featureNames, header: header, idColumn: options.idColumn,
            passthrough: options.passthrough, outputs: options.outputs)
        if jsonLines, case .matrix = plan.feed, !(options.featureNames.map { Set($0).isSubset(of: header) } ?? false) {
            throw TernError.invalidArgument(
                "a JSON Lines input is matched to the model by feature name, and this model names "
                    + "none its keys (\(Echo.clip(header.joined(separator: ", ")))) give: use a bundle with feature names, or CSV with the columns in order"
            )
        }
        // The shard's byte range, aligned to line starts.
        let body = jsonLines ? 0 : first.end
        let (index, count) = options.shard
        let span = size - body
        let start = index == 0 ? body : try LineChunkReader.lineStart(path: input, atOrAfter: body + span * Int64(index) / Int64(count))
        let end = index == count - 1 ? size : try LineChunkReader.lineStart(path: input, atOrAfter: body + span * Int64(index + 1) / Int64(count))
        let settings = [
            options.format.rawValue, options.idColumn ?? "", options.passthrough.joined(separator: ","),
            options.outputs.joined(separator: ","), "\(index)/\(count)", options.modelFingerprint,
        ].joined(separator: "|")

        // Where to start: a fresh run, or where a checkpoint says an interrupted one stopped.
        var checkpoint: BatchCheckpoint?
        if fm.fileExists(atPath: options.checkpoint) {
            guard options.resume || options.force else {
                throw TernError.conflict("'\(options.output)' is an interrupted run's output: continue it with --resume, or start over with --force")
            }
            if options.resume {
                guard let data = fm.contents(atPath: options.checkpoint),
                    let read = try? JSONDecoder().decode(BatchCheckpoint.self, from: data)
                else {
                    throw TernError.invalidArgument("cannot read the checkpoint '\(options.checkpoint)'; start over with --force")
                }
                guard read.input == input, read.inputSize == size, read.inputModified == modified, read.settings == settings,
                    read.end == end
                else {
                    throw TernError.conflict(
                        "the checkpoint '\(options.checkpoint)' is of another input, model or options; "
                            + "resume with the same ones, or start over with --force")
                }
                checkpoint = read
            }
        } else if fm.fileExists(atPath: options.output), !options.force {
            throw TernError.conflict("'\(options.output)' exists: a finished output is not overwritten without --force")
        } else if options.resume {
            throw TernError.invalidArgument("nothing to resume: '\(options.checkpoint)' does not exist")
        }

        let folder = URL(fileURLWithPath: options.output).deletingLastPathComponent().path
        guard fm.isWritableFile(atPath: folder) else {
            throw TernError.invalidArgument("cannot write the output '\(options.output)': its folder does not exist or is not writable")
        }
        return Prepared(
            plan: plan, size: size, modified: modified, start: start, end: end, settings: settings,
            checkpoint: checkpoint, gzipInput: gzipInput)
    }

    /// The output's column names: the plan's, then the explanation's pairs.
    private func header(_ plan: BatchPlan, _ widths: [Int]) -> [String] {
        plan.outputHeader(widths: widths, labels: options.labels)
            + (options.explainer == nil ? [] : (1...max(1, options.explainTop)).flatMap { ["why_\($0)", "why_\($0)_value"] })
    }

    /// Checks what can be checked before running (the server answers a job's request with these errors).
    public func check() throws { _ = try prepare() }

    public func run() async throws -> BatchSummary {
        let started = ContinuousClock.now
        let fm = FileManager.default
        let input = options.input
        let prepared = try prepare()
        let (plan, size, modified, start, end, settings, checkpoint, gzipInput) = (
            prepared.plan, prepared.size, prepared.modified, prepared.start, prepared.end, prepared.settings,
            prepared.checkpoint, prepared.gzipInput
        )
        let index = options.shard.index
        let output = try OutputFile(path: options.output, keeping: checkpoint?.outputBytes)
        let gzipOutput = ByteSource.isGzip(options.output)
        let rejects = try OutputFile(path: options.rejects, keeping: checkpoint?.rejectBytes)
        var state =
            checkpoint
            ?? BatchCheckpoint(
                input: input, inputSize: size, inputModified: modified, settings: settings, offset: start, end: end,
                nextLine: index == 0 ? (start == 0 ? 1 : 2) : -1, outputBytes: 0, rejectBytes: 0, rows: 0, rejected: 0)
        if state.nextLine < 0 { state.nextLine = try Self.lineNumber(path: input, at: start) }
        let resumedFrom = checkpoint?.rows ?? 0
        if state.outputBytes == 0, options.format == .csv {
            // The header needs the outputs' widths: known from the signature, else from a one-row run below.
            output.pendingHeader = true
        }
        if checkpoint == nil {
            try rejects.append(Array("line,reason,text\n".utf8))
            // Saved before any row: a run killed at any point after this resumes.
            state.rejectBytes = rejects.size
            try Self.save(state, to: options.checkpoint)
        }

        let scorer = {
            var scorer = ChunkScorer(
                plan: plan, model: model, format: options.format, labels: options.labels, gzip: gzipOutput, executor: options.executor)
            scorer.explainer = options.explainer
            scorer.explainTop = options.explainTop
            scorer.jsonLines = JSONLines.isJSONLines(input)
            return scorer
        }()
        let reader = try LineChunkReader(path: input, start: state.offset, end: end, firstLine: state.nextLine, rowsPerChunk: options.rowsPerChunk)
        var lastReport = ContinuousClock.now
        var lastCommit = ContinuousClock.now
        try await withThrowingTaskGroup(of: ScoredChunk.self) { group in
            var inFlight = 0
            var waiting: [Int: ScoredChunk] = [:]
            var nextIndex = 0
            func commit(_ scored: ScoredChunk) throws {
                if output.pendingHeader {
                    let widths = scored.widths ?? plan.outputs.map { $0.shape.count == 2 ? max(1, $0.shape[1]) : 1 }
                    let header = Array(
                        (self.header(plan, widths).map {
                            String(decoding: ChunkScorer.csvQuoted($0), as: UTF8.self)
                        }.joined(separator: ",") + "\n").utf8)
                    try output.append(gzipOutput ? try Gzip.member(header) : header)
                    output.pendingHeader = false
                }
                try output.append(scored.output)
                try rejects.append(scored.rejects)
                state.rows += scored.rows
                state.rejected += scored.rejected
                state.offset = scored.end
                state.nextLine = scored.nextLine
                if let limit = options.maxRejects, state.rejected > limit {
                    throw TernError.invalidArgument(
                        "more than \(limit) rejected lines (--max-rejects): stopped at line \(scored.nextLine - 1); see \(options.rejects)")
                }
                // Committed (synced, then the checkpoint moved) at most every `commitInterval`: a resumed run
                // cuts the files back to the last commit, so what was written after it is written again.
                let now = ContinuousClock.now
                if now - lastCommit >= options.commitInterval {
                    lastCommit = now
                    try output.sync()
                    try rejects.sync()
                    state.outputBytes = output.size
                    state.rejectBytes = rejects.size
                    try Self.save(state, to: options.checkpoint)
                }
                if let progress, now - lastReport >= .milliseconds(200) {
                    lastReport = now
                    progress(
                        BatchProgress(
                            rows: state.rows, rejected: state.rejected, bytesDone: state.offset - start,
                            bytesTotal: gzipInput ? 0 : end - start, elapsed: started.duration(to: now)))
                }
            }
            func collect() async throws {
                guard let scored = try await group.next() else { return }
                inFlight -= 1
                waiting[scored.index] = scored
                while let ready = waiting.removeValue(forKey: nextIndex) {
                    try commit(ready)
                    nextIndex += 1
                }
            }
            while let chunk = try reader.next() {
                // A cancelled run (a server job deleted) stops between chunks; its checkpoint stays for a resume.
                try Task.checkCancellation()
                group.addTask { try await scorer.score(chunk) }
                inFlight += 1
                if inFlight >= max(1, options.parallelChunks) + 1 { try await collect() }
            }
            while inFlight > 0 { try await collect() }
        }
        if output.pendingHeader {
            // No row at all: the header alone, the widths from the signature.
            let header = Array(
                (self.header(plan, plan.outputs.map { $0.shape.count == 2 ? max(1, $0.shape[1]) : 1 })
                    .joined(separator: ",") + "\n").utf8)
            try output.append(gzipOutput ? try Gzip.member(header) : header)
        }
        try output.sync()
        try rejects.sync()
        try? fm.removeItem(atPath: options.checkpoint)
        if state.rejected == 0 { try? fm.removeItem(atPath: options.rejects) }
        let took = started.duration(to: .now)
        let seconds = Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18
        return BatchSummary(rows: state.rows, rejected: state.rejected, seconds: seconds, resumedFrom: resumedFrom)
    }

    static func save(_ state: BatchCheckpoint, to path: String) throws {
        let data = try JSONEncoder().encode(state)
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data) else {
            throw TernError.invalidArgument("cannot write the checkpoint '\(path)'")
        }
        let fd = open(temporary, O_RDONLY)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
        guard rename(temporary, path) == 0 else { throw TernError.invalidArgument("cannot write the checkpoint '\(path)'") }
    }

    /// The 1-based number of the line that starts at byte `offset`.
    static func lineNumber(path: String, at offset: Int64) throws(TernError) -> Int {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw .invalidArgument("cannot read '\(path)'") }
        defer { try? handle.close() }
        var line = 1, read: Int64 = 0
        while read < offset {
            let want = Int(min(Int64(1 << 20), offset - read))
            guard let data = try? handle.read(upToCount: want), !data.isEmpty else { break }
            line += data.reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
            read += Int64(data.count)
        }
        return line
    }
}

/// How far a run is, for a progress bar or progress lines.
public struct BatchProgress: Sendable {
    public var rows: Int
    public var rejected: Int
    public var bytesDone: Int64
    public var bytesTotal: Int64
    public var elapsed: Duration
}

/// An output file appended to and synced, truncated on resume to what the checkpoint committed.
final class OutputFile {
    let handle: FileHandle
    let path: String
    private(set) var size: Int64
    var pendingHeader = false

    init(path: String, keeping bytes: Int64?) throws(TernError) {
        self.path = path
        let fm = FileManager.default
        if bytes == nil || !fm.fileExists(atPath: path) {
            guard fm.createFile(atPath: path, contents: nil) else { throw .invalidArgument("cannot write '\(path)'") }
        }
        guard let handle = FileHandle(forUpdatingAtPath: path) else { throw .invalidArgument("cannot write '\(path)'") }
        self.handle = handle
        do {
            let keep = UInt64(bytes ?? 0)
            try handle.truncate(atOffset: keep)
            try handle.seek(toOffset: keep)
        } catch {
            throw .invalidArgument("cannot write '\(path)': \(error)")
        }
        size = bytes ?? 0
    }

    deinit { try? handle.close() }

    func append(_ bytes: [UInt8]) throws {
        guard !bytes.isEmpty else { return }
        try handle.write(contentsOf: bytes)
        size += Int64(bytes.count)
    }

    func sync() throws { try handle.synchronize() }
}

/// Joins a sharded run's outputs in order: CSV parts keep the first one's header only.
public enum ShardMerger {
    public static func merge(parts: [String], into path: String, csv: Bool) throws {
        let temporary = path + ".merging"
        guard FileManager.default.createFile(atPath: temporary, contents: nil), let out = FileHandle(forWritingAtPath: temporary) else {
            throw TernError.invalidArgument("cannot write '\(path)'")
        }
        defer { try? out.close() }
        for (i, part) in parts.enumerated() {
            guard let handle = FileHandle(forReadingAtPath: part) else { throw TernError.invalidArgument("cannot read the part '\(part)'") }
            defer { try? handle.close() }
            var skipping = csv && i > 0
            if skipping, ByteSource.isGzip(part) {
                // A gzip part's header line is its own first member: skip that member.
                let head = try handle.read(upToCount: 1 << 16) ?? Data()
                let length = head.withUnsafeBytes { tern_gzip_first_member_length($0.bindMemory(to: UInt8.self).baseAddress, head.count) }
                guard length > 0 else { throw TernError.invalidArgument("the part '\(part)' is not a gzip file tern batch wrote") }
                try out.write(contentsOf: head[(head.startIndex + length)...])
                skipping = false
            }
            while let data = try handle.read(upToCount: 1 << 20), !data.isEmpty {
                var slice = data[...]
                if skipping {
                    guard let newline = slice.firstIndex(of: UInt8(ascii: "\n")) else { continue }
                    slice = slice[(newline + 1)...]
                    skipping = false
                }
                try out.write(contentsOf: slice)
            }
        }
        try out.synchronize()
        guard rename(temporary, path) == 0 else { throw TernError.invalidArgument("cannot write '\(path)'") }
    }
}

/// gzip members: each chunk's output compressed on its own, so the file grows and is cut back by members.
enum Gzip {
    static func member(_ bytes: [UInt8]) throws(TernError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: tern_gzip_bound(bytes.count))
        let length = bytes.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { tern_gzip_member(input.baseAddress, input.count, $0.baseAddress, $0.count, 6) }
        }
        guard length > 0 || bytes.isEmpty else { throw .internalError("gzip compression failed") }
        out.removeSubrange(length...)
        return out
    }
}
