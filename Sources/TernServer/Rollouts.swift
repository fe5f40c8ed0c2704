import AsyncHTTPClient
import CoreMetrics
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TernBundle
import TernCore
import TernRegistry

/// Each version's requests, failures and latency, for the models under rollout: what a step is judged on.
/// A failure a fallback answered counts against the version that failed; a request its open circuit sent
/// to the fallback counts as skipped; requests refused as the client's mistake count for no version.
final class RolloutWatch: InferenceObserver, Sendable {
    /// Latency buckets: bucket i holds latencies below 10 µs x 1.1^(i+1).
    static let bucketCount = 200

    struct Tally: Sendable, Equatable {
        var succeeded = 0
        var failed = 0
        /// Requests sent to the fallback because the version's circuit was open.
        var skipped = 0
        var buckets = [Int](repeating: 0, count: RolloutWatch.bucketCount)

        static func - (a: Tally, b: Tally) -> Tally {
            Tally(succeeded: a.succeeded - b.succeeded, failed: a.failed - b.failed, skipped: a.skipped - b.skipped,
                  buckets: zip(a.buckets, b.buckets).map { $0 - $1 })
        }

        var requests: Int { succeeded + failed }
        var errorRate: Double { requests == 0 ? 0 : Double(failed) / Double(requests) }
        /// The 99th percentile of the successes' latency (the bucket's upper bound), in milliseconds.
        var p99Milliseconds: Double? {
            guard succeeded > 0 else { return nil }
            let rank = Int((Double(succeeded) * 0.99).rounded(.up))
            var seen = 0
            for (index, count) in buckets.enumerated() {
                seen += count
                if seen >= rank { return 0.01 * pow(1.1, Double(index + 1)) }
            }
            return nil
        }
    }

    private let active = Atomic<Bool>(false)
    private let state = Mutex<(models: [String: Date], tallies: [String: [Int: Tally]])>(([:], [:]))

    /// The models to watch (those with an active rollout); others are forgotten.
    func watch(_ models: Set<String>) {
        state.withLock { state in
            let now = Date()
            state.models = Dictionary(uniqueKeysWithValues: models.map { ($0, state.models[$0] ?? now) })
            state.tallies = state.tallies.filter { models.contains($0.key) }
        }
        active.store(!models.isEmpty, ordering: .relaxed)
    }

    /// Starts watching one more model now (a rollout started on this replica: its first requests count).
    func watch(adding model: String) {
        state.withLock { state in
            if state.models[model] == nil { state.models[model] = Date() }
        }
        active.store(true, ordering: .relaxed)
    }

    /// Since when this replica has counted the model's requests.
    func watchedSince(_ model: String) -> Date? {
        state.withLock { $0.models[model] }
    }

    func requestEnded(_ event: InferenceEvent) {
        guard active.load(ordering: .relaxed), let served = event.served else { return }
        let micros = Double(event.duration.components.seconds) * 1e6 + Double(event.duration.components.attoseconds) / 1e12
        let bucket = min(Self.bucketCount - 1, max(0, Int(log(max(micros, 10) / 10) / log(1.1))))
        state.withLock { state in
            guard state.models[served.name] != nil else { return }
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

    func tally(model: String, version: Int) -> Tally {
        state.withLock { $0.tallies[model]?[version] ?? Tally() }
    }
}

/// Drives the registry's running rollouts: every tick, the replica that holds the `rollouts` lease judges
/// each step on what it has served since the step began, rolls back a candidate out of bounds, advances a
/// step that lasted its interval with enough requests, and promotes at the end (through the validation gate).
final class RolloutDriver: Service, Sendable {
    let models: RegistryModels
    let watch: RolloutWatch
    let feedback: LiveFeedback?
    let gate: ValidationGate
    let webhooks: [String]
    let tick: Duration
    let factory: any MetricsFactory
    let logger: Logger
    /// This replica, in the lease.
    let holder = "tern-" + UUID().uuidString.prefix(8).lowercased()
    private let baselines = Mutex<[String: Baseline]>([:])
    private let holding = Atomic<Bool>(false)

    /// The tallies when a step began (or when this replica first saw it), and the stable version's numbers
    /// from an earlier step, for steps where it gets too few requests to judge by (the last, at 100%).
    struct Baseline: Sendable {
        var key: String
        var candidate: RolloutWatch.Tally
        var stable: RolloutWatch.Tally
        var earlierStable: RolloutWatch.Tally?
    }

    init(models: RegistryModels, watch: RolloutWatch, feedback: LiveFeedback?, gate: ValidationGate, webhooks: [String],
         tick: Duration = .seconds(1), factory: any MetricsFactory, logger: Logger) {
        self.models = models
        self.watch = watch
        self.feedback = feedback
        self.gate = gate
        self.webhooks = webhooks
        self.tick = tick
        self.factory = factory
        self.logger = logger
    }

    func run() async throws {
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.pass(client: client)
                try? await Task.sleep(for: self.tick)
            }
        }
        try? await client.shutdown()
    }

