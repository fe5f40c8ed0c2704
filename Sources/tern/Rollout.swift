import ArgumentParser
import Foundation
import TernCore
import TernRegistry
import TernRollouts
import TernServer

/// `tern rollout`: progressive rollouts, driven by a running `tern serve` on the registry.
struct RolloutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout",
        abstract: "Roll a new version out step by step, rolled back automatically when it does worse than the stable one.",
        discussion: """
            A rollout gives the candidate each step's share of the model's requests that name no version (the rest go to the version the alias names), while a tern serve on the registry watches both: the candidate's error rate and p99 latency (and, with --max-accuracy-drop and ground-truth feedback, its accuracy) against the stable version's over the same step. It is rolled back (weight 0, the alias unchanged; an alert goes to the alert rules' webhooks, the reason to the audit trail) at once when, with --min-requests requests in the step, its error rate is out of bounds, or when its circuit opens; at the end of the step when its p99 or accuracy is. A step lasts at least --interval and until the candidate has --min-requests requests; after the last, the alias moves to the candidate through the validation gate (tern models gate), unless --no-auto-promote. Unless the model's traffic policy has a fallback, the stable version becomes it: it answers the candidate's failures, so clients see none. The state lives in the registry: a rollout survives restarts, and with several replicas on one PostgreSQL one of them (a lease) drives it.

            Examples:
              tern rollout start credit-risk --to 2 --steps 5,25,50,100 --interval 10m --server http://localhost:8000
              tern rollout status credit-risk
              tern rollout pause credit-risk | resume | abort | promote [--force]
            """,
        subcommands: [Start.self, Status.self, Pause.self, Resume.self, Abort.self, Promote.self])

    static func describe(_ rollout: Rollout) -> String {
        let steps = rollout.steps.map { share in
            (share == share.rounded() ? String(Int(share)) : String(share)) + "%"
        }
        var text = "v\(rollout.candidate) against v\(rollout.stable) (\(rollout.alias)): \(rollout.state)"
        if rollout.isActive {
            text +=
                ", step \(rollout.step + 1) of \(rollout.steps.count) at \(steps[rollout.step]) (steps \(steps.joined(separator: ", ")); "
                + "each at least \(Int(rollout.intervalSeconds)) s and \(rollout.minRequests) requests)"
        }
        if let reason = rollout.reason, !reason.isEmpty { text += ": \(reason)" }
        return text
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "start", abstract: "Start rolling a version out.")
        @Argument(help: "The model.") var name: String
        @Option(help: "The candidate version.") var to: Int
        @Option(help: ArgumentHelp("The candidate's share at each step, in percent (default 5,25,50,100).", valueName: "s,...")) var steps: String?
        @Option(help: ArgumentHelp("How long each step lasts at least: seconds, or 30s, 10m, 1h (default 10m).", valueName: "duration"))
        var interval: String?
        @Option(help: "Requests the candidate must have in a step before it is judged (default 100).") var minRequests: Int?
        @Option(help: "How much higher the candidate's error rate may be, absolute (default 0.01).") var maxErrorRateIncrease: Double?
        @Option(help: "How many times the stable version's p99 latency the candidate's may be (default 1.5).") var maxLatencyRatio: Double?
        @Option(
            help:
                "How much lower its accuracy on ground-truth feedback may be (default 0.05; judged once both versions have 20 rows of feedback in a step)."
        ) var maxAccuracyDrop: Double?
        @Flag(help: "Start without running the validation gate first (audited as a forced gate).") var skipGate = false
        @Option(help: "The alias that names the stable version, moved at the end (default production).") var alias: String?
        @Flag(inversion: .prefixedNo, help: "Move the alias (through the gate) when the last step passes.") var autoPromote = true
        @OptionGroup var registry: RegistryOptions
        @OptionGroup var changes: ChangeOptions

        func run() async throws {
            var start = RolloutStart(to: to)
            start.alias = alias
            if let steps {
                start.steps = try steps.split(separator: ",").map { text in
                    guard let share = Double(text.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "%", with: "")) else {
                        throw ValidationError("--steps takes shares in percent, such as 5,25,50,100")
                    }
                    return share
                }
            }
            if let interval { start.interval = Double(interval).map { .seconds($0) } ?? .text(interval) }
            start.minRequests = minRequests
            start.maxErrorRateIncrease = maxErrorRateIncrease
            start.maxLatencyRatio = maxLatencyRatio
            start.maxAccuracyDrop = maxAccuracyDrop
            start.autoPromote = autoPromote
            if skipGate { start.skipGate = true }
            try await withRegistry(registry, changes: changes) { client in
                let rollout = try await client.startRollout(model: name, start)
                print("\(name): rollout " + RolloutCommand.describe(rollout))
                if let skipped = rollout.gateSkipped { print("gate: \(skipped)") }
                if registry.server == nil {
                    print("a tern serve on this registry drives it (every replica follows its traffic share)")
                }
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "status", abstract: "Show a model's rollout, with its step's numbers (from a server).")
        @Argument(help: "The model.") var name: String
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var registry: RegistryOptions

        func run() async throws {
            try await withRegistry(registry) { client in
                let (rollout, numbers) = try await client.rollout(model: name)
                if json {
                    struct View: Encodable {
                        var rollout: Rollout
                        var current_step: RolloutStepNumbers?
                    }
                    return try printJSON(View(rollout: rollout, current_step: numbers))
                }
                print("\(name): rollout " + RolloutCommand.describe(rollout))
                if let numbers {
                    func line(_ label: String, _ version: Int, _ n: RolloutStepNumbers.Version) -> String {
                        String(format: "  %@ v%d: %d requests, %d failed (%.2f%%)", label, version, n.requests, n.failed, n.errorRate * 100)
                            + (n.p99Milliseconds.map { String(format: ", p99 %.2f ms", $0) } ?? "")
                            + (n.runMilliseconds.map { String(format: ", run %.2f ms", $0) } ?? "")
                    }
                    print(String(format: "  this step so far (%.0f s, as the answering server saw it):", numbers.stepSeconds))
                    print(line("candidate", rollout.candidate, numbers.candidate))
                    print(line("stable   ", rollout.stable, numbers.stable))
                    if let breach = numbers.breach { print("  out of bounds: \(breach)") }
                }
                for event in rollout.history { print("  \(event.at)  \(event.event): \(event.detail)") }
            }
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "pause", abstract: "Hold the rollout at its step (traffic shares stay).")
        @OptionGroup var action: ActionOptions
        func run() async throws { try await action.perform("pause") }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "resume", abstract: "Go on from the step it was paused at (judged afresh).")
        @OptionGroup var action: ActionOptions
        func run() async throws { try await action.perform("resume") }
    }

    struct Abort: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "abort", abstract: "End it: the traffic policy it replaced comes back, the alias stays.")
        @OptionGroup var action: ActionOptions
        func run() async throws { try await action.perform("abort") }
    }

    struct Promote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "promote", abstract: "End it now by moving the alias to the candidate, through the validation gate.")
        @OptionGroup var action: ActionOptions
        @Flag(help: "Move the alias even if the gate fails (audited as forced).") var force = false
        @OptionGroup var runtimeOptions: RuntimeLibraryOption
        func run() async throws { try await action.perform("promote", force: force, runtime: runtimeOptions) }
    }

    struct ActionOptions: ParsableArguments {
        @Argument(help: "The model.") var name: String
        @OptionGroup var registry: RegistryOptions
        @OptionGroup var changes: ChangeOptions

        func perform(_ action: String, force: Bool = false, runtime: RuntimeLibraryOption? = nil) async throws {
            try await withRegistry(registry, changes: changes, runtime: runtime) { client in
                let rollout = try await client.updateRollout(model: name, action: action, force: force)
                print("\(name): rollout " + RolloutCommand.describe(rollout))
            }
        }
    }
}
