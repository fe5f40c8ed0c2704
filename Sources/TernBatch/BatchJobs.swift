import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import TernBundle
import TernCodecs
import TernCore
import TernExplain
import TernONNX
import TernRegistry
import Yams

/// What a batch job is asked to do (`POST /api/v1/jobs`, or a schedule): a served model, files under the
/// server's batch folder, and `tern batch`'s options.
public struct JobRequest: Codable, Sendable, Equatable {
    public var model: String
    public var input: String
    public var output: String
    public var format: String?
    public var idColumn: String?
    public var passthrough: [String]?
    public var outputs: [String]?
    public var maxRejects: Int?
    public var resume: Bool?
    public var force: Bool?
    /// Adds each row's N largest attributions (exact methods; the version's reference sample is the background).
    public var explain: Int?

    /// The JSON fields it reads: any other in a request is refused.
    public static var fieldNames: Set<String> { Set(CodingKeys.allCases.map(\.stringValue)) }

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case model, input, output, format, passthrough, outputs, resume, force, explain
        case idColumn = "id_column"
        case maxRejects = "max_rejects"
    }
}

/// A recurring job: a cron expression and the job it starts.
public struct JobSchedule: Sendable {
    public var name: String
    public var cron: CronExpression
    public var job: JobRequest
}

/// Where a server's batch jobs may read and write, how many threads they get, and their schedules.
public struct BatchJobsConfiguration: Sendable {
    /// Jobs read and write files under this folder only (paths in requests are relative to it).
    public var root: String
    /// Threads the jobs share (at a lowered priority: online requests come first).
    public var threads: Int = 1
    public var schedules: [JobSchedule] = []

    public init(root: String) { self.root = root }

    /// Reads schedules from a YAML file: `schedules: [{name, cron, model, input, output, ...}]`.
    public static func schedules(path: String) throws(TernError) -> [JobSchedule] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw .invalidArgument("cannot read the batch schedules '\(path)'")
        }
        struct File: Decodable {
            struct Entry: Decodable {
                var name: String
                var cron: String
                var job: JobRequest
                init(from decoder: any Decoder) throws {
                    let keyed = try decoder.container(keyedBy: Key.self)
                    name = try keyed.decode(String.self, forKey: .name)
                    cron = try keyed.decode(String.self, forKey: .cron)
                    job = try JobRequest(from: decoder)
                }
                enum Key: String, CodingKey { case name, cron }
            }
            var schedules: [Entry]
        }
        let file: File
        try SafeYAML.check(text, source: path)
        do {
            file = try YAMLDecoder().decode(File.self, from: text)
        } catch {
            throw .invalidArgument("\(path): \(error)")
        }
        var schedules: [JobSchedule] = []
        for entry in file.schedules {
            do throws(TernError) {
                schedules.append(JobSchedule(name: entry.name, cron: try CronExpression(entry.cron), job: entry.job))
            } catch {
                throw .invalidArgument("\(path): schedule '\(entry.name)': \(error.message)")
            }
        }
        return schedules
    }
}

