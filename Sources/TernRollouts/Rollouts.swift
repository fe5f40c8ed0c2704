import AsyncHTTPClient
import CoreMetrics
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TernBundle
import TernCore
import TernModels
import TernMonitoring
import TernRegistry

/// Each version's requests, failures and latency, for the models under rollout, as this replica served
/// them: every replica records its share of a window in the registry, and the driver judges their sum.
/// A failure a fallback answered counts against the version that failed; a request its open circuit sent
/// to the fallback counts as skipped; requests refused as the client's mistake count for no version.
package final class RolloutWatch: InferenceObserver, Sendable {
    package typealias Tally = VersionTally

    private let active = Atomic<Bool>(false)
    private struct State {
        var models: [String: Date] = [:]
        var tallies: [String: [Int: Tally]] = [:]
        /// Each watched version's run-time counters and their value when watching began (run time comes from
        /// the version's own statistics, which count whether or not it is watched).
        var compute: [String: [Int: (statistics: ModelStatistics, origin: ModelStatistics.Counter)]] = [:]
    }
    private let state = Mutex(State())

    package init() {}

    /// The models to watch (those with an active rollout); others are forgotten.
    package func watch(_ models: Set<String>) {
        state.withLock { state in
            let now = Date()
            state.models = Dictionary(uniqueKeysWithValues: models.map { ($0, state.models[$0] ?? now) })
            state.tallies = state.tallies.filter { models.contains($0.key) }
            state.compute = state.compute.filter { models.contains($0.key) }
        }
        active.store(!models.isEmpty, ordering: .relaxed)
    }

    /// Starts watching one more model now (a rollout started on this replica: its first requests count).
    package func watch(adding model: String) {
        state.withLock { state in
            if state.models[model] == nil { state.models[model] = Date() }
        }
        active.store(true, ordering: .relaxed)
    }

    /// Since when this replica has counted the model's requests.
    package func watchedSince(_ model: String) -> Date? {
        state.withLock { $0.models[model] }
    }

    package func requestEnded(_ event: InferenceEvent) {
        guard active.load(ordering: .relaxed), event.context.operation == .infer, let served = event.served else { return }
        let micros = Double(event.duration.components.seconds) * 1e6 + Double(event.duration.components.attoseconds) / 1e12
        let bucket = VersionTally.bucket(microseconds: micros)
        state.withLock { state in
            guard state.models[served.name] != nil else { return }
            if state.compute[served.name]?[served.version]?.statistics !== served.statistics {
                state.compute[served.name, default: [:]][served.version] = (served.statistics, served.statistics.snapshot.compute)
            }
            if let note = event.fallback {
                // The fallback's answer: not the answering version's own latency.
                if note.kind == .circuitOpen {
                    state.tallies[served.name, default: [:]][note.from.version, default: Tally()].skipped += 1
                } else {
                    state.tallies[served.name, default: [:]][note.from.version, default: Tally()].failed += 1
                }
                return
            }
            switch event.outcome {
            case .success:
                state.tallies[served.name, default: [:]][served.version, default: Tally()].succeeded += 1
                state.tallies[served.name, default: [:]][served.version, default: Tally()].buckets[bucket] += 1
            case .serverError, .timeout:
                state.tallies[served.name, default: [:]][served.version, default: Tally()].failed += 1
            case .clientError:
                break
            }
        }
    }

    package func tally(model: String, version: Int) -> Tally {
        let (counted, compute) = state.withLock { ($0.tallies[model]?[version] ?? Tally(), $0.compute[model]?[version]) }
        var tally = counted
        if let (statistics, origin) = compute {
            let now = statistics.snapshot.compute
            tally.computeRequests = now.count - origin.count
            tally.computeNanoseconds = now.nanoseconds - origin.nanoseconds
        }
        return tally
    }
}