    func pass(client: HTTPClient) async {
        do {
            let active = try await models.registry.rollouts().filter(\.isActive)
            watch.watch(Set(active.map(\.model)))
            for rollout in try await models.registry.rollouts() {
                Gauge(label: "tern_rollout_candidate_weight", dimensions: [("model", rollout.model), ("version", String(rollout.candidate))],
                      factory: factory).record(rollout.isActive || rollout.state == "promoted" ? rollout.weight : 0)
            }
            let running = active.filter { $0.state == "running" }
            guard !running.isEmpty else { return }
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

    /// What a step's numbers say: the candidate's and the stable version's since the step began.
    struct Judgement: Sendable {
        var candidate: RolloutWatch.Tally
        var stable: RolloutWatch.Tally
        /// Why the candidate is out of bounds; nil while it is within them.
        var breach: String?
        var elapsed: Double

        var numbers: RolloutStepNumbers {
            func numbers(_ tally: RolloutWatch.Tally) -> RolloutStepNumbers.Version {
                .init(requests: tally.requests, failed: tally.failed, skipped: tally.skipped, errorRate: tally.errorRate,
                      p99Milliseconds: tally.p99Milliseconds)
            }
            return RolloutStepNumbers(candidate: numbers(candidate), stable: numbers(stable), stepSeconds: elapsed, breach: breach)
        }
    }

    /// Judges a rollout's current step (also for `GET .../rollout`, on any replica: its own requests).
    func judge(_ rollout: Rollout) async -> Judgement {
        let key = "\(rollout.step)@\(rollout.stepStartedAt)"
        let candidateNow = watch.tally(model: rollout.model, version: rollout.candidate)
        let stableNow = watch.tally(model: rollout.model, version: rollout.stable)
        let started = (try? Date(rollout.stepStartedAt, strategy: .iso8601)) ?? Date()
        // A step that began before this replica started counting counts from zero: everything counted is in it.
        let countedFromStart = watch.watchedSince(rollout.model).map { $0 >= started } ?? false
        let baseline = baselines.withLock { baselines in
            if let known = baselines[rollout.model], known.key == key { return known }
            // A new step: the stable version's numbers of the step that ended stay as the comparison.
            let previous = baselines[rollout.model]
            let earlier = previous.map { stableNow - $0.stable }.flatMap { $0.succeeded >= rollout.minRequests ? $0 : previous?.earlierStable }
            let fresh = countedFromStart
                ? Baseline(key: key, candidate: .init(), stable: .init(), earlierStable: earlier)
                : Baseline(key: key, candidate: candidateNow, stable: stableNow, earlierStable: earlier)
            baselines[rollout.model] = fresh
            return fresh
        }
        let candidate = candidateNow - baseline.candidate
        let stepStable = stableNow - baseline.stable
        let stable = stepStable.requests >= rollout.minRequests ? stepStable : (baseline.earlierStable ?? stepStable)
        var judgement = Judgement(candidate: candidate, stable: stable, elapsed: Date().timeIntervalSince(started))
        // Its circuit opened (failures in a row): out, whatever the count.
        if candidate.skipped > 0 {
            judgement.breach = "v\(rollout.candidate)'s circuit opened after failures in a row (\(candidate.failed) failed of "
                + "\(candidate.requests) requests; \(candidate.skipped) more went to the fallback)"
            return judgement
        }
        guard candidate.requests >= rollout.minRequests else { return judgement }
        let increase = candidate.errorRate - (stable.requests > 0 ? stable.errorRate : 0)
        if increase > rollout.maxErrorRateIncrease {
            judgement.breach = String(format: "v%d's error rate %.2f%% is %.2f points above v%d's %.2f%% (at most %.2f allowed) over %d requests",
                                      rollout.candidate, candidate.errorRate * 100, increase * 100, rollout.stable,
                                      stable.errorRate * 100, rollout.maxErrorRateIncrease * 100, candidate.requests)
            return judgement
        }
        // Latency is judged over the whole step (a p99 over a few hundred requests moves with one slow
        // moment of the machine): when the step would pass.
        guard judgement.elapsed >= rollout.intervalSeconds else { return judgement }
        if let mine = candidate.p99Milliseconds, let theirs = stable.p99Milliseconds, stable.succeeded >= rollout.minRequests,
           mine > theirs * rollout.maxLatencyRatio, mine - theirs > 1 {
            judgement.breach = String(format: "v%d's p99 latency %.2f ms is %.2fx v%d's %.2f ms (at most %.2fx allowed)",
                                      rollout.candidate, mine, mine / theirs, rollout.stable, theirs, rollout.maxLatencyRatio)
            return judgement
        }
        if let drop = rollout.maxAccuracyDrop, let feedback,
           let performance = try? await feedback.performance(of: rollout.model, since: Int64(started.timeIntervalSince1970 * 1000), newest: nil) {
            let byVersion = Dictionary(performance.map { ($0.version, $0) }, uniquingKeysWith: { a, _ in a })
            if let mine = byVersion[rollout.candidate], let theirs = byVersion[rollout.stable], mine.rows >= 20, theirs.rows >= 20,
               let a = mine.live?.accuracy, let b = theirs.live?.accuracy, b - a > drop {
                judgement.breach = String(format: "v%d's accuracy %.4f is %.4f below v%d's %.4f (at most %.4f allowed) on feedback",
                                          rollout.candidate, a, b - a, rollout.stable, b, drop)
            }
        }
        return judgement
    }

    private func drive(_ rollout: Rollout, client: HTTPClient) async throws {
        let judgement = await judge(rollout)
        let registry = models.registry
        if let breach = judgement.breach {
            _ = try await registry.updateRollout(model: rollout.model, .rollback(reason: breach), actor: "rollout")
            try await models.refresh(force: true)
            Counter(label: "tern_rollout_rollbacks_total", dimensions: [("model", rollout.model)], factory: factory).increment()
            logger.warning("rollout rolled back", metadata: ["model": "\(rollout.model)", "candidate": "\(rollout.candidate)", "reason": "\(breach)"])
            alert(rollout, reason: breach, client: client)
            return
        }
        guard judgement.elapsed >= rollout.intervalSeconds, judgement.candidate.requests >= rollout.minRequests else { return }
        if rollout.step + 1 < rollout.steps.count {
            let advanced = try await registry.updateRollout(model: rollout.model, .advance(from: rollout.step), actor: "rollout")
            // The new step counts from now: its baseline is taken before the new shares are served.
            _ = await judge(advanced)
            try await models.refresh(force: true)
            logger.notice("rollout advanced", metadata: ["model": "\(rollout.model)", "weight": "\(rollout.steps[rollout.step + 1])"])
        } else if rollout.autoPromote {
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
            try await models.refresh(force: true)
        }
    }

    private func alert(_ rollout: Rollout, reason: String, client: HTTPClient) {
        let now = BundleManifest.timestamp()
        let payload = AlertEvaluator.webhookJSON(
            labels: ["alertname": "TernRolloutRolledBack", "model": rollout.model, "version": String(rollout.candidate),
                     "stable": String(rollout.stable), "severity": "page"],
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

        enum CodingKeys: String, CodingKey {
            case requests, failed, skipped
            case errorRate = "error_rate"
            case p99Milliseconds = "p99_ms"
        }
    }

    public var candidate: Version
    public var stable: Version
    public var stepSeconds: Double
    public var breach: String?

    enum CodingKeys: String, CodingKey {
        case candidate, stable, breach
        case stepSeconds = "step_seconds"
    }
}
