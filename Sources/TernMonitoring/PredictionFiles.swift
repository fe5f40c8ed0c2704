import Foundation
import Synchronization
import TernCore
import TernModels
import TernRegistry

/// Where the prediction log lives: a database (SQLite file or PostgreSQL), or a folder of JSON Lines files.
public enum PredictionLogLocation: Sendable, Equatable, CustomStringConvertible {
    case database(RegistryLocation)
    /// `jsonl:DIR`: rotated JSON Lines files, for rates past what a database takes, and for log pipelines.
    case files(folder: String)

    /// `jsonl:DIR`, or what ``RegistryLocation`` parses (`postgres://...`, `sqlite:PATH`, a file path).
    public init(_ text: String) throws(TernError) {
        if text.hasPrefix("jsonl:") {
            let folder = String(text.dropFirst("jsonl:".count))
            guard !folder.isEmpty else { throw .invalidArgument("jsonl: needs a folder, such as jsonl:/var/log/tern") }
            self = .files(folder: folder)
        } else {
            self = .database(try RegistryLocation(text))
        }
    }

    public var description: String {
        switch self {
        case .database(let location): location.description
        case .files(let folder): "jsonl:\(folder)"
        }
    }

    /// Opens the log for writing or reading; with a cipher, inputs and outputs are sealed at rest.
    public func open(cipher: PayloadCipher? = nil) async throws(TernError) -> any PredictionSink {
        switch self {
        case .database(let location): try await PredictionStore.open(location, cipher: cipher)
        case .files(let folder): try PredictionFiles(folder: folder, cipher: cipher)
        }
    }
}

/// What the prediction log is written to and read from.
public protocol PredictionSink: Sendable {
    /// Writes the predictions of the drafts (a database: each draft one block).
    func append(_ drafts: [PredictionDraft]) async throws(TernError)
    func records(requestID: String) async throws(TernError) -> [PredictionRecord]
    func records(model: String?, since: Int64?, until: Int64?, afterID: Int64, limit: Int)
        async throws(TernError) -> [(id: Int64, record: PredictionRecord)]
    /// The newest `limit` records of a model's version, oldest first.
    func recent(model: String, version: Int, limit: Int) async throws(TernError) -> [PredictionRecord]
    @discardableResult
    func prune(olderThan: Int64?, keepingAtMost: Int?) async throws(TernError) -> Int
    func close() async
}

extension PredictionStore: PredictionSink {}

