import Foundation
import SQLKit
import TernBundle
import TernCore

/// A progressive rollout: the candidate's share of a model's traffic raised step by step while it does as
/// well as the stable version, else rolled back. The registry holds its state (so it survives restarts and
/// every replica sees it); a server drives it (``Registry/holdLease(_:holder:seconds:)`` picks one replica).
public struct Rollout: Codable, Sendable, Equatable {
    public var model: String
    /// The alias that names the stable version; it moves to the candidate when the rollout is promoted.
    public var alias: String
    public var stable: Int
    public var candidate: Int
    /// The candidate's share at each step, in percent, ascending.
    public var steps: [Double]
    /// The current step (an index into `steps`).
    public var step: Int
    /// How long each step lasts at least (and until the candidate has `minRequests` requests).
    public var intervalSeconds: Double
    public var minRequests: Int
    /// Bounds relative to the stable version: the candidate's error rate at most this much higher (absolute),
    /// its p99 latency at most this many times the stable's, its accuracy (from feedback) at most this much lower.
    public var maxErrorRateIncrease: Double
    public var maxLatencyRatio: Double
    public var maxAccuracyDrop: Double?
    /// Whether the last step's success moves the alias (through the validation gate) by itself.
    public var autoPromote: Bool
    /// running, paused, rolled_back, promoted, aborted.
    public var state: String
    public var reason: String?
    public var startedAt: String
    public var startedBy: String
    public var stepStartedAt: String
    /// The traffic policy before the rollout, restored when it ends.
    public var previousPolicy: TrafficPolicy?
    /// Windows of the current step that breached a noisy bound (latency) in a row: two roll back.
    public var strikes: Int?
    /// Why the gate did not run before the first step (`--skip-gate`), when it did not.
    public var gateSkipped: String?
    public var history: [Event]

    public struct Event: Codable, Sendable, Equatable {
        public var at: String
        public var event: String
        public var detail: String
    }

    enum CodingKeys: String, CodingKey {
        case model, alias, stable, candidate, steps, step, state, reason, history
        case intervalSeconds = "interval_seconds"
        case minRequests = "min_requests"
        case maxErrorRateIncrease = "max_error_rate_increase"
        case maxLatencyRatio = "max_latency_ratio"
        case maxAccuracyDrop = "max_accuracy_drop"
        case autoPromote = "auto_promote"
        case startedAt = "started_at"
        case startedBy = "started_by"
        case stepStartedAt = "step_started_at"
        case previousPolicy = "previous_policy"
        case strikes
        case gateSkipped = "gate_skipped"
    }

    public init(
        model: String, candidate: Int, alias: String = Registry.defaultAlias, steps: [Double] = [5, 25, 50, 100],
        intervalSeconds: Double = 600, minRequests: Int = 100, maxErrorRateIncrease: Double = 0.01,
        maxLatencyRatio: Double = 1.5, maxAccuracyDrop: Double? = nil, autoPromote: Bool = true
    ) {
        self.model = model
        self.alias = alias
        self.stable = 0
        self.candidate = candidate
        self.steps = steps
        self.step = 0
        self.intervalSeconds = intervalSeconds
        self.minRequests = minRequests
        self.maxErrorRateIncrease = maxErrorRateIncrease
        self.maxLatencyRatio = maxLatencyRatio
        self.maxAccuracyDrop = maxAccuracyDrop
        self.autoPromote = autoPromote
        self.state = "running"
        self.startedAt = ""
        self.startedBy = ""
        self.stepStartedAt = ""
        self.history = []
    }

    /// The live-quality bound a rollout gets unless it names one: judged only once both versions have
    /// feedback (``RolloutJudge/minFeedbackRows`` rows each) in the step.
    public static let defaultMaxAccuracyDrop = 0.05

    public var isActive: Bool { state == "running" || state == "paused" }
    /// The candidate's share now, in percent.
    public var weight: Double { state == "rolled_back" || state == "aborted" ? 0 : steps[min(step, steps.count - 1)] }

