import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import TernCore
import TernMonitoring
import TernRegistry
import TernServer

struct Predictions: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predictions",
        abstract: "Read the prediction log: what a model was asked and answered, by request id or as a file.",
        discussion: """
            tern serve records every prediction (unless turned off) in the prediction log: by default \
            predictions.sqlite in the data folder ($TERN_DATA, else .tern/data), or the registry's PostgreSQL \
            database. These commands read it there, or through a running server with --server.
            """,
        subcommands: [Show.self, Export.self])

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Show the prediction(s) of a request id, as JSON.")

        @Argument(help: "The request id (the X-Request-ID the answer carried, or the request's own id).")
        var requestID: String

        @OptionGroup var source: PredictionLogSource

        func run() async throws {
            do {
                if let server = source.server {
                    let escaped =
                        requestID.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(.init(charactersIn: "/"))) ?? requestID
                    print(try await PredictionLogSource.get(server, "/api/v1/predictions/\(escaped)", access: source.access).text)
                    return
                }
                let store = try await source.open()
                let records: [PredictionRecord]
                do {
                    records = try await store.records(requestID: requestID)
                } catch {
                    await store.close()
                    throw error
                }
                await store.close()
                guard !records.isEmpty else { throw TernError.notFound("no prediction with request id '\(requestID)' in the prediction log") }
                print(PredictionJSON.object(records: records, next: nil))
            } catch {
                fail(error)
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export",
            abstract: "Write the prediction log's records as CSV (one line per predicted row) or JSON Lines.")

        @Option(help: "Only this model's predictions (CSV columns follow the first record: export one model at a time).")
        var model: String?

        @Option(help: ArgumentHelp("From this time: RFC 3339 (2026-11-30T08:00:00Z), a date, or an age (15m, 24h, 7d).", valueName: "time"))
        var since: String?

        @Option(help: ArgumentHelp("Before this time (same forms as --since).", valueName: "time"))
        var until: String?

        @Option(help: "csv or jsonl.")
        var format: String = "csv"

        @Option(name: .shortAndLong, help: ArgumentHelp("Write here instead of standard output.", valueName: "file"))
        var output: String?

        @OptionGroup var source: PredictionLogSource

        func validate() throws {
            guard PredictionExport.Format(rawValue: format) != nil else { throw ValidationError("--format must be csv or jsonl") }
        }

        func run() async throws {
            let format = PredictionExport.Format(rawValue: format)!
            do {
                let since = try self.since.map { try PredictionTime.parse($0, name: "--since") }
                let until = try self.until.map { try PredictionTime.parse($0, name: "--until") }
                if let output { FileManager.default.createFile(atPath: output, contents: nil) }
                let handle = output.flatMap { FileHandle(forWritingAtPath: $0) } ?? FileHandle.standardOutput
                var after: Int64 = 0
                var total = 0
                if let server = source.server {
                    while true {
                        var query = "format=\(format.rawValue)&limit=5000&after=\(after)"
                        if let model { query += "&model=" + (model.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? model) }
                        if let since { query += "&since=" + PredictionTime.format(since).replacingOccurrences(of: "+", with: "%2B") }
                        if let until { query += "&until=" + PredictionTime.format(until).replacingOccurrences(of: "+", with: "%2B") }
                        let page = try await PredictionLogSource.get(server, "/api/v1/predictions?" + query, access: source.access)
                        handle.write(Data(page.text.utf8))
                        guard let next = page.next else { break }
                        after = next
                    }
                } else {
                    let store = try await source.open()
                    do {
                        while true {
                            let page = try await store.records(model: model, since: since, until: until, afterID: after, limit: 5000)
                            handle.write(Data(PredictionExport.text(page.map(\.record), format: format, header: after == 0).utf8))
                            total += page.count
                            guard page.count == 5000, let last = page.last else { break }
                            after = last.id
                        }
                    } catch {
                        await store.close()
                        throw error
                    }
                    await store.close()
                }
                if output != nil { try handle.close() }
            } catch {
                fail(error)
            }
        }
    }
}

/// Where the prediction log is read: a running server (`--server`), or the store itself.
struct PredictionLogSource: ParsableArguments {
    @Option(help: ArgumentHelp("Data folder whose predictions.sqlite to read (default: $TERN_DATA, else .tern/data).", valueName: "dir"))
    var data: String?

    @Option(
        help: ArgumentHelp(
            "The registry database tern serve used: a postgres:// URL holds the log too; "
                + "for an SQLite file, predictions.sqlite beside it.", valueName: "url"))
    var database: String?

