import ArgumentParser
import Foundation
import TernCore
import TernRegistry

/// `tern registry gc`: the registry's own upkeep.
struct RegistryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry", abstract: "Look after the registry itself.", subcommands: [GC.self])

    struct GC: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc",
            abstract: "Remove archives no version references (a push killed midway) and half-written files.",
            discussion: "Only those older than --min-age go (a younger one may belong to a push in progress). "
                + "tern serve does the same at start, with the default age. Audited as 'gc'.")

        @Option(help: ArgumentHelp("Leave anything younger than this (such as 1h, 30m, 0s).", valueName: "age"))
        var minAge: String = "1h"

        @Flag(help: "Say what would go, remove nothing.")
        var dryRun = false

        @Flag(help: "Print JSON.")
        var json = false

        @OptionGroup var registry: RegistryOptions

        func run() async throws {
            if registry.server != nil {
                throw ValidationError("tern registry gc works where the registry is: give --data or --database, not --server")
            }
            let age = try parseAge(minAge == "0s" || minAge == "0" ? "1s" : minAge)
            let minimum: Duration = minAge == "0s" || minAge == "0" ? .zero : age
            try await withRegistry(registry) { client in
                guard let local = client as? LocalRegistry else { return }
                let report = try await local.registry.collectGarbage(minimumAge: minimum, dryRun: dryRun)
                if json { return try printJSON(report) }
                let verb = dryRun ? "would remove" : "removed"
                print("\(verb) \(report.artifacts.count) unreferenced archive(s) and \(report.partials) half-written file(s), \(report.bytes) bytes")
                for sha in report.artifacts { print("  \(sha)") }
            }
        }
    }
}