    public func validate() throws(TernError) {
        guard !steps.isEmpty, steps.count <= 100 else { throw .invalidArgument("steps must list 1 to 100 shares, such as 5,25,50,100") }
        for (index, share) in steps.enumerated() {
            guard share > 0, share <= 100, share.isFinite else {
                throw .invalidArgument("each step is a share in percent, more than 0 and at most 100")
            }
            if index > 0, share <= steps[index - 1] {
                throw .invalidArgument("steps must rise: \(steps.map { Self.percent($0) }.joined(separator: ","))")
            }
        }
        guard intervalSeconds > 0, intervalSeconds.isFinite, intervalSeconds <= 30 * 86_400 else {
            throw .invalidArgument("the interval must be more than 0 and at most 30 days")
        }
        guard minRequests >= 1 else { throw .invalidArgument("min_requests must be 1 or more") }
        guard maxErrorRateIncrease >= 0, maxErrorRateIncrease <= 1 else { throw .invalidArgument("max_error_rate_increase must be 0...1") }
        guard maxLatencyRatio >= 1, maxLatencyRatio.isFinite else { throw .invalidArgument("max_latency_ratio must be 1 or more") }
        if let drop = maxAccuracyDrop, !(0...1).contains(drop) { throw .invalidArgument("max_accuracy_drop must be 0...1") }
        try Registry.checkAlias(alias)
    }

    static func percent(_ share: Double) -> String {
        share == share.rounded() ? String(Int(share)) : String(share)
    }

    /// The traffic policy a step gives: the candidate's share against the stable version's, over the policy
    /// the model had (its sticky header, other shadows, fallback; the stable version is the fallback when
    /// none was set, so a failing candidate's requests are answered).
    func policy(candidateShare share: Double) -> TrafficPolicy {
        var policy = previousPolicy ?? TrafficPolicy(weights: [:])
        policy.weights = [stable: 100 - share, candidate: share]
        policy.shadows.removeAll { $0 == stable || $0 == candidate }
        if policy.fallback == nil { policy.fallback = FallbackPolicy(version: stable) }
        return policy
    }

    /// The traffic policy once the candidate is promoted: the one the model had, less what would keep the
    /// alias's requests from the promoted version (weights naming either version of the rollout, the
    /// candidate as its own shadow or fallback); nil when nothing of it is left.
    var policyAfterPromotion: TrafficPolicy? {
        guard var policy = previousPolicy else { return nil }
        if policy.weights.keys.contains(stable) || policy.weights.keys.contains(candidate) { policy.weights = [:] }
        policy.shadows.removeAll { $0 == candidate }
        if policy.fallback?.version == candidate {
            policy.fallback?.version = nil
            if policy.fallback?.defaultOutputs == nil { policy.fallback = nil }
        }
        if policy.weights.isEmpty {
            policy.stickyHeader = nil
            policy.stickyInput = nil
        }
        return policy.weights.isEmpty && policy.shadows.isEmpty && policy.fallback == nil ? nil : policy
    }
}

/// What a rollout command or its driver does.
public enum RolloutAction: Sendable, Equatable {
    case pause, resume, abort
    /// To the next step, from the step the driver judged (a replica that lost the lease cannot step twice).
    case advance(from: Int)
    case rollback(reason: String)
    /// The step is judged again over a new window of the same length (a first breach of a noisy bound).
    case rejudge(reason: String)
    /// The alias moves to the candidate (the caller has checked the validation gate).
    case promote(reason: String)

    /// A command's action by name (`advance` and `rollback` are the driver's).
    public init(name: String) throws(TernError) {
        switch name {
        case "pause": self = .pause
        case "resume": self = .resume
        case "abort": self = .abort
        case "promote": self = .promote(reason: "")
        default: throw .invalidArgument("no rollout action '\(name)'; actions: pause, resume, abort, promote")
        }
    }

    var name: String {
        switch self {
        case .pause: "pause"
        case .resume: "resume"
        case .abort: "abort"
        case .advance: "step"
        case .rollback: "rollback"
        case .rejudge: "rejudge"
        case .promote: "promote"
        }
    }
}

extension Registry {
    /// The model's rollout (the newest, active or ended), if it ever had one.
    public func rollout(model: String) async throws(TernError) -> Rollout? {
        try await run { try await self.storedRollout(model) }
    }

