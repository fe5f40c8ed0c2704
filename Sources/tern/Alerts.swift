import ArgumentParser
import Foundation
import TernCore
import TernMonitoring
import TernServer

struct Alerts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alerts",
        abstract: "Alert rules: check a rules file, or export it for Prometheus and Alertmanager.",
        subcommands: [Check.self, Export.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check", abstract: "Check an alert rules file (as tern serve --alert-rules reads it).")

        @Argument(help: "The rules file (YAML).")
        var rules: String

        func run() async throws {
            do {
                let configuration = try AlertConfiguration.load(path: rules)
                print(
                    "\(rules): \(configuration.rules.count) rules, evaluated every \(configuration.interval), "
                        + "\(configuration.webhooks.count) webhooks")
            } catch {
                fail(error)
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export",
            abstract: "Write the rules as a Prometheus rules file (each over the tern_alert_value gauge Tern exports).")

        @Argument(help: "The rules file (YAML).")
        var rules: String

        @Option(name: .shortAndLong, help: ArgumentHelp("Where to write (default: standard output).", valueName: "file"))
        var output: String?

        func run() async throws {
            do {
                let text = try AlertConfiguration.load(path: rules).prometheusRules()
                if let output {
                    guard FileManager.default.createFile(atPath: output, contents: Data(text.utf8)) else {
                        throw TernError.invalidArgument("cannot write '\(output)'")
                    }
                } else {
                    print(text, terminator: "")
                }
            } catch {
                fail(error)
            }
        }
    }
}
