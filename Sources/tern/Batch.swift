import ArgumentParser
import Foundation
import TernBatch
import TernBundle
import TernCodecs
import TernCore
import TernExplain
import TernONNX

struct Batch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batch",
        abstract: "Score a file with a model: CSV in, CSV or JSON Lines out, on all cores, resumable.",
        subcommands: [BatchRun.self, BatchMerge.self],
        defaultSubcommand: BatchRun.self)
}

struct BatchRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Score a CSV file (tern batch MODEL --input IN.csv --output OUT.csv).",
        discussion: """
            MODEL is an ONNX file, a bundle (.tern), or a model in the registry: name, name@alias or name@version (the registry of --data, --database or --server, as the other commands; name alone is its production alias, else its newest version). The input is CSV with a header, or JSON Lines (.jsonl, .ndjson: an object per line, matched by feature name) (gzip-compressed when its name ends in .gz; an output named .gz is written compressed): its columns are matched to the model's feature names (a bundle's, or the ONNX file's metadata) or, for a model with an input per column, to the input names; without names, the columns go in order (leaving out --id-column and --passthrough). Other columns, such as a label, are left out when the features are named.

            The output has the --id-column, the --passthrough columns, then each model output (--outputs picks them): one column for a [rows] output, one per class or value for a [rows, k] output (named after the bundle's class labels when it has them, else OUTPUT_0, OUTPUT_1, ...). Rows keep the input's order. With --format jsonl, one JSON object per row.

            A line that does not parse (a value that is not a number, a wrong column count) goes to the rejects file (OUTPUT.rejects.csv: line number, reason, the line) and the run goes on; --max-rejects N stops it past N. A missing input or a model that does not fit the columns stops before anything is written.

            The output is committed chunk by chunk (synced, at most every half second) with a checkpoint beside it (OUTPUT.checkpoint): an interrupted run (Ctrl-C, a kill, a power cut) continues with --resume and ends with the same bytes as an uninterrupted one. A finished output is not overwritten without --force.

            --shard I/N scores the I-th of N byte ranges of the input (I from 0), aligned to line starts: N machines (a Kubernetes Indexed Job) split one file; tern batch merge joins their outputs in order.

            Examples:
              tern batch credit.tern --input customers.csv --output scores.csv --id-column customer_id
              tern batch model.onnx --input big.csv --output part-3.csv --shard 3/8
              tern batch merge part-*.csv --output scores.csv
            """)

    @Argument(help: ArgumentHelp("The ONNX model file, a bundle, or a registry's name[@alias|@version].", valueName: "model"))
    var model: String

    @OptionGroup var registry: RegistryOptions

    @Option(help: ArgumentHelp("The CSV file to score (with a header).", valueName: "file"))
    var input: String

    @Option(name: .shortAndLong, help: ArgumentHelp("Where to write the predictions.", valueName: "file"))
    var output: String

    @Option(help: ArgumentHelp("csv or jsonl (default: from the output's extension, else csv).", valueName: "format"))
    var format: String?

    @Option(help: ArgumentHelp("A column copied first into every output row (such as a customer id).", valueName: "name"))
    var idColumn: String?

    @Option(help: ArgumentHelp("Input columns copied into the output, comma-separated.", valueName: "a,b"))
    var passthrough: String?

    @Option(help: ArgumentHelp("The model outputs written, comma-separated (default: all).", valueName: "a,b"))
    var outputs: String?

    @Option(help: ArgumentHelp("Where rejected lines go (default: OUTPUT.rejects.csv).", valueName: "file"))
    var rejects: String?

    @Option(help: ArgumentHelp("Stop once more than this many lines are rejected.", valueName: "n"))
    var maxRejects: Int?

    @Flag(help: "Continue an interrupted run from its checkpoint.")
    var resume = false

    @Flag(help: "Overwrite an existing output (and forget an interrupted run).")
    var force = false

    @Option(help: ArgumentHelp("Score the I-th of N byte ranges of the input (I from 0).", valueName: "I/N"))
    var shard: String?

    @Option(help: ArgumentHelp("Rows per chunk (parsed and run together).", valueName: "rows"))
    var chunkRows = 8192

    @Option(help: ArgumentHelp("Chunks scored at once (default: the cores).", valueName: "n"))
    var threads: Int?

    @Flag(help: "No progress on stderr (the summary line stays).")
    var quiet = false

    @Option(
        help: ArgumentHelp(
            "Add each row's N largest attributions (exact TreeSHAP or linear: tree and linear models, per source column for a pipeline).",
            valueName: "n"))
    var explain: Int?

    @Option(help: ArgumentHelp("Background rows for --explain (a CSV file; default: the bundle's reference sample).", valueName: "csv"))
    var background: String?

    @OptionGroup var runtimeOptions: RuntimeOptions

    func validate() throws {
        if let format, OutputFormat(rawValue: format) == nil { throw ValidationError("--format must be csv or jsonl") }
        guard (1...1_000_000).contains(chunkRows) else { throw ValidationError("--chunk-rows must be 1...1000000") }
        if let threads, !(1...256).contains(threads) { throw ValidationError("--threads must be 1...256") }
        if let maxRejects, maxRejects < 0 { throw ValidationError("--max-rejects must be 0 or more") }
        if let shard, Self.parseShard(shard) == nil {
            throw ValidationError("--shard must be I/N with 0 <= I < N, such as 0/4")
        }
        if resume, force { throw ValidationError("--resume and --force contradict each other: give one") }
        if let explain, !(1...1000).contains(explain) { throw ValidationError("--explain must be 1...1000 features") }
        if background != nil, explain == nil { throw ValidationError("--background is for --explain") }
    }

    static func parseShard(_ text: String) -> (Int, Int)? {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let index = Int(parts[0]), let count = Int(parts[1]), count >= 1, count <= 100_000,
            (0..<count).contains(index)
        else { return nil }
        return (index, count)
    }

    func run() async throws {
        let threads = self.threads ?? ProcessInfo.processInfo.activeProcessorCount
        let pool = RunnerPool(threads: threads, name: "tern.batch")
        defer { pool.shutdown() }
        let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("tern-batch-\(UUID().uuidString).onnx").path
        defer { try? FileManager.default.removeItem(atPath: temporary) }
        do {
            var path = model
            var featureNames: [String]?
            var labels: [String]?
            var reference: ReferenceProfile.Sample?
            var fingerprint = model
            var archive = model
            if !FileManager.default.fileExists(atPath: model) {
                // Not a file: a model in the registry (--data, --database or --server), its bundle fetched.
                guard Self.isRegistryReference(model) else { throw TernError.notFound("no such model file: \(model)") }
                let client = try await registry.client(artifactsInDatabase: false, actor: "batch", runtime: { runtimeOptions.openRuntime() })
                let fetched: (archive: Data, version: Int)
                do {
                    fetched = try await client.bundle(named: model)
                    await client.close()
                } catch {
                    await client.close()
                    throw error
                }
                archive = temporary + ".tern"
                try fetched.archive.write(to: URL(fileURLWithPath: archive))
                fingerprint = "\(model)#\(fetched.version)"
            }
            defer { if archive != model { try? FileManager.default.removeItem(atPath: archive) } }
            if !model.hasSuffix(".onnx") {
                let bundle = try ModelBundle(archiveFile: archive)
                try bundle.model.write(to: URL(fileURLWithPath: temporary))
                path = temporary
                featureNames = bundle.manifest.featureNames
                labels = bundle.manifest.classLabels
                reference = try bundle.decoded(ReferenceProfile.self, file: BundleFile.profile)?.sample
                fingerprint += ":" + bundle.manifest.name + "@" + String(bundle.manifest.version ?? 0)
            }
            if let attributes = try? FileManager.default.attributesOfItem(atPath: model) {
                fingerprint += ":\((attributes[.size] as? NSNumber)?.intValue ?? 0)"
            }
            var sessionOptions = try runtimeOptions.sessionOptions()
            sessionOptions.instances = threads
            let onnx = try ONNXModel(path: path, runtime: runtimeOptions.openRuntime(), pool: pool, options: sessionOptions)
            let served = ServedModel(name: "batch", version: 1, model: onnx, config: ModelConfig(), platform: "onnxruntime_onnx")
            var options = BatchOptions(input: input, output: output)
            let plain = output.hasSuffix(".gz") ? String(output.dropLast(3)) : output
            options.format = format.flatMap(OutputFormat.init(rawValue:)) ?? (plain.hasSuffix(".jsonl") ? .jsonl : .csv)
            options.rejectsPath = rejects
            options.idColumn = idColumn
            options.passthrough = Self.list(passthrough)
            options.outputs = Self.list(outputs)
            options.featureNames = featureNames ?? served.featureNames
            options.labels = labels
            options.shard = shard.flatMap(Self.parseShard) ?? (0, 1)
            options.rowsPerChunk = chunkRows
            options.parallelChunks = threads
            options.maxRejects = maxRejects
            options.resume = resume
            options.force = force
            options.modelFingerprint = fingerprint
            if let explain {
                options.explainer = try await Self.rowExplainer(
                    onnx: path, model: onnx, names: options.featureNames, reference: reference, background: background, top: explain)
                options.explainTop = explain
            }
            let display = ProgressDisplay(quiet: quiet)
            let summary = try await BatchJob(options: options, model: onnx, progress: { display.show($0) }).run()
            display.finish()
            let rate = summary.seconds > 0 ? Double(summary.rows - summary.resumedFrom) / summary.seconds : 0
            var line = "scored \(summary.rows) rows"
            if summary.rejected > 0 { line += ", rejected \(summary.rejected) (see \(options.rejects))" }
            line += " in \(String(format: "%.2f", summary.seconds)) s (\(Int(rate)) rows/s)"
            if summary.resumedFrom > 0 { line += ", resumed after \(summary.resumedFrom) rows" }
            FileHandle.standardError.write(Data((line + " -> \(output)\n").utf8))
        } catch let error as ValidationError {
            throw error
        } catch {
            fail(error)
        }
    }

    /// Exact attributions for `--explain`: the model's trees or linear terms against the background (a CSV
    /// file, else the bundle's reference sample); each row's top features for its largest output. A
    /// per-column model (a pipeline) is explained through its preprocessing, one attribution per column.
    static func rowExplainer(
        onnx path: String, model: ONNXModel, names: [String]?, reference: ReferenceProfile.Sample?, background: String?, top: Int
    ) async throws -> ChunkScorer.RowExplainer {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        var table: CSVTable?
        if let background {
            guard let text = try? String(contentsOfFile: background, encoding: .utf8) else {
                throw TernError.invalidArgument("--background: cannot read '\(background)'")
            }
            table = try CSVTable(text: text, source: background)
        } else if let reference {
            table = CSVTable(columns: reference.columns, rows: reference.rows)
        }
        let what = background == nil ? "the bundle's reference sample" : "--background"
        let structure = try? ModelStructure.read(onnx: data)
        if structure == nil, let columns = try? SourceColumns(inputs: model.signature.inputs, featureNames: names) {
            let cells = try table.map { try columns.rows(columns: $0.columns, values: Array($0.rows.prefix(200)), what: what) } ?? []
            let explainer = try await ColumnExplainer.prepare(model: model, onnx: model, data: data, columns: columns, background: cells)
            if explainer.preprocessing != nil || !columns.isOneMatrix {
                if let why = explainer.batchRefusal {
                    throw TernError.invalidArgument(
                        "--explain: \(why)" + (cells.isEmpty ? ": give --background TRAINING.csv, or a bundle packed with --reference" : ""))
                }
                return { inputs, _ in try await explainer.top(inputs, count: top) }
            }
        }
        let read = try structure ?? ModelStructure.read(onnx: data)
        let width = read.featureCount
        var rows = try table.map { try FeatureRows.rows(columns: $0.columns, values: $0.rows, featureNames: names, width: width, what: what) } ?? []
        rows = Array(rows.prefix(200))
        guard !rows.isEmpty || read.hasCovers else {
            throw TernError.invalidArgument("--explain needs background rows: give --background TRAINING.csv, or a bundle packed with --reference")
        }
        let explainer = try Explainer(read, background: rows)
        let method: Attributions.Method? = rows.isEmpty ? .pathDependent : nil
        return { _, rows in try explainer.top(rows, count: top, featureNames: names, method: method) }
    }

    /// `name`, `name@alias` or `name@version`: what a registry names (no path separators, no extension).
    static func isRegistryReference(_ text: String) -> Bool {
        !text.contains("/") && !text.hasSuffix(".onnx") && !text.hasSuffix(".tern") && !text.isEmpty
    }

    static func list(_ text: String?) -> [String] {
        (text ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}

/// A progress bar on a terminal (rows, rows/s, ETA from the bytes read, elapsed); a plain line every few
/// seconds otherwise.
final class ProgressDisplay: @unchecked Sendable {
    private let quiet: Bool
    private let terminal = isatty(STDERR_FILENO) != 0
    private var lastLine = ContinuousClock.now
    private var shown = false
    private let lock = NSLock()

    init(quiet: Bool) { self.quiet = quiet }

    func show(_ progress: BatchProgress) {
        guard !quiet else { return }
        lock.lock()
        defer { lock.unlock() }
        let seconds = Double(progress.elapsed.components.seconds) + Double(progress.elapsed.components.attoseconds) / 1e18
        let share = progress.bytesTotal > 0 ? Double(progress.bytesDone) / Double(progress.bytesTotal) : 1
        let rate = seconds > 0 ? Double(progress.rows) / seconds : 0
        let eta = share > 0 ? seconds / share - seconds : 0
        let text =
            "\(progress.rows) rows, \(Int(rate)) rows/s, \(Int(share * 100))%, ETA \(Int(eta)) s, \(Int(seconds)) s elapsed"
            + (progress.rejected > 0 ? ", \(progress.rejected) rejected" : "")
        if terminal {
            let width = 30, filled = Int(share * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            FileHandle.standardError.write(Data("\r[\(bar)] \(text)\u{1B}[K".utf8))
            shown = true
        } else if ContinuousClock.now - lastLine >= .seconds(5) {
            lastLine = .now
            FileHandle.standardError.write(Data("progress: \(text)\n".utf8))
        }
    }

    func finish() {
        lock.lock()
        defer { lock.unlock() }
        if shown { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

struct BatchMerge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Join the outputs of a sharded run in order (the header once).",
        discussion: """
            Give the parts in shard order (part-0 first). CSV parts keep the first part's header and drop the others'; JSON Lines parts are concatenated.

            Example:
              tern batch merge part-0.csv part-1.csv part-2.csv --output scores.csv
            """)

    @Argument(help: ArgumentHelp("The shards' outputs, in shard order.", valueName: "part"))
    var parts: [String]

    @Option(name: .shortAndLong, help: ArgumentHelp("The merged file.", valueName: "file"))
    var output: String

    @Flag(help: "Overwrite an existing output.")
    var force = false

    func run() async throws {
        do {
            guard !parts.isEmpty else { throw TernError.invalidArgument("give the parts to merge") }
            for part in parts where FileManager.default.fileExists(atPath: part + ".checkpoint") {
                throw TernError.invalidArgument("'\(part)' is unfinished (its checkpoint is beside it): finish it with --resume first")
            }
            if FileManager.default.fileExists(atPath: output), !force {
                throw TernError.conflict("'\(output)' exists: it is not overwritten without --force")
            }
            let plain = { (path: String) in path.hasSuffix(".gz") ? String(path.dropLast(3)) : path }
            try ShardMerger.merge(parts: parts, into: output, csv: !plain(output).hasSuffix(".jsonl") && !plain(parts[0]).hasSuffix(".jsonl"))
        } catch let error as ValidationError {
            throw error
        } catch {
            fail(error)
        }
    }
}