/// Batch jobs inside `tern serve`: each runs `tern batch`'s engine on a served model with its own session
/// on low-priority threads, reports progress, stops within a chunk when deleted, and is recorded in the
/// registry (history and audit trail) when there is one. Schedules start jobs on their cron expressions.
package final class BatchJobs: Service, Sendable {
    package struct Running: Sendable {
        var record: JobRecord
        var progress: BatchProgress?
        var task: Task<Void, Never>?
    }

    package let configuration: BatchJobsConfiguration
    package let service: InferenceService
    package let registry: Registry?
    package let runtime: ONNXRuntime
    package let pool: RunnerPool
    package let logger: Logger
    /// The served versions' explainers (`explain` on a job).
    package let explanations: Explanations?
    private let jobs = Mutex<[String: Running]>([:])

    package init(
        configuration: BatchJobsConfiguration, service: InferenceService, registry: Registry?, runtime: ONNXRuntime,
        explanations: Explanations?, logger: Logger
    ) {
        self.configuration = configuration
        self.explanations = explanations
        self.service = service
        self.registry = registry
        self.runtime = runtime
        self.logger = logger
        pool = RunnerPool(threads: configuration.threads, name: "tern.batch", niceness: 10)
    }

    /// A path of a request, inside the batch folder (a path that leaves it is refused). No part of it may be
    /// a symbolic link: a link inside the folder could point anywhere on the host.
    package func resolve(_ path: String, _ what: String) throws(TernError) -> String {
        guard !path.isEmpty, !path.hasPrefix("/"), !path.split(separator: "/").contains("..") else {
            throw .invalidArgument("\(what) '\(Echo.clip(path))' must be a relative path inside the batch folder (no '..')")
        }
        var current = URL(fileURLWithPath: configuration.root).standardizedFileURL.path
        for part in path.split(separator: "/") where part != "." {
            current += "/" + part
            if (try? FileManager.default.destinationOfSymbolicLink(atPath: current)) != nil {
                throw .invalidArgument(
                    "\(what) '\(Echo.clip(path))' passes through a symbolic link; give a path of real folders and files "
                        + "inside the batch folder")
            }
        }
        return current
    }

    /// Checks and starts a job; answers its record at once (state running).
    package func submit(_ request: JobRequest, actor: String, schedule: String? = nil) async throws -> JobRecord {
        if let format = request.format, OutputFormat(rawValue: format) == nil {
            throw TernError.invalidArgument("format must be csv or jsonl")
        }
        let served = try service.resolve(model: request.model, version: nil)
        guard let onnx = served.model as? ONNXModel ?? (served.model as? DynamicBatcher)?.model as? ONNXModel else {
            throw TernError.invalidArgument("\(served.name) v\(served.version) is not an ONNX model")
        }
        var options = BatchOptions(input: try resolve(request.input, "input"), output: try resolve(request.output, "output"))
        let inputName = options.input.hasSuffix(".gz") ? String(options.input.dropLast(3)) : options.input
        let outputName = options.output.hasSuffix(".gz") ? String(options.output.dropLast(3)) : options.output
        guard inputName != outputName else {
            throw TernError.invalidArgument("output '\(Echo.clip(request.output))' is the input (or its .gz twin): name another file")
        }
        let plain = options.output.hasSuffix(".gz") ? String(options.output.dropLast(3)) : options.output
        options.format = request.format.flatMap(OutputFormat.init(rawValue:)) ?? (plain.hasSuffix(".jsonl") ? .jsonl : .csv)
        options.idColumn = request.idColumn
        options.passthrough = request.passthrough ?? []
        options.outputs = request.outputs ?? []
        options.maxRejects = request.maxRejects
        options.resume = request.resume ?? false
        options.force = request.force ?? false
        options.featureNames = served.featureNames
        options.parallelChunks = configuration.threads
        options.executor = pool
        options.modelFingerprint = "\(served.name)#\(served.version)"
        if let top = request.explain {
            guard (1...1000).contains(top) else { throw TernError.invalidArgument("explain must be 1...1000 features") }
            guard let prepared = try await explanations?.prepare(served) else {
                throw TernError.invalidArgument("explain on a job needs the server's explanations (a registry server)")
            }
            if let columns = prepared.columns {
                // A per-column model (a pipeline): exact attributions per source column through its preprocessing.
                if let why = columns.batchRefusal {
                    throw TernError.invalidArgument("explain on a job: \(served.name) v\(served.version) has \(why)")
                }
                options.explainer = { inputs, _ in try await columns.top(inputs, count: top) }
            } else {
                guard let exact = prepared.exact, !prepared.background.isEmpty || exact.structure.hasCovers else {
                    throw TernError.invalidArgument(
                        "explain on a job needs an exact explainer (trees or linear) and background data: "
                            + "a bundle packed with --reference")
                }
                let (names, method): ([String]?, Attributions.Method?) = (prepared.featureNames, prepared.background.isEmpty ? .pathDependent : nil)
                options.explainer = { _, rows in try exact.top(rows, count: top, featureNames: names, method: method) }
            }
            options.explainTop = top
            options.modelFingerprint += ":explain\(top)"
        }
        // The job's own session on the job threads: its runs never queue behind or ahead of online requests.
        var sessionOptions = SessionOptions()
        sessionOptions.instances = configuration.threads
        let model = try ONNXModel(path: onnx.path, runtime: runtime, pool: pool, options: sessionOptions)
        let id = "job-" + UUID().uuidString.lowercased().prefix(12)
        let job = BatchJob(
            options: options, model: model,
            progress: { [weak self] progress in
                self?.jobs.withLock { $0[id]?.progress = progress }
            })
        // What can fail before a byte is written fails the request (a 4xx), not the job.
        try job.check()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let started = JobRecord(
            id: id, model: served.name, version: served.version,
            input: request.input, output: request.output, options: String(decoding: try encoder.encode(request), as: UTF8.self),
            schedule: schedule, state: "running", createdBy: actor, startedAt: BundleManifest.timestamp())
        try await registry?.saveJob(started)
        try await registry?.record(
            action: "batch-job-start", model: served.name, version: served.version, actor: actor,
            detail: "\(id) \(request.input) -> \(request.output)")
        jobs.withLock { $0[id] = Running(record: started) }
        let task = Task { [self] in
            var record = started
            do {
                let summary = try await job.run()
                record.state = "succeeded"
                record.rows = summary.rows
                record.rejected = summary.rejected
            } catch is CancellationError {
                record.state = "cancelled"
            } catch {
                record.state = Task.isCancelled ? "cancelled" : "failed"
                record.error = (error as? TernError)?.message ?? "\(error)"
            }
            if record.state != "succeeded", let progress = jobs.withLock({ $0[id]?.progress }) {
                record.rows = progress.rows
                record.rejected = progress.rejected
            }
            record.endedAt = BundleManifest.timestamp()
            jobs.withLock { $0[id]?.record = record }
            logger.info(
                "batch job ended",
                metadata: [
                    "job": "\(id)", "state": "\(record.state)", "rows": "\(record.rows)",
                    "error": "\(record.error ?? "")",
                ])
            do {
                try await registry?.saveJob(record)
                try await registry?.record(
                    action: "batch-job-\(record.state)", model: record.model, version: record.version,
                    actor: actor, detail: "\(id) rows \(record.rows) rejected \(record.rejected)")
            } catch {
                logger.warning("cannot record the batch job", metadata: ["job": "\(id)", "error": "\(error)"])
            }
        }
        jobs.withLock { $0[id]?.task = task }
        logger.info(
            "batch job started",
            metadata: [
                "job": "\(id)", "model": "\(served.name)", "version": "\(served.version)",
                "input": "\(request.input)", "output": "\(request.output)",
            ])
        return started
    }

    /// A job's record with its progress (running jobs), from memory or the registry's history.
    package func status(_ id: String) async throws -> [String: Any] {
        if let running = jobs.withLock({ $0[id] }) { return Self.object(running.record, running.progress) }
        if let stored = try await registry?.jobs(limit: 10_000).first(where: { $0.id == id }) { return Self.object(stored, nil) }
        throw TernError.notFound("no batch job '\(Echo.clip(id))'")
    }

    package func list() async throws -> [[String: Any]] {
        let live = jobs.withLock { $0 }
        var objects = live.values.sorted { $0.record.startedAt > $1.record.startedAt }.map { Self.object($0.record, $0.progress) }
        for stored in try await registry?.jobs() ?? [] where live[stored.id] == nil { objects.append(Self.object(stored, nil)) }
        return objects
    }

    /// Stops a running job between chunks (within a second); its output keeps its checkpoint, so the same
    /// job with `resume: true` continues it.
    package func cancel(_ id: String) async throws -> [String: Any] {
        guard let running = jobs.withLock({ $0[id] }) else { throw TernError.notFound("no running batch job '\(Echo.clip(id))'") }
        running.task?.cancel()
        await running.task?.value
        return try await status(id)
    }

    package static func object(_ record: JobRecord, _ progress: BatchProgress?) -> [String: Any] {
        let progress = record.state == "running" ? progress : nil
        var object: [String: Any] = [
            "id": record.id, "model": record.model, "input": record.input, "output": record.output, "state": record.state,
            "rows": progress?.rows ?? record.rows, "rejected": progress?.rejected ?? record.rejected,
            "created_by": record.createdBy, "started_at": record.startedAt,
        ]
        if let version = record.version { object["version"] = version }
        if let schedule = record.schedule { object["schedule"] = schedule }
        if let error = record.error { object["error"] = error }
        if let ended = record.endedAt { object["ended_at"] = ended }
        if let progress, record.state == "running" {
            let seconds = Double(progress.elapsed.components.seconds) + Double(progress.elapsed.components.attoseconds) / 1e18
            object["elapsed_seconds"] = seconds
            if progress.bytesTotal > 0 { object["fraction_done"] = Double(progress.bytesDone) / Double(progress.bytesTotal) }
        }
        return object
    }

    /// Fires the schedules (checked every second) until shutdown, then stops the running jobs.
    package func run() async throws {
        let schedules = configuration.schedules
        await cancelWhenGracefulShutdown {
            var last = Int(Date().timeIntervalSince1970)
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(250))
                let now = Int(Date().timeIntervalSince1970)
                guard now != last else { continue }
                for second in (last + 1)...now {
                    let date = Date(timeIntervalSince1970: TimeInterval(second))
                    for schedule in schedules where schedule.cron.matches(date) {
                        do {
                            _ = try await self.submit(schedule.job, actor: "schedule:\(schedule.name)", schedule: schedule.name)
                        } catch {
                            self.logger.warning(
                                "a scheduled batch job did not start",
                                metadata: [
                                    "schedule": "\(schedule.name)", "error": "\(error)",
                                ])
                        }
                    }
                }
                last = now
            }
        }
        let running = jobs.withLock { $0.values.compactMap(\.task) }
        for task in running { task.cancel() }
        for task in running { await task.value }
        pool.shutdown()
    }
}