    /// Every model's rollout.
    public func rollouts() async throws(TernError) -> [Rollout] {
        try await run {
            try await self.sql.raw("SELECT rollout FROM tern_rollouts ORDER BY model").all().map {
                try JSONDecoder().decode(Rollout.self, from: Data(try $0.decode(column: "rollout", as: String.self).utf8))
            }
        }
    }

    /// Starts a rollout of `rollout.candidate` against the version its alias names: its first step's share
    /// goes to the candidate at once. Audited.
    ///
    /// - Throws: ``TernError`` `conflict` when the model has an active rollout or the candidate is the stable
    ///   version; `notFound` for a missing alias or version; `invalidArgument` for bad settings.
    public func startRollout(_ proposed: Rollout, actor: String) async throws(TernError) -> Rollout {
        try proposed.validate()
        return try await write {
            let model = proposed.model
            if let current = try await self.storedRollout(model), current.isActive {
                throw TernError.conflict(
                    "\(model) already has a \(current.state) rollout to v\(current.candidate); "
                        + "abort or promote it first (tern rollout abort \(model))")
            }
            guard let stable = try await self.aliasTarget(model: model, alias: proposed.alias) else {
                throw TernError.notFound("model '\(model)' has no alias '\(proposed.alias)' to roll out from")
            }
            guard stable != proposed.candidate else {
                throw TernError.conflict("v\(stable) is already \(model)@\(proposed.alias): nothing to roll out")
            }
            let state = try await self.sql.raw(
                "SELECT state FROM tern_versions WHERE model = \(bind: model) AND version = \(bind: proposed.candidate)"
            ).first()?.decode(column: "state", as: String.self)
            guard let state else { throw TernError.notFound("model '\(model)' has no version \(proposed.candidate)") }
            guard state == "active" else { throw TernError.conflict("\(model) v\(proposed.candidate) is archived") }
            var rollout = proposed
            let now = BundleManifest.timestamp()
            rollout.stable = stable
            rollout.step = 0
            rollout.state = "running"
            rollout.reason = nil
            rollout.startedAt = now
            rollout.startedBy = actor
            rollout.stepStartedAt = now
            rollout.previousPolicy = try await self.trafficPolicy(model)
            rollout.history = [
                .init(at: now, event: "start", detail: "v\(rollout.candidate) at \(Rollout.percent(rollout.steps[0]))% against v\(stable)")
            ]
            try await self.applyTraffic(model: model, policy: rollout.policy(candidateShare: rollout.steps[0]), actor: actor)
            try await self.storeRollout(rollout, action: "rollout-start", actor: actor)
            return rollout
        }
    }

    /// Pauses, resumes, steps, rolls back, aborts or promotes a model's active rollout, with its traffic
    /// policy (and, to promote, the alias) in the same transaction. Audited as `rollout-<action>`.
    public func updateRollout(model: String, _ action: RolloutAction, actor: String) async throws(TernError) -> Rollout {
        try await write {
            guard var rollout = try await self.storedRollout(model) else {
                throw TernError.notFound("model '\(model)' has no rollout")
            }
            guard rollout.isActive else {
                throw TernError.conflict("\(model)'s rollout to v\(rollout.candidate) has ended (\(rollout.state))")
            }
            let now = BundleManifest.timestamp()
            var detail = ""
            switch action {
            case .pause:
                guard rollout.state == "running" else { throw TernError.conflict("\(model)'s rollout is already paused") }
                rollout.state = "paused"
                detail = "at \(Rollout.percent(rollout.weight))%"
            case .resume:
                guard rollout.state == "paused" else { throw TernError.conflict("\(model)'s rollout is not paused") }
                rollout.state = "running"
                rollout.stepStartedAt = now  // the step is judged afresh
                detail = "at \(Rollout.percent(rollout.weight))%"
            case .advance(let from):
                guard rollout.state == "running", rollout.step == from, from + 1 < rollout.steps.count else {
                    throw TernError.conflict("\(model)'s rollout is not at step \(from + 1) of \(rollout.steps.count) and running")
                }
                rollout.step += 1
                rollout.stepStartedAt = now
                rollout.strikes = nil
                detail = "v\(rollout.candidate) to \(Rollout.percent(rollout.weight))%"
                try await self.applyTraffic(model: model, policy: rollout.policy(candidateShare: rollout.weight), actor: actor)
            case .rollback(let reason):
                // Exactly the policy before the rollout: no 100/0 weights left behind to outlive it.
                rollout.state = "rolled_back"
                rollout.reason = reason
                detail = reason
                try await self.restoreTraffic(rollout, actor: actor)
            case .rejudge(let reason):
                guard rollout.state == "running" else { throw TernError.conflict("\(model)'s rollout is not running") }
                rollout.stepStartedAt = now
                rollout.strikes = (rollout.strikes ?? 0) + 1
                detail = reason
            case .abort:
                rollout.state = "aborted"
                detail = "v\(rollout.stable) answers again"
                try await self.restoreTraffic(rollout, actor: actor)
            case .promote(let reason):
                rollout.state = "promoted"
                rollout.reason = reason
                detail = "\(model)@\(rollout.alias) -> v\(rollout.candidate): \(reason)"
                try await self.moveAlias(model: model, alias: rollout.alias, version: rollout.candidate, actor: actor)
                if try await self.trafficPolicy(model) != rollout.policyAfterPromotion {
                    try await self.applyTraffic(model: model, policy: rollout.policyAfterPromotion, actor: actor)
                }
            }
            rollout.history.append(.init(at: now, event: action.name, detail: detail))
            try await self.storeRollout(rollout, action: "rollout-\(action.name)", actor: actor)
            return rollout
        }
    }