/// The prediction log as JSON Lines files in a folder: `predictions-<UTC creation time>.jsonl`, one record per
/// line as the API writes records. A file is closed and a new one started at 256 MiB, at 4 million lines
/// and when the UTC day changes. Retention deletes whole files whose last record is older than the age.
///
/// A record's id (for paging) is its file's creation time in milliseconds, shifted left 22 bits, plus its
/// line number. Reading scans the files: fine for looking a request up or exporting a day; a high-rate
/// deployment reads them with its log pipeline.
package final class PredictionFiles: PredictionSink {
    package static let maxFileBytes = 256 << 20
    package static let maxFileLines = 1 << 22

    private struct Current {
        var handle: FileHandle?
        var created: Int64 = 0
        var bytes = 0
        var lines = 0
        var day = 0
    }

    package let folder: String
    private let current = Mutex(Current())
    /// Seals inputs and outputs (stored as JSON strings) and opens them as lines are read.
    private let cipher: PayloadCipher?

    package init(folder: String, cipher: PayloadCipher? = nil) throws(TernError) {
        self.folder = folder
        self.cipher = cipher
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw .unavailable("cannot create the prediction log folder \(folder): \(error.localizedDescription)")
        }
        guard FileManager.default.isWritableFile(atPath: folder) else {
            throw .unavailable("cannot write to the prediction log folder \(folder)")
        }
    }

    package func append(_ drafts: [PredictionDraft]) async throws(TernError) {
        var plain: [PredictionRecord] = []
        for draft in drafts { plain += try draft.records() }
        guard !plain.isEmpty else { return }
        let records = try PayloadCipher.seal(plain, with: cipher, quoted: true)
        let text = records.map { PredictionJSON.line($0) + "\n" }.joined()
        let bytes = Data(text.utf8)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let result: Result<Void, TernError> = current.withLock { current in
            let day = Int(now / 86_400_000)
            if current.handle == nil || current.bytes + bytes.count > Self.maxFileBytes
                || current.lines + records.count > Self.maxFileLines || current.day != day
            {
                try? current.handle?.close()
                var created = now
                if created <= current.created { created = current.created + 1 }  // names and ids stay unique
                let path = folder + "/" + Self.name(created)
                guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]),
                    let handle = FileHandle(forWritingAtPath: path)
                else {
                    return .failure(.unavailable("cannot create \(path)"))
                }
                current = Current(handle: handle, created: created, bytes: 0, lines: 0, day: day)
            }
            do {
                try current.handle!.write(contentsOf: bytes)
            } catch {
                return .failure(.unavailable("cannot write the prediction log in \(folder): \(error.localizedDescription)"))
            }
            current.bytes += bytes.count
            current.lines += records.count
            return .success(())
        }
        try result.get()
    }

    package static func name(_ created: Int64) -> String {
        let date = Date(timeIntervalSince1970: Double(created) / 1000)
        var parts = Calendar(identifier: .gregorian)
        parts.timeZone = TimeZone(identifier: "UTC")!
        let c = parts.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func pad(_ value: Int?, _ width: Int) -> String {
            let text = String(value ?? 0)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "predictions-\(pad(c.year, 4))\(pad(c.month, 2))\(pad(c.day, 2))T\(pad(c.hour, 2))\(pad(c.minute, 2))"
            + "\(pad(c.second, 2)).\(pad(Int(created % 1000), 3))Z-\(created).jsonl"
    }

    /// The files, oldest first, with their creation times (from their names).
    private func files() -> [(path: String, created: Int64)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.compactMap { name -> (String, Int64)? in
            guard name.hasPrefix("predictions-"), name.hasSuffix(".jsonl"),
                let dash = name.lastIndex(of: "-"),
                let created = Int64(name[name.index(after: dash)...].dropLast(".jsonl".count))
            else { return nil }
            return (folder + "/" + name, created)
        }.sorted { $0.1 < $1.1 }
    }

    package func records(requestID: String) async throws(TernError) -> [PredictionRecord] {
        var found: [PredictionRecord] = []
        let needle = "\"request_id\":"
        for file in files() {
            guard let text = try? String(contentsOfFile: file.path, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") where line.contains(requestID) && line.contains(needle) {
                if let record = try read(String(line)), record.requestID == requestID { found.append(record) }
                if found.count >= 100 { return found }
            }
        }
        return found
    }

    package func records(model: String?, since: Int64?, until: Int64?, afterID: Int64, limit: Int)
        async throws(TernError) -> [(id: Int64, record: PredictionRecord)]
    {
        var page: [(id: Int64, record: PredictionRecord)] = []
        for file in files() where (file.created << 22) + Int64(Self.maxFileLines) > afterID {
            guard let text = try? String(contentsOfFile: file.path, encoding: .utf8) else { continue }
            for (index, line) in text.split(separator: "\n").enumerated() {
                let id = (file.created << 22) + Int64(index + 1)
                guard id > afterID, let record = try read(String(line)) else { continue }
                if let model, record.model != model { continue }
                if let since, record.time < since { continue }
                if let until, record.time >= until { continue }
                page.append((id, record))
                if page.count == limit { return page }
            }
        }
        return page
    }

    package func recent(model: String, version: Int, limit: Int) async throws(TernError) -> [PredictionRecord] {
        var kept: [PredictionRecord] = []
        for file in files().reversed() {
            guard let text = try? String(contentsOfFile: file.path, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n").reversed() {
                guard let record = try read(String(line)), record.model == model, record.version == version else { continue }
                kept.append(record)
                if kept.count == limit { return kept.reversed() }
            }
        }
        return kept.reversed()
    }

    package func prune(olderThan: Int64?, keepingAtMost: Int?) async throws(TernError) -> Int {
        guard let olderThan else { return 0 }
        let open = current.withLock { $0.created }
        var removed = 0
        for file in files() where file.created != open {
            let attributes = try? FileManager.default.attributesOfItem(atPath: file.path)
            guard let modified = attributes?[.modificationDate] as? Date,
                Int64(modified.timeIntervalSince1970 * 1000) < olderThan
            else { continue }
            let text = (try? String(contentsOfFile: file.path, encoding: .utf8)) ?? ""
            removed += text.split(separator: "\n").count
            try? FileManager.default.removeItem(atPath: file.path)
        }
        return removed
    }

    package func close() async {
        current.withLock { current in
            try? current.handle?.close()
            current.handle = nil
        }
    }

    /// A line back into a record, its sealed inputs and outputs opened; nil for a line that is not a record.
    package func read(_ line: String) throws(TernError) -> PredictionRecord? {
        guard let record = Self.parse(line) else { return nil }
        return try PayloadCipher.open(record, with: cipher)
    }

    /// A line back into a record (the inputs and outputs kept as their JSON text).
    package static func parse(_ line: String) -> PredictionRecord? {
        guard let fields = RowScanner.rows(line).first else { return nil }
        var values: [String: String] = [:]
        for (key, value) in fields { values[key] = value }
        func text(_ key: String) -> String? {
            guard let raw = values[key], raw.hasPrefix("\"") else { return nil }
            return (try? JSONSerialization.jsonObject(with: Data(raw.utf8), options: .fragmentsAllowed)) as? String
        }
        guard let time = text("time").flatMap({ try? PredictionTime.parse($0, name: "time") }),
            let requestID = text("request_id"), let model = text("model"),
            let version = values["version"].flatMap({ Int($0) }), let wire = text("protocol"),
            let latency = values["latency_ms"].flatMap({ Double($0) }),
            let inputs = values["inputs"], let outputs = values["outputs"]
        else { return nil }
        return PredictionRecord(
            time: time, requestID: requestID, model: model, version: version, protocol: wire,
            latencyMicroseconds: Int64((latency * 1000).rounded()), caller: text("caller"), traceID: text("trace_id"),
            inputs: inputs, outputs: outputs)
    }
}
