import Foundation

/// The decision on a rollout's current step, from both versions' numbers over the same window: a pure value,
/// so every edge (too few requests, ties, missing feedback, a noisy latency) is tested by table
/// (`Tests/TernRegistryTests/RolloutJudgeTests.swift`). The driver only gathers the numbers and applies the verdict.
///
/// ```swift
/// let verdict = RolloutJudge(rollout: rollout).judge(RolloutJudge.Window(candidate: c, stable: s, elapsed: 612))
/// ```
///
/// Rules, in order:
/// 1. The candidate's circuit opened (failures in a row): roll back, whatever the counts.
/// 2. Fewer than `minRequests` candidate requests: wait.
/// 3. Error rate: the candidate's at most `maxErrorRateIncrease` above the stable version's (this window's,
///    or, when the stable version had too few requests in it, its rate over an earlier window).
/// 4. At the end of the step (`elapsed >= intervalSeconds`), with at least `minRequests` successes for each
///    version in this window: the candidate's p99 at most `maxLatencyRatio` times the stable's (and more than
///    1 ms apart), and its mean run time per request (the model's own time, which queueing behind the other
///    version cannot hide) at most `maxLatencyRatio` times the stable's (and more than 0.2 ms apart). Both
///    move with the machine, so a first breach judges the step again over a new window (`rejudge`); a second
///    in a row rolls back.
/// 5. Live quality, when both versions have at least `minFeedbackRows` rows of feedback in the step: the
///    candidate's accuracy at most `maxAccuracyDrop` below the stable's.
/// 6. Then the step has passed: advance, or at the last step promote (through the gate), or wait when the
///    rollout does not promote by itself.
public struct RolloutJudge: Sendable {
    /// One version's numbers over a window.
    public struct Numbers: Sendable, Equatable {
        public var succeeded: Int
        public var failed: Int
        /// Sent to the fallback by an open circuit (not called).
        public var skipped: Int
        public var p99Milliseconds: Double?
        /// The model's mean run time per request (no queueing), in milliseconds.
        public var computeMilliseconds: Double?

        public init(
            succeeded: Int = 0, failed: Int = 0, skipped: Int = 0, p99Milliseconds: Double? = nil,
            computeMilliseconds: Double? = nil
        ) {
            self.succeeded = succeeded
            self.failed = failed
            self.skipped = skipped
            self.p99Milliseconds = p99Milliseconds
            self.computeMilliseconds = computeMilliseconds
        }

        public var requests: Int { succeeded + failed }
        public var errorRate: Double { requests == 0 ? 0 : Double(failed) / Double(requests) }
    }

    /// Live accuracy from feedback, with the rows it was measured on.
    public struct Quality: Sendable, Equatable {
        public var accuracy: Double
        public var rows: Int

        public init(accuracy: Double, rows: Int) {
            self.accuracy = accuracy
            self.rows = rows
        }
    }

    /// What the step is judged on: both versions over the same window.
    public struct Window: Sendable, Equatable {
        public var candidate: Numbers
        public var stable: Numbers
        /// The stable version's numbers over an earlier window, for its error rate when it had too few
        /// requests in this one (the last step, where it answers nothing).
        public var earlierStable: Numbers?
        /// Seconds since the step (or its current window) began.
        public var elapsed: Double
        public var candidateQuality: Quality?
        public var stableQuality: Quality?

        public init(
            candidate: Numbers, stable: Numbers, earlierStable: Numbers? = nil, elapsed: Double,
            candidateQuality: Quality? = nil, stableQuality: Quality? = nil
        ) {
            self.candidate = candidate
            self.stable = stable
            self.earlierStable = earlierStable
            self.elapsed = elapsed
            self.candidateQuality = candidateQuality
            self.stableQuality = stableQuality
        }
    }

    public enum Verdict: Sendable, Equatable {
        /// Not enough yet (requests, time); the reason says what is missing.
        case wait(String)
        case advance
        /// The last step passed: promote through the validation gate.
        case promote
        case rollBack(String)
        /// A first breach of a noisy bound: the same step again over a new window.
        case rejudge(String)

        public var breach: String? {
            switch self {
            case .rollBack(let reason), .rejudge(let reason): reason
            default: nil
            }
        }
    }

    /// Feedback rows each version needs before live quality is judged.
    public static let minFeedbackRows = 20

    public let rollout: Rollout

    public init(rollout: Rollout) { self.rollout = rollout }

    public func judge(_ window: Window) -> Verdict {
        let r = rollout, c = window.candidate
        if c.skipped > 0 {
            return .rollBack(
                "v\(r.candidate)'s circuit opened after failures in a row (\(c.failed) failed of \(c.requests) "
                    + "requests; \(c.skipped) more went to the fallback)")
        }
        guard c.requests >= r.minRequests else {
            return .wait("v\(r.candidate) has \(c.requests) of the \(r.minRequests) requests a verdict needs")
        }
        let stableForErrors = window.stable.requests >= r.minRequests ? window.stable : (window.earlierStable ?? window.stable)
        let increase = c.errorRate - (stableForErrors.requests > 0 ? stableForErrors.errorRate : 0)
        if increase > r.maxErrorRateIncrease {
            return .rollBack(
                String(
                    format: "v%d's error rate %.2f%% is %.2f points above v%d's %.2f%% (at most %.2f allowed) over %d requests",
                    r.candidate, c.errorRate * 100, increase * 100, r.stable, stableForErrors.errorRate * 100,
                    r.maxErrorRateIncrease * 100, c.requests))
        }
        guard window.elapsed >= r.intervalSeconds else {
            return .wait(String(format: "the step has run %.0f of its %.0f s", window.elapsed, r.intervalSeconds))
        }
        let s = window.stable
        var latency: String?
        if c.succeeded >= r.minRequests, s.succeeded >= r.minRequests {
            if let mine = c.p99Milliseconds, let theirs = s.p99Milliseconds, mine > theirs * r.maxLatencyRatio, mine - theirs > 1 {
                latency = String(
                    format: "v%d's p99 latency %.2f ms is %.2fx v%d's %.2f ms over the same window (at most %.2fx allowed)",
                    r.candidate, mine, mine / theirs, r.stable, theirs, r.maxLatencyRatio)
            } else if let mine = c.computeMilliseconds, let theirs = s.computeMilliseconds, mine > theirs * r.maxLatencyRatio,
                mine - theirs > 0.2
            {
                latency = String(
                    format: "v%d's run time %.2f ms a request is %.2fx v%d's %.2f ms over the same window (at most %.2fx allowed)",
                    r.candidate, mine, mine / theirs, r.stable, theirs, r.maxLatencyRatio)
            }
        }
        if let reason = latency {
            return (r.strikes ?? 0) >= 1 ? .rollBack(reason + ", in two windows in a row") : .rejudge(reason + "; judging the step again")
        }
        if let drop = r.maxAccuracyDrop, let mine = window.candidateQuality, let theirs = window.stableQuality,
            mine.rows >= Self.minFeedbackRows, theirs.rows >= Self.minFeedbackRows, theirs.accuracy - mine.accuracy > drop
        {
            return .rollBack(
                String(
                    format: "v%d's accuracy %.4f is %.4f below v%d's %.4f (at most %.4f allowed) on feedback",
                    r.candidate, mine.accuracy, theirs.accuracy - mine.accuracy, r.stable, theirs.accuracy, drop))
        }
        if r.step + 1 < r.steps.count { return .advance }
        return r.autoPromote ? .promote : .wait("every step passed; promote it (tern rollout promote \(r.model))")
    }
}