    /// Takes or renews a lease (one replica drives the rollouts): true when `holder` holds it for the next
    /// `seconds`. A lease whose holder stopped renewing it expires and another takes it.
    public func holdLease(_ name: String, holder: String, seconds: Double) async throws(TernError) -> Bool {
        try await write {
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let until = now + Int64(seconds * 1000)
            guard let row = try await self.sql.raw("SELECT holder, expires_at FROM tern_leases WHERE name = \(bind: name)").first() else {
                try await self.sql.raw("INSERT INTO tern_leases (name, holder, expires_at) VALUES (\(bind: name), \(bind: holder), \(bind: until))")
                    .run()
                return true
            }
            let current = try row.decode(column: "holder", as: String.self)
            let expires = try row.decode(column: "expires_at", as: Int64.self)
            guard current == holder || expires < now else { return false }
            try await self.sql.raw("UPDATE tern_leases SET holder = \(bind: holder), expires_at = \(bind: until) WHERE name = \(bind: name)").run()
            return true
        }
    }

    private func restoreTraffic(_ rollout: Rollout, actor: String) async throws {
        let current = try await trafficPolicy(rollout.model)
        if current != rollout.previousPolicy {
            try await applyTraffic(model: rollout.model, policy: rollout.previousPolicy, actor: actor)
        }
    }

    private func trafficPolicy(_ model: String) async throws -> TrafficPolicy? {
        guard
            let text = try await sql.raw("SELECT policy FROM tern_traffic WHERE model = \(bind: model)").first()?
                .decode(column: "policy", as: String.self)
        else { return nil }
        return try JSONDecoder().decode(TrafficPolicy.self, from: Data(text.utf8))
    }

    /// The model's rollout, inside the caller's transaction.
    func storedRollout(_ model: String) async throws -> Rollout? {
        guard
            let text = try await sql.raw("SELECT rollout FROM tern_rollouts WHERE model = \(bind: model)").first()?
                .decode(column: "rollout", as: String.self)
        else { return nil }
        return try JSONDecoder().decode(Rollout.self, from: Data(text.utf8))
    }

    private func storeRollout(_ rollout: Rollout, action: String, actor: String) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let text = String(decoding: try encoder.encode(rollout), as: UTF8.self)
        try await sql.raw("DELETE FROM tern_rollouts WHERE model = \(bind: rollout.model)").run()
        try await sql.raw(
            "INSERT INTO tern_rollouts (model, rollout, updated_at) VALUES (\(bind: rollout.model), \(bind: text), \(bind: BundleManifest.timestamp()))"
        ).run()
        // The audit keeps what the change was, without the history that every entry would repeat.
        var summary = rollout
        summary.history = []
        summary.previousPolicy = nil
        let after = String(decoding: try encoder.encode(summary), as: UTF8.self)
        try await appendAudit(actor: actor, action: action, model: rollout.model, version: rollout.candidate, before: nil, after: after)
    }
}