    @Option(help: ArgumentHelp("The prediction log itself, as tern serve --prediction-log named it.", valueName: "url"))
    var predictionLog: String?

    @Option(help: ArgumentHelp("Read through a running server's API instead (http://host:8000).", valueName: "url"))
    var server: String?

    @OptionGroup var access: ServerAccess

    @Option(help: ArgumentHelp("The key file of an encrypted log (default: $TERN_PREDICTION_LOG_KEY).", valueName: "file"))
    var predictionLogKey: String?

    /// The log, opened for reading (encrypted records opened with the key file).
    func open() async throws -> any PredictionSink {
        try await location().open(cipher: try RegistryOptions.predictionLogCipher(predictionLogKey))
    }

    func location() throws -> PredictionLogLocation {
        var options = RegistryOptions()
        options.data = data
        options.database = database
        guard let location = try options.predictionLogLocation(predictionLog) else {
            throw ValidationError("--prediction-log off names no log to read")
        }
        if case .database(.sqlite(let path)) = location, !FileManager.default.fileExists(atPath: path) {
            throw TernError.notFound("no prediction log at \(path) (tern serve writes it there; give --data, --database or --prediction-log)")
        }
        return location
    }

    /// A GET on the server's API: its text and the next page's `after`, or its error as the error.
    static func get(_ server: String, _ path: String, access: ServerAccess = ServerAccess()) async throws -> (text: String, next: Int64?) {
        let base = server.hasSuffix("/") ? String(server.dropLast()) : server
        let client = try RegistryOptions.httpClient(caCert: access.caCert)
        defer { _ = client.shutdown() }
        let response: HTTPClientResponse
        do {
            var request = HTTPClientRequest(url: base + path)
            if let key = RegistryOptions.apiKey(access.apiKey) { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
            response = try await client.execute(request, timeout: .seconds(300))
        } catch {
            throw ServerErrors.unreachable(base, error)
        }
        let text = String(buffer: try await response.body.collect(upTo: 1 << 30))
        guard response.status == .ok else {
            let message = (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?["error"] as? String ?? text
            if response.status == .notFound, message.hasPrefix("no route") {
                throw TernError.invalidArgument("\(base) keeps no prediction log (started with --prediction-log off)")
            }
            throw ServerErrors.answered(base, status: Int(response.status.code), message: message)
        }
        return (text, response.headers.first(name: "Tern-Next-After").flatMap { Int64($0) })
    }
}

extension RegistryOptions {
    /// The prediction log's key file: given, else `$TERN_PREDICTION_LOG_KEY`; nil when neither.
    static func predictionLogCipher(_ explicit: String?) throws -> PayloadCipher? {
        try (explicit ?? ProcessInfo.processInfo.environment["TERN_PREDICTION_LOG_KEY"].flatMap { $0.isEmpty ? nil : $0 })
            .map { path throws(TernError) in try PayloadCipher(file: path) }
    }

    /// Where `tern serve` keeps the prediction log: `explicit` ("off" for none), else the registry's
    /// PostgreSQL database, else predictions.sqlite beside the registry's SQLite file or in the data folder.
    func predictionLogLocation(_ explicit: String?) throws -> PredictionLogLocation? {
        if let explicit {
            if explicit == "off" { return nil }
            return try PredictionLogLocation(explicit)
        }
        if let database {
            switch try RegistryLocation(database) {
            case .postgres(let url): return .database(.postgres(url: url))
            case .sqlite(let path):
                let folder = (path as NSString).deletingLastPathComponent
                return .database(.sqlite(path: (folder.isEmpty ? "." : folder) + "/predictions.sqlite"))
            }
        }
        return .database(.sqlite(path: dataFolder + "/predictions.sqlite"))
    }
}

/// How a command that reads a server's API authenticates and trusts it (the registry commands' options
/// of the same names).
struct ServerAccess: ParsableArguments {
    @Option(help: ArgumentHelp("With --server: the API key to send (default: $TERN_API_KEY).", valueName: "key"))
    var apiKey: String?

    @Option(
        help: ArgumentHelp(
            "With an https:// --server: trust this CA bundle (PEM) (default: $TERN_CA_CERT, else the system's).",
            valueName: "file"))
    var caCert: String?

    init() {}

    init(apiKey: String?, caCert: String?) {
        self.apiKey = apiKey
        self.caCert = caCert
    }
}