/// A cron expression: five fields (minute hour day-of-month month day-of-week) or six (seconds first),
/// each `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, or a list of these. When both days are
/// restricted, either matches (as cron does). Times are UTC.
public struct CronExpression: Sendable, Equatable {
    package let seconds: Set<Int>
    package let minutes: Set<Int>
    package let hours: Set<Int>
    package let days: Set<Int>
    package let months: Set<Int>
    package let weekdays: Set<Int>
    package let daysRestricted: Bool
    package let weekdaysRestricted: Bool

    public init(_ text: String) throws(TernError) {
        var fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard fields.count == 5 || fields.count == 6 else {
            throw .invalidArgument(
                "'\(Echo.clip(text))' is not a cron expression: five fields (minute hour day month weekday) or six (seconds first)")
        }
        if fields.count == 5 { fields.insert("0", at: 0) }
        seconds = try Self.parse(fields[0], 0...59, "seconds")
        minutes = try Self.parse(fields[1], 0...59, "minutes")
        hours = try Self.parse(fields[2], 0...23, "hours")
        days = try Self.parse(fields[3], 1...31, "day of month")
        months = try Self.parse(fields[4], 1...12, "month")
        var weekdays = try Self.parse(fields[5], 0...7, "day of week")
        if weekdays.remove(7) != nil { weekdays.insert(0) }  // 7 is Sunday too
        self.weekdays = weekdays
        daysRestricted = fields[3] != "*"
        weekdaysRestricted = fields[5] != "*"
    }

