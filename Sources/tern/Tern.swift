import ArgumentParser
import Foundation
import Logging
import TernCore
import TernONNX

@main
struct Tern: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tern",
        abstract: "Package, register and serve ONNX models over the Open Inference Protocol v2 (KServe/Triton), fast, on a CPU.",
        discussion: """
            Put each model in a folder, one sub-folder per version:

              models/credit-risk/1/model.onnx
              models/credit-risk/2/model.onnx
              models/credit-risk/config.yaml      (optional)

            then serve it and call it with any v2 client (tritonclient, kserve, curl):

              tern serve --models models
              curl localhost:8000/v2/models/credit-risk/infer \\
                -d @examples/requests/credit-risk.json

            Or package each version with its training-data profile and metrics, register
            it, and move aliases while serving:

              tern pack model.onnx --name credit-risk --reference train.csv \\
                --holdout test.csv --label-column default
              tern push credit-risk.tern --alias production
              tern serve --data .tern/data
              tern models alias credit-risk production 2 --server http://localhost:8000

            ONNX Runtime is found from --onnxruntime, then TERN_ONNXRUNTIME_LIB,
            then beside the executable (../lib/tern, ../lib: scripts/install.sh puts it
            there), then .tern/onnxruntime (scripts/install-onnxruntime.sh), then the
            system loader. tern --version prints Tern's version.

            Without API keys a server listens on 127.0.0.1 only. To let other machines
            in, create keys (printed once; clients send 'Authorization: Bearer KEY'):

              tern keys create scoring-app --scopes infer
              tern keys create ci --scopes read,admin --expires 90d

            TLS, signed bundles, rate limits: docs/security.md.

            One grammar for every command (a flag means the same wherever it appears):
              --models DIR            a model folder (serve); a key's model grants are --grant
              --data DIR, --database URL
                                      the registry (default: $TERN_DATA, else .tern/data)
              --server URL            a running server instead, with --api-key KEY (or
                                      $TERN_API_KEY) and --ca-cert FILE (or $TERN_CA_CERT)
              --input FILE            what a command reads; --input-format, its format
              -o, --output FILE       what a command writes; --format, the output's format
              --actor NAME            who a change is recorded as in the audit trail
              --json                  machine-readable output instead of a table
            Old spellings (keys create --models, predict --format, health --url,
            create-signing --out) still work for one release and say so.
            """,
        subcommands: [
            Serve.self, Predict.self, Inspect.self, Pack.self, Push.self, Models.self, Audit.self, Keys.self, RegistryCommand.self, Predictions.self,
            Drift.self, Alerts.self, Explain.self, Batch.self, RolloutCommand.self, Health.self,
        ]
    )

    // `tern --version` is answered here, before parsing: ArgumentParser's built-in flag (and any flag of the
    // root command) would also be matched after a subcommand, where `--version N` is a model's version
    // (pack, push).
    static func main() async {
        // Before anything loads ONNX Runtime, here or in a child process (the pickle converter's Python).
        ONNXRuntime.keepTelemetryOff()
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments == ["--version"] {
            print(TernVersion.version)
            return
        }
        await main(arguments)
    }
}

/// Options every command that runs a model shares: the library, and how its sessions run.
struct RuntimeOptions: ParsableArguments {
    @OptionGroup var library: RuntimeLibraryOption

    @Option(help: "Threads one model run may use (intra-op). 1 suits serving many requests at once.")
    var intraOpThreads: Int = 1

    @Option(help: ArgumentHelp("Graph optimisation level: disabled, basic, extended or all.", valueName: "level"))
    var graphOptimization: String = "all"

    func sessionOptions() throws -> SessionOptions {
        guard let level = SessionOptions.GraphOptimization(rawValue: graphOptimization) else {
            throw ValidationError("--graph-optimization must be one of: disabled, basic, extended, all")
        }
        guard intraOpThreads >= 1 else { throw ValidationError("--intra-op-threads must be at least 1") }
        return SessionOptions(intraOpThreads: intraOpThreads, graphOptimization: level)
    }

    func openRuntime() -> ONNXRuntime { library.openRuntime() }
}

/// Prints a core error as one line and exits with status 1.
func fail(_ error: any Error) -> Never {
    let message = (error as? TernError)?.message ?? "\(error)"
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    Foundation.exit(1)
}

/// Where ONNX Runtime's library is: all a command needs that loads a model without tuning how it runs
/// (push and inspect check a model, they do not serve it).
struct RuntimeLibraryOption: ParsableArguments {
    @Option(name: .customLong("onnxruntime"), help: ArgumentHelp("Path of libonnxruntime.so to use.", valueName: "path"))
    var libraryPath: String?

    func openRuntime() -> ONNXRuntime { Self.openRuntime(libraryPath: libraryPath) }

    /// Opens ONNX Runtime, or exits 1 with one line saying how to install it.
    static func openRuntime(libraryPath: String?) -> ONNXRuntime {
        var directories = [FileManager.default.currentDirectoryPath + "/.tern/onnxruntime/lib"]
        // Also next to the executable's project: .build/debug/tern -> <project>/.tern/onnxruntime/lib.
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            var url = URL(fileURLWithPath: executable).deletingLastPathComponent()
            // An installed or copied tern: PREFIX/bin/tern finds PREFIX/lib/tern (scripts/install.sh), or a lib/ beside bin/.
            directories.insert(contentsOf: [url.path + "/../lib/tern", url.path + "/../lib", url.path], at: 0)
            for _ in 0..<5 {
                directories.append(url.path + "/.tern/onnxruntime/lib")
                url.deleteLastPathComponent()
            }
        }
        let candidates = ONNXRuntime.candidates(
            explicitPath: libraryPath, environmentPath: ProcessInfo.processInfo.environment["TERN_ONNXRUNTIME_LIB"],
            localInstallDirectories: directories)
        do {
            return try ONNXRuntime.open(candidates: candidates)
        } catch {
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            Foundation.exit(1)
        }
    }
}