/// Drives the registry's running rollouts: every tick, the replica that holds the `rollouts` lease judges
/// each step on what it has served since the step began, rolls back a candidate out of bounds, advances a
/// step that lasted its interval with enough requests, and promotes at the end (through the validation gate).
package final class RolloutDriver: Service, Sendable {
    package let models: RegistryModels
    package let watch: RolloutWatch
    package let feedback: LiveFeedback?
    package let gate: ValidationGate
    package let webhooks: [String]
    package let tick: Duration
    package let factory: any MetricsFactory
    package let logger: Logger
    /// This replica, in the lease.
    package let holder = "tern-" + UUID().uuidString.prefix(8).lowercased()
    private let baselines = Mutex<[String: Baseline]>([:])
    private let holding = Atomic<Bool>(false)

    /// This replica's tallies when a window began (or when it first saw the window).
    package struct Baseline: Sendable {
        var key: String
        var candidate: RolloutWatch.Tally
        var stable: RolloutWatch.Tally
    }
    /// The driver's memory of each model's last judged window (all replicas' numbers), for the stable
    /// version's error rate where it answers too few requests (the last step).
    package struct Judged: Sendable {
        var key: String
        var stable: RolloutWatch.Tally
        var earlierStable: RolloutWatch.Tally?
    }
    private let judged = Mutex<[String: Judged]>([:])

    package init(
        models: RegistryModels, watch: RolloutWatch, feedback: LiveFeedback?, gate: ValidationGate, webhooks: [String],
        tick: Duration = .seconds(1), factory: any MetricsFactory, logger: Logger
    ) {
        self.models = models
        self.watch = watch
        self.feedback = feedback
        self.gate = gate
        self.webhooks = webhooks
        self.tick = tick
        self.factory = factory
        self.logger = logger
    }

    package func run() async throws {
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.pass(client: client)
                try? await Task.sleep(for: self.tick)
            }
        }
        try? await client.shutdown()
    }

    package func pass(client: HTTPClient) async {
        do {
            let active = try await models.registry.rollouts().filter(\.isActive)
            watch.watch(Set(active.map(\.model)))
            for rollout in try await models.registry.rollouts() {
                Gauge(
                    label: "tern_rollout_candidate_weight", dimensions: [("model", rollout.model), ("version", String(rollout.candidate))],
                    factory: factory
                ).record(rollout.isActive || rollout.state == "promoted" ? rollout.weight : 0)
            }
            let running = active.filter { $0.state == "running" }
            guard !running.isEmpty else { return }
            // Every replica records what it served; the one holding the lease judges the sum.
            for rollout in running { await publish(rollout) }
            let held = try await models.registry.holdLease("rollouts", holder: holder, seconds: 10)
            if holding.exchange(held, ordering: .relaxed) != held {
                logger.notice(held ? "driving the rollouts" : "another replica drives the rollouts", metadata: ["holder": "\(holder)"])
            }
            guard held else { return }
            for rollout in running { try await drive(rollout, client: client) }
        } catch {
            logger.warning("rollout pass failed", metadata: ["error": "\(error)"])
        }
    }

    /// What a step's numbers say: the candidate's and the stable version's since the step began, and the
    /// judge's verdict on them.
    package struct Judgement: Sendable {
        var candidate: RolloutWatch.Tally
        var stable: RolloutWatch.Tally
        var verdict: RolloutJudge.Verdict
        var elapsed: Double

        package var numbers: RolloutStepNumbers {
            func numbers(_ tally: RolloutWatch.Tally) -> RolloutStepNumbers.Version {
                .init(
                    requests: tally.requests, failed: tally.failed, skipped: tally.skipped, errorRate: tally.errorRate,
                    p99Milliseconds: tally.p99Milliseconds, runMilliseconds: tally.computeMilliseconds)
            }
            return RolloutStepNumbers(candidate: numbers(candidate), stable: numbers(stable), stepSeconds: elapsed, breach: verdict.breach)
        }
    }

    /// What this replica served in a rollout's current window: its tallies less those when the window began.
    package func ownWindow(_ rollout: Rollout) -> (candidate: RolloutWatch.Tally, stable: RolloutWatch.Tally) {
        let key = rollout.windowKey
        let candidateNow = watch.tally(model: rollout.model, version: rollout.candidate)
        let stableNow = watch.tally(model: rollout.model, version: rollout.stable)
        let started = (try? Date(rollout.stepStartedAt, strategy: .iso8601)) ?? Date()
        // A window that began before this replica started counting counts from zero: everything counted is in it.
        let countedFromStart = watch.watchedSince(rollout.model).map { $0 >= started } ?? false
        let baseline = baselines.withLock { baselines in
            if let known = baselines[rollout.model], known.key == key { return known }
            let fresh =
                countedFromStart
                ? Baseline(key: key, candidate: .init(), stable: .init())
                : Baseline(key: key, candidate: candidateNow, stable: stableNow)
            baselines[rollout.model] = fresh
            return fresh
        }
        return (candidateNow - baseline.candidate, stableNow - baseline.stable)
    }

    /// Records this replica's share of a rollout's window in the registry (every replica, every tick).
    package func publish(_ rollout: Rollout) async {
        let (candidate, stable) = ownWindow(rollout)
        do {
            try await models.registry.recordRolloutTallies(
                model: rollout.model, window: rollout.windowKey, replica: holder, tallies: [rollout.candidate: candidate, rollout.stable: stable])
        } catch {
            logger.warning("cannot record the rollout's numbers", metadata: ["model": "\(rollout.model)", "error": "\(error)"])
        }
    }

    /// Gathers a rollout's current window's numbers, every replica's summed (this replica's own when the
    /// registry cannot be read), and judges them (``RolloutJudge``); also for `GET .../rollout`.
    package func judge(_ rollout: Rollout) async -> Judgement {
        let own = ownWindow(rollout)
        var candidate = own.candidate, stable = own.stable
        if let merged = try? await models.registry.rolloutTallies(model: rollout.model, window: rollout.windowKey), merged.replicas > 0 {
            candidate = merged.tallies[rollout.candidate] ?? .init()
            stable = merged.tallies[rollout.stable] ?? .init()
        }
        let earlier: RolloutWatch.Tally? = judged.withLock { judged in
            var entry = judged[rollout.model] ?? Judged(key: rollout.windowKey, stable: stable)
            if entry.key != rollout.windowKey {
                // A new window: the one that ended is the comparison for the stable version's error rate.
                entry.earlierStable = entry.stable.succeeded >= rollout.minRequests ? entry.stable : entry.earlierStable
                entry.key = rollout.windowKey
            }
            entry.stable = stable
            judged[rollout.model] = entry
            return entry.earlierStable
        }
        let started = (try? Date(rollout.stepStartedAt, strategy: .iso8601)) ?? Date()
        let elapsed = Date().timeIntervalSince(started)
        var window = RolloutJudge.Window(candidate: candidate.numbers, stable: stable.numbers, earlierStable: earlier?.numbers, elapsed: elapsed)
        if rollout.maxAccuracyDrop != nil, elapsed >= rollout.intervalSeconds, let feedback,
            let performance = try? await feedback.performance(of: rollout.model, since: Int64(started.timeIntervalSince1970 * 1000), newest: nil)
        {
            func quality(_ version: Int) -> RolloutJudge.Quality? {
                guard let found = performance.first(where: { $0.version == version }), let accuracy = found.live?.accuracy else { return nil }
                return .init(accuracy: accuracy, rows: found.rows)
            }
            window.candidateQuality = quality(rollout.candidate)
            window.stableQuality = quality(rollout.stable)
        }
        return Judgement(candidate: candidate, stable: stable, verdict: RolloutJudge(rollout: rollout).judge(window), elapsed: elapsed)
    }

    private func drive(_ rollout: Rollout, client: HTTPClient) async throws {
        let judgement = await judge(rollout)
        let registry = models.registry
        switch judgement.verdict {
        case .wait:
            return
        case .rollBack(let breach):
            _ = try await registry.updateRollout(model: rollout.model, .rollback(reason: breach), actor: "rollout")
            try? await registry.pruneRolloutTallies(model: rollout.model, keeping: nil)
            try await models.refresh(force: true)
            Counter(label: "tern_rollout_rollbacks_total", dimensions: [("model", rollout.model)], factory: factory).increment()
            logger.warning(
                "rollout rolled back", metadata: ["model": "\(rollout.model)", "candidate": "\(rollout.candidate)", "reason": "\(breach)"])
            alert(rollout, reason: breach, client: client)
        case .rejudge(let reason):
            let again = try await registry.updateRollout(model: rollout.model, .rejudge(reason: reason), actor: "rollout")
            _ = ownWindow(again)  // the new window counts from now
            try? await registry.pruneRolloutTallies(model: rollout.model, keeping: again.windowKey)
            logger.notice("rollout step judged again", metadata: ["model": "\(rollout.model)", "reason": "\(reason)"])
        case .advance:
            let advanced = try await registry.updateRollout(model: rollout.model, .advance(from: rollout.step), actor: "rollout")
            // The new step counts from now: its baseline is taken before the new shares are served.
            _ = ownWindow(advanced)
            try? await registry.pruneRolloutTallies(model: rollout.model, keeping: advanced.windowKey)
            try await models.refresh(force: true)
            logger.notice("rollout advanced", metadata: ["model": "\(rollout.model)", "weight": "\(rollout.steps[rollout.step + 1])"])
        case .promote:
            let result = try await gate.check(model: rollout.model, candidate: rollout.candidate, alias: rollout.alias, actor: "rollout")
            if result.passed {
                _ = try await registry.updateRollout(
                    model: rollout.model, .promote(reason: "every step passed; " + result.summary), actor: "rollout")
                logger.notice("rollout promoted", metadata: ["model": "\(rollout.model)", "version": "\(rollout.candidate)"])
            } else {
                let reason = "the validation gate failed: " + result.summary
                _ = try await registry.updateRollout(model: rollout.model, .rollback(reason: reason), actor: "rollout")
                alert(rollout, reason: reason, client: client)
            }
            try? await registry.pruneRolloutTallies(model: rollout.model, keeping: nil)
            try await models.refresh(force: true)
        }
    }

    private func alert(_ rollout: Rollout, reason: String, client: HTTPClient) {
        let now = BundleManifest.timestamp()
        let payload = AlertEvaluator.webhookJSON(
            labels: [
                "alertname": "TernRolloutRolledBack", "model": rollout.model, "version": String(rollout.candidate),
                "stable": String(rollout.stable), "severity": "page",
            ],
            annotations: ["summary": "\(rollout.model) v\(rollout.candidate) rolled back: \(reason)"],
            status: "firing", startsAt: now, endsAt: nil)
        for url in webhooks {
            Task { await AlertEvaluator.deliver(payload, to: url, client: client, logger: logger) }
        }
    }
}

/// A rollout step's numbers so far, as the replica that answers has seen them.
public struct RolloutStepNumbers: Codable, Sendable {
    public struct Version: Codable, Sendable {
        public var requests: Int
        public var failed: Int
        /// Sent to the fallback by an open circuit (not called).
        public var skipped: Int
        public var errorRate: Double
        public var p99Milliseconds: Double?
        /// The model's mean run time per request.
        public var runMilliseconds: Double?

        enum CodingKeys: String, CodingKey {
            case requests, failed, skipped
            case errorRate = "error_rate"
            case p99Milliseconds = "p99_ms"
            case runMilliseconds = "run_ms"
        }
    }

    public var candidate: Version
    public var stable: Version
    public var stepSeconds: Double
    public var breach: String?

    package enum CodingKeys: String, CodingKey {
        case candidate, stable, breach
        case stepSeconds = "step_seconds"
    }
}
