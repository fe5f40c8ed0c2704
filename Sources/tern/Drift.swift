import ArgumentParser
import Foundation
import TernBundle
import TernCodecs
import TernCore
import TernMonitoring
import TernServer
import TernStatistics

struct Drift: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drift",
        abstract: "Check data drift between a reference data set and current data.",
        subcommands: [Status.self, Compare.self, Report.self])

    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "report",
            abstract: "Write a drift report as one self-contained HTML page (histograms and statistics per feature).",
            discussion: "From two CSV files (--reference and --current), or from a running server's live drift (--server and --model).")

        @Option(help: ArgumentHelp("The reference data, CSV with a header.", valueName: "csv"))
        var reference: String?

        @Option(help: ArgumentHelp("The current data, CSV with a header.", valueName: "csv"))
        var current: String?

        @Option(help: ArgumentHelp("A running server (http://host:8000) whose live drift to report.", valueName: "url"))
        var server: String?

        @OptionGroup var access: ServerAccess

        @Option(help: "With --server: the model (model@alias works too).")
        var model: String?

        @Option(help: "With --server: how many of the version's newest predictions.")
        var window: Int = 1000

        @Option(name: .shortAndLong, help: ArgumentHelp("Where to write the page.", valueName: "file"))
        var output: String = "drift-report.html"

        func validate() throws {
            if server != nil {
                guard model != nil, reference == nil, current == nil else {
                    throw ValidationError("give --server with --model, or --reference with --current")
                }
            } else if reference == nil || current == nil {
                throw ValidationError("give --reference and --current (two CSV files), or --server and --model")
            }
        }

        func run() async throws {
            do {
                let title: String, subtitle: String, features: [FeatureDrift]
                if let server, let model {
                    let path =
                        "/api/v1/models/"
                        + (model.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(.init(charactersIn: "/"))) ?? model)
                        + "/drift?window=\(window)"
                    let decoder = JSONDecoder()
                    decoder.keyDecodingStrategy = .convertFromSnakeCase
                    decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
                    let answer = try decoder.decode(
                        DriftAnswer.self, from: Data(try await PredictionLogSource.get(server, path, access: access).text.utf8))
                    title = "Drift: \(answer.model) v\(answer.version)"
                    subtitle =
                        "\(answer.predictions) newest predictions (\(answer.rows) rows" + (answer.from.map { ", \($0) to \(answer.to ?? "")" } ?? "")
                        + ") against the bundle's reference sample (\(answer.referenceRows) rows); \(answer.drifted.count) of \(answer.features.count) features drifted"
                    features = answer.features
                } else {
                    let referenceTable = try Compare.read(reference!), currentTable = try Compare.read(current!)
                    let names = referenceTable.columns.filter { currentTable.index(of: $0) != nil }
                    guard !names.isEmpty else { throw TernError.invalidArgument("the two files share no column") }
                    func cells(_ table: CSVTable) -> [String: [String]] {
                        Dictionary(uniqueKeysWithValues: names.map { ($0, table.column(table.index(of: $0)!)) })
                    }
                    features = DriftReport.compare(reference: cells(referenceTable), live: cells(currentTable), columns: names)
                    title = "Drift: " + (current! as NSString).lastPathComponent + " against " + (reference! as NSString).lastPathComponent
                    subtitle =
                        "\(currentTable.rows.count) current rows against \(referenceTable.rows.count) reference rows; "
                        + "\(features.filter(\.drifted).count) of \(features.count) columns drifted"
                }
                let page = DriftHTML.page(title: title, subtitle: subtitle, features: features)
                guard FileManager.default.createFile(atPath: output, contents: Data(page.utf8)) else {
                    throw TernError.invalidArgument("cannot write '\(output)'")
                }
                print("wrote \(output) (\(features.count) features, \(features.filter(\.drifted).count) drifted)")
            } catch {
                fail(error)
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "status",
            abstract: "Drift of a served model: its newest predictions (the prediction log) against its bundle's reference data.",
            discussion: "Asks a running server (GET /api/v1/models/MODEL/drift); the server must serve a registry and keep the prediction log.")

        @Argument(help: "The model (model@alias or model@version works too).")
        var model: String

        @Option(help: ArgumentHelp("The server (http://host:8000).", valueName: "url"))
        var server: String = "http://localhost:8000"

        @OptionGroup var access: ServerAccess

        @Option(help: "A version number or alias (default: the one requests without a version get).")
        var version: String?

        @Option(help: "How many of the version's newest predictions to compare.")
        var window: Int = 1000

        @Flag(help: "Print the server's JSON.")
        var json = false

        @Flag(help: "Exit 3 when any feature drifted.")
        var failOnDrift = false

        func run() async throws {
            do {
                var path =
                    "/api/v1/models/"
                    + (model.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(.init(charactersIn: "/"))) ?? model)
                    + "/drift?window=\(window)"
                if let version { path += "&version=" + (version.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? version) }
                let text = try await PredictionLogSource.get(server, path, access: access).text
                let decoder = JSONDecoder()
                decoder.keyDecodingStrategy = .convertFromSnakeCase
                decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
                let answer = try decoder.decode(DriftAnswer.self, from: Data(text.utf8))
                if json {
                    print(text)
                } else {
                    print(
                        "\(answer.model) v\(answer.version): \(answer.predictions) predictions"
                            + (answer.from.map { " from \($0) to \(answer.to ?? "")" } ?? ""))
                    print(Compare.table(answer.features, reference: answer.referenceRows, current: answer.rows))
                }
                if failOnDrift, !answer.drifted.isEmpty { throw ExitCode(3) }
            } catch let exit as ExitCode {
                throw exit
            } catch {
                fail(error)
            }
        }
    }

    struct Compare: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "compare",
            abstract:
                "Compare two CSV files column by column: PSI, Jensen-Shannon, Kolmogorov-Smirnov and Wasserstein (numeric columns), chi-squared and new or vanished categories (the others).",
            discussion: """
                Every statistic is computed as scipy computes it (ks_2samp with its exact p-value up to 10,000 values \
                a side, wasserstein_distance, chi2_contingency, jensenshannon with base 2); PSI and Jensen-Shannon of \
                numeric columns use the reference's decile bins. Missing values (empty, NaN, NA, null) are left out \
                and reported as a rate. A column drifts when its PSI is above 0.2, a test's p-value is below 0.01 with \
                at least 100 current values, or new categories appear. Exits 0 either way; with --fail-on-drift, 3 \
                when any column drifted.
                """)

        @Argument(help: "The reference data (the training data, or a known-good period), CSV with a header.")
        var reference: String

        @Argument(help: "The current data, CSV with a header.")
        var current: String

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        @Option(help: "Only these columns (comma-separated); by default every column both files have.")
        var columns: String?

        @Flag(help: "Exit 3 when any column drifted (for scripts and CI).")
        var failOnDrift = false

        func run() async throws {
            do {
                let referenceTable = try Self.read(reference)
                let currentTable = try Self.read(current)
                var names = referenceTable.columns.filter { currentTable.index(of: $0) != nil }
                if let columns {
                    let wanted = columns.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                    for name in wanted where !names.contains(name) {
                        throw TernError.invalidArgument("column '\(name)' is not in both files (they share: \(names.joined(separator: ", ")))")
                    }
                    names = wanted
                }
                guard !names.isEmpty else {
                    throw TernError.invalidArgument("the two files share no column (reference: \(referenceTable.columns.joined(separator: ", ")))")
                }
                func cells(_ table: CSVTable) -> [String: [String]] {
                    Dictionary(uniqueKeysWithValues: names.map { ($0, table.column(table.index(of: $0)!)) })
                }
                let report = DriftReport.compare(reference: cells(referenceTable), live: cells(currentTable), columns: names)
                    .sorted { ($0.drifted ? 1 : 0, $0.severity) > ($1.drifted ? 1 : 0, $1.severity) }
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                    encoder.keyEncodingStrategy = .convertToSnakeCase
                    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
                    print(String(decoding: try encoder.encode(report), as: UTF8.self))
                } else {
                    print(Self.table(report, reference: referenceTable.rows.count, current: currentTable.rows.count))
                }
                if failOnDrift, report.contains(where: \.drifted) { throw ExitCode(3) }
            } catch let exit as ExitCode {
                throw exit
            } catch {
                fail(error)
            }
        }

        static func read(_ path: String) throws -> CSVTable {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw TernError.invalidArgument("cannot read '\(path)'")
            }
            return try CSVTable(text: String(decoding: data, as: UTF8.self), source: path)
        }

        static func table(_ report: [FeatureDrift], reference: Int, current: Int) -> String {
            func number(_ value: Double?, _ format: String = "%.4f") -> String {
                guard let value else { return "-" }
                return value != 0 && abs(value) < 1e-4 ? String(format: "%.2e", value) : String(format: format, value)
            }
            var rows = [["column", "kind", "drift", "PSI", "JS", "KS", "KS p", "Wasserstein", "chi2 p", "missing ref/cur", "notes"]]
            for item in report {
                rows.append([
                    item.feature, item.kind.rawValue, item.drifted ? "DRIFT" : "ok", number(item.psi), number(item.jensenShannon),
                    number(item.ksStatistic), number(item.ksPValue), number(item.wasserstein, "%.4g"), number(item.chiSquaredPValue),
                    String(format: "%.1f%%/%.1f%%", item.referenceMissingRate * 100, item.liveMissingRate * 100),
                    (item.reasons + (item.vanishedCategories.map { $0.isEmpty ? [] : ["vanished: " + $0.joined(separator: ", ")] } ?? []))
                        .joined(separator: "; "),
                ])
            }
            let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max()! }
            let lines = rows.map { row in
                row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                    .trimmingCharacters(in: .whitespaces)
            }
            let drifted = report.filter(\.drifted).count
            return "reference: \(reference) rows, current: \(current) rows; \(drifted) of \(report.count) columns drifted\n"
                + lines.joined(separator: "\n")
        }
    }
}