    private static func parse(_ field: String, _ range: ClosedRange<Int>, _ name: String) throws(TernError) -> Set<Int> {
        var values = Set<Int>()
        for part in field.split(separator: ",") {
            let pieces = part.split(separator: "/", maxSplits: 1)
            var step = 1
            if pieces.count == 2 {
                guard let parsed = Int(pieces[1]), parsed > 0 else { throw .invalidArgument("bad step in \(name): '\(part)'") }
                step = parsed
            }
            var low = range.lowerBound, high = range.upperBound
            if pieces[0] != "*" {
                let bounds = pieces[0].split(separator: "-", maxSplits: 1)
                guard let a = Int(bounds[0]), let b = bounds.count == 2 ? Int(bounds[1]) : a, range.contains(a), range.contains(b), a <= b else {
                    throw .invalidArgument("bad \(name): '\(part)' (\(range.lowerBound)-\(range.upperBound))")
                }
                low = a
                high = pieces.count == 2 && bounds.count == 1 ? range.upperBound : b
            }
            values.formUnion(stride(from: low, through: high, by: step))
        }
        guard !values.isEmpty else { throw .invalidArgument("empty \(name)") }
        return values
    }

    /// Whether the expression fires at `date`'s second (UTC).
    public func matches(_ date: Date) -> Bool {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.second, .minute, .hour, .day, .month, .weekday], from: date)
        guard seconds.contains(c.second!), minutes.contains(c.minute!), hours.contains(c.hour!), months.contains(c.month!) else { return false }
        let day = days.contains(c.day!), weekday = weekdays.contains(c.weekday! - 1)
        if daysRestricted && weekdaysRestricted { return day || weekday }
        return day && weekday
    }
}
