import AsyncHTTPClient
import CoreMetrics
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import TernBundle
import TernCodecs
import TernCore
import TernModels
import TernRegistry

/// Alert rules (`tern serve --alert-rules FILE`):
///
/// ```yaml
/// interval: 30s                        # how often rules are evaluated
/// webhooks: [http://alertmanager-receiver:9000/hook]
/// rules:
///   - name: credit-drift
///     model: credit-risk
///     metric: drift.drifted_features   # drift.psi:<feature>, feedback.<accuracy|f1|roc_auc|log_loss|mae|rmse|r2>,
///                                      # error_rate, traffic (requests per minute), latency_p99 (milliseconds)
///     op: ">"                          # >, >=, <, <=
///     threshold: 0
///     resolve_threshold: 0             # hysteresis: firing until the value is back past this (default: threshold)
///     window: 1000                     # newest predictions, or a duration such as 15m (drift, feedback);
///                                      # seconds or a duration (error_rate, traffic, latency_p99)
///     for: 5m                          # how long the condition must hold before firing
///     severity: page
///     retrain: {command: ./retrain.sh, timeout: 30m}
/// ```
public struct AlertConfiguration: Sendable {
    public var interval: Duration = .seconds(30)
    public var webhooks: [String] = []
    public var rules: [AlertRule] = []

    public init() {}

    /// Parses a rules file; a malformed rule is named in the error.
    public static func load(path: String) throws(TernError) -> AlertConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .invalidArgument("cannot read the alert rules \(path): \(error.localizedDescription)")
        }
        return try parse(yaml: text, source: path)
    }

    /// Parses a rules file's text; `source` names it in errors.
    public static func parse(yaml text: String, source path: String) throws(TernError) -> AlertConfiguration {
        let node = try SafeYAML.load(text, source: path)
        guard let map = node as? [String: Any] else { throw .invalidArgument("'\(path)': expected interval, webhooks and rules") }
        var configuration = AlertConfiguration()
        for key in map.keys where !["interval", "webhooks", "rules"].contains(key) {
            throw .invalidArgument("'\(path)': unknown setting '\(key)'; known: interval, webhooks, rules")
        }
        if let interval = map["interval"] {
            configuration.interval = try OutsideNumber.duration(interval, "\(path): interval")
        }
        if let hooks = map["webhooks"] {
            guard let list = hooks as? [String], list.allSatisfy({ $0.hasPrefix("http://") || $0.hasPrefix("https://") }) else {
                throw .invalidArgument("'\(path)': webhooks must be a list of http(s) URLs")
            }
            configuration.webhooks = list
        }
        guard let rules = map["rules"] as? [Any], !rules.isEmpty else { throw .invalidArgument("'\(path)': rules must be a non-empty list") }
        var names = Set<String>()
        for (index, item) in rules.enumerated() {
            let rule = try AlertRule(item, index: index, source: path)
            guard names.insert(rule.name).inserted else { throw .invalidArgument("'\(path)': two rules are named '\(rule.name)'") }
            configuration.rules.append(rule)
        }
        return configuration
    }

    /// The rules as a Prometheus rules file, over the `tern_alert_value` gauge Tern exports for each rule:
    /// for teams that route alerts through Prometheus and Alertmanager rather than Tern's webhooks.
    public func prometheusRules() -> String {
        func seconds(_ duration: Duration) -> String {
            let (whole, fraction) = duration.components
            return "\(Int(Double(whole) + Double(fraction) / 1e18))s"
        }
        func quoted(_ text: String) -> String {
            "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        var text =
            "# Made by tern alerts export from Tern's alert rules: each fires on the tern_alert_value gauge\n"
            + "# that tern serve --alert-rules exports for the rule.\ngroups:\n  - name: tern-alert-rules\n    rules:\n"
        for rule in rules {
            let name = rule.name.map { $0.isLetter || $0.isNumber || $0 == "_" ? $0 : "_" }
            text += "      - alert: \(String(name))\n"
            text += "        expr: tern_alert_value{alert=\(quoted(rule.name))} \(rule.comparison) \(rule.threshold)\n"
            text += "        for: \(seconds(rule.forDuration))\n"
            text += "        labels:\n          severity: \(quoted(rule.severity))\n          model: \(quoted(rule.model))\n"
            text += "          rule: \(quoted(rule.name))\n"
            text +=
                "        annotations:\n          summary: \(quoted("{{ $labels.model }}: \(rule.metricName) is {{ $value }} (\(rule.comparison) \(rule.threshold))"))\n"
        }
        return text
    }
}

public struct AlertRule: Sendable {
    public enum Metric: Sendable, Equatable {
        case driftedFeatures
        case psi(feature: String)
        case feedback(String)
        case errorRate
        case traffic
        /// The 99th percentile of successful requests' latency, in milliseconds, over the window (seconds).
        case latencyP99
    }

    public var name: String
    public var model: String
    public var metric: Metric
    public var metricName: String
    public var comparison: String
    public var threshold: Double
    public var resolveThreshold: Double
    /// Predictions (drift, feedback) or seconds (error rate, traffic, latency).
    public var window: Int
    /// A window given as a duration (`window: 15m`) for drift and feedback: the predictions of that last
    /// stretch of time (at most 10,000), instead of the newest N.
    public var timeWindow: Duration?
    public var forDuration: Duration
    public var severity: String
    public var retrainCommand: String?
    public var retrainTimeout: Duration
    /// A failing retraining command is run again this many times, after `retrainBackoff`, then twice that, ...
    public var retrainRetries = 2
    public var retrainBackoff: Duration = .seconds(30)

    package static let feedbackMetrics = ValidationMetrics.names

    package init(_ item: Any, index: Int, source: String) throws(TernError) {
        let label = "'\(source)' rule \(index + 1)"
        guard let map = item as? [String: Any] else { throw .invalidArgument("\(label): not a mapping") }
        guard let name = map["name"] as? String, !name.isEmpty else { throw .invalidArgument("\(label): needs a name") }
        let named = "'\(source)' rule '\(name)'"
        let known: Set<String> = ["name", "model", "metric", "op", "threshold", "resolve_threshold", "window", "for", "severity", "retrain"]
        for key in map.keys where !known.contains(key) {
            throw .invalidArgument("\(named): unknown setting '\(key)'; known: " + known.sorted().joined(separator: ", "))
        }
        guard let model = map["model"] as? String, !model.isEmpty else { throw .invalidArgument("\(named): needs a model") }
        guard let metricName = map["metric"] as? String else { throw .invalidArgument("\(named): needs a metric") }
        switch metricName {
        case "drift.drifted_features": metric = .driftedFeatures
        case "error_rate": metric = .errorRate
        case "traffic": metric = .traffic
        case "latency_p99": metric = .latencyP99
        case let text where text.hasPrefix("drift.psi:") && text.count > "drift.psi:".count:
            metric = .psi(feature: String(text.dropFirst("drift.psi:".count)))
        case let text where text.hasPrefix("feedback.") && Self.feedbackMetrics.contains(String(text.dropFirst("feedback.".count))):
            metric = .feedback(String(text.dropFirst("feedback.".count)))
        default:
            throw .invalidArgument(
                "\(named): unknown metric '\(metricName)'; known: drift.drifted_features, drift.psi:<feature>, "
                    + Self.feedbackMetrics.sorted().map { "feedback." + $0 }.joined(separator: ", ") + ", error_rate, traffic, latency_p99")
        }
        let op = (map["op"] as? String) ?? ">"
        guard [">", ">=", "<", "<="].contains(op) else { throw .invalidArgument("\(named): op must be >, >=, < or <=") }
        guard let threshold = (map["threshold"] as? Double) ?? (map["threshold"] as? Int).map(Double.init) else {
            throw .invalidArgument("\(named): threshold must be a number")
        }
        let resolve = (map["resolve_threshold"] as? Double) ?? (map["resolve_threshold"] as? Int).map(Double.init) ?? threshold
        let timed = metric == .errorRate || metric == .traffic || metric == .latencyP99
        var window = timed ? 300 : 1000
        var timeWindow: Duration?
        if let given = map["window"] {
            if let count = given as? Int {
                window = count
            } else {
                let duration = try OutsideNumber.duration(given, "\(named): window")
                guard duration >= .seconds(1) else { throw .invalidArgument("\(named): window must be at least 1s") }
                if timed {
                    window = Int(duration.components.seconds)
                } else {
                    timeWindow = duration
                    window = 10_000
                }
            }
        }
        guard window > 0, window <= 10_000 || timed else {
            throw .invalidArgument(
                "\(named): window must be 1...10000 predictions, or a duration such as 15m (seconds for "
                    + "error_rate, traffic and latency_p99)")
        }
        self.timeWindow = timeWindow
        var retrain: String?, timeout = Duration.seconds(1800), retries = 2, backoff = Duration.seconds(30)
        if let hook = map["retrain"] {
            guard let spec = hook as? [String: Any], let command = spec["command"] as? String, !command.isEmpty else {
                throw .invalidArgument("\(named): retrain must be {command: ..., timeout: ..., retries: ..., backoff: ...}")
            }
            retrain = command
            if let value = spec["timeout"] { timeout = try OutsideNumber.duration(value, "\(named): retrain timeout") }
            if let value = spec["retries"] {
                guard let count = value as? Int, (0...10).contains(count) else { throw .invalidArgument("\(named): retrain retries must be 0...10") }
                retries = count
            }
            if let value = spec["backoff"] { backoff = try OutsideNumber.duration(value, "\(named): retrain backoff") }
        }
        self.name = name
        self.model = model
        self.metricName = metricName
        self.comparison = op
        self.threshold = threshold
        self.resolveThreshold = resolve
        self.window = window
        if let value = map["for"] { self.forDuration = try OutsideNumber.duration(value, "\(named): for") } else { self.forDuration = .zero }
        self.severity = (map["severity"] as? String) ?? "warning"
        self.retrainCommand = retrain
        self.retrainTimeout = timeout
        self.retrainRetries = retries
        self.retrainBackoff = backoff
    }

    package func breached(_ value: Double, threshold: Double) -> Bool {
        switch comparison {
        case ">": value > threshold
        case ">=": value >= threshold
        case "<": value < threshold
        default: value <= threshold
        }
    }
}

/// One rule's state, as `GET /api/v1/alerts` shows it.
package struct AlertState: Codable, Sendable {
    package var rule: String
    package var model: String
    package var metric: String
    package var severity: String
    /// `inactive`, `pending` or `firing`.
    package var state: String
    package var value: Double?
    package var threshold: Double
    package var since: String?
    package var lastResolved: String?
    package var lastRetrain: String?
}

/// Evaluates the rules every interval; fires and resolves with hysteresis; tells the webhooks (Alertmanager's
/// webhook JSON, retried with backoff, never in the way of serving) and runs the retraining command.
package final class AlertEvaluator: Service, Sendable {
    package let configuration: AlertConfiguration
    package let drift: LiveDrift?
    package let feedback: LiveFeedback?
    /// Recent predictions with their latency (``DriftWindows``), for latency rules.
    package let windows: DriftWindows?
    package let service: InferenceService
    package let registry: Registry?
    package let logger: Logger
    package let factory: any MetricsFactory
    private let states: Mutex<[String: AlertState]>
    /// Each rule's state machine (``AlertStateMachine``).
    private let machines = Mutex<[String: AlertStateMachine]>([:])
    private let counts = Mutex<[String: [(ContinuousClock.Instant, Int, Int)]]>([:])

    package init(
        configuration: AlertConfiguration, drift: LiveDrift?, feedback: LiveFeedback?, windows: DriftWindows?,
        service: InferenceService, registry: Registry?, factory: any MetricsFactory, logger: Logger
    ) {
        self.configuration = configuration
        self.drift = drift
        self.windows = windows
        self.feedback = feedback
        self.service = service
        self.registry = registry
        self.factory = factory
        self.logger = logger
        states = Mutex(
            Dictionary(
                uniqueKeysWithValues: configuration.rules.map { rule in
                    (
                        rule.name,
                        AlertState(
                            rule: rule.name, model: rule.model, metric: rule.metricName, severity: rule.severity,
                            state: "inactive", threshold: rule.threshold)
                    )
                }))
    }

    package var snapshot: [AlertState] {
        states.withLock { states in configuration.rules.compactMap { states[$0.name] } }
    }

    package func run() async throws {
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.evaluate(client: client)
                try? await Task.sleep(for: self.configuration.interval)
            }
        }
        try? await client.shutdown()
    }

    package func evaluate(client: HTTPClient) async {
        for rule in configuration.rules {
            let value: Double?
            do {
                value = try await measure(rule)
            } catch {
                logger.debug("alert rule not evaluated", metadata: ["rule": "\(rule.name)", "error": "\(error)"])
                value = nil
            }
            await step(rule, value: value, client: client)
        }
    }

    /// The start of a rule's time window (milliseconds since the epoch), for windows given as a duration.
    private func since(_ rule: AlertRule) -> Int64? {
        rule.timeWindow.map { Int64(Date().timeIntervalSince1970 * 1000) - Int64($0 / .milliseconds(1)) }
    }

    private func measure(_ rule: AlertRule) async throws -> Double? {
        guard let served = try? service.catalog.resolveStable(name: rule.model, version: nil) else { return nil }
        switch rule.metric {
        case .driftedFeatures:
            guard let drift else { return nil }
            let answer = try await drift.drift(of: served, window: rule.window, since: since(rule))
            return answer.predictions == 0 ? nil : Double(answer.drifted.count)
        case .psi(let feature):
            guard let drift else { return nil }
            // A window too small for a verdict is no data: the rule keeps its state.
            let found = try await drift.drift(of: served, window: rule.window, since: since(rule)).features.first { $0.feature == feature }
            return found?.insufficientData == nil ? found?.psi : nil
        case .latencyP99:
            guard let windows else { return nil }
            return windows.latencyP99(of: served, over: .seconds(rule.window)).map { Double($0 / .microseconds(1)) / 1000 }
        case .feedback(let name):
            guard let feedback else { return nil }
            let versions = try await feedback.performance(of: served.name, since: since(rule), newest: rule.window)
            guard let live = versions.first(where: { $0.version == served.version })?.live else { return nil }
            return live.value(named: name)
        case .errorRate, .traffic:
            // From the statistics extension's counters, remembered each evaluation over the window.
            let stats = served.statistics.snapshot
            let now = ContinuousClock.now
            let window = Duration.seconds(rule.window)
            let history = counts.withLock { counts -> [(ContinuousClock.Instant, Int, Int)] in
                var list = counts[rule.name, default: []]
                list.append((now, stats.success.count, stats.fail.count))
                list.removeAll { $0.0.duration(to: now) > window + configuration.interval }
                counts[rule.name] = list
                return list
            }
            guard let first = history.first, first.0 < now else { return nil }
            let success = stats.success.count - first.1, failed = stats.fail.count - first.2
            if rule.metric == .traffic {
                let (seconds, attoseconds) = first.0.duration(to: now).components
                return Double(success + failed) / max(Double(seconds) + Double(attoseconds) / 1e18, 1e-3) * 60
            }
            return success + failed == 0 ? nil : Double(failed) / Double(success + failed)
        }
    }

    private func step(_ rule: AlertRule, value: Double?, client: HTTPClient) async {
        let now = ContinuousClock.now
        let wall = PredictionTime.format(Int64(Date().timeIntervalSince1970 * 1000))
        var current = states.withLock { $0[rule.name]! }
        current.value = value
        var machine = machines.withLock { $0[rule.name] ?? AlertStateMachine() }
        let transition = machine.observe(value, at: now, rule: rule)
        machines.withLock { $0[rule.name] = machine }
        switch (transition, machine.state) {
        case (.firing?, _): current.since = wall
        case (.resolved?, _):
            current.lastResolved = wall
            current.since = nil
        case (nil, .pending): if current.since == nil { current.since = wall }
        case (nil, .inactive): current.since = nil
        case (nil, .firing): break
        }
        current.state = machine.state.rawValue
        Gauge(
            label: "tern_alert_firing", dimensions: [("alert", rule.name), ("model", rule.model), ("severity", rule.severity)],
            factory: factory
        ).record(current.state == "firing" ? 1 : 0)
        if let value {
            Gauge(label: "tern_alert_value", dimensions: [("alert", rule.name), ("model", rule.model)], factory: factory).record(value)
        }
        let snapshot = current
        states.withLock { $0[rule.name] = snapshot }
        guard let transition else { return }
        logger.warning(
            transition == .firing ? "alert firing" : "alert resolved",
            metadata: [
                "alert": "\(rule.name)", "model": "\(rule.model)", "value": "\(value ?? .nan)", "threshold": "\(rule.threshold)",
            ])
        let version = (try? service.catalog.resolveStable(name: rule.model, version: nil).version).map(String.init) ?? ""
        let payload = Self.webhookJSON(
            rule: rule, status: transition.rawValue, value: value, version: version, startsAt: snapshot.since ?? wall,
            endsAt: transition == .resolved ? wall : nil)
        for url in configuration.webhooks {
            Task { await Self.deliver(payload, to: url, client: client, logger: logger) }
        }
        if transition == .firing, let command = rule.retrainCommand {
            Task { await self.retrain(rule, command: command, version: version) }
        }
    }

    /// Alertmanager's webhook JSON (version 4), so that receivers built for it accept Tern's alerts.
    package static func webhookJSON(rule: AlertRule, status: String, value: Double?, version: String, startsAt: String, endsAt: String?) -> Data {
        let labels: [String: String] = [
            "alertname": rule.name, "model": rule.model, "version": version, "severity": rule.severity,
            "metric": rule.metricName,
        ]
        let shown = value.map { String($0) } ?? "unknown"
        let annotations: [String: String] = [
            "summary": status == "resolved"
                ? "\(rule.model) v\(version): resolved: \(rule.metricName) is \(shown), back past \(rule.resolveThreshold) (it fired at \(rule.comparison) \(rule.threshold))"
                : "\(rule.model) v\(version): \(rule.metricName) is \(shown) (\(rule.comparison) \(rule.threshold))",
            "value": value.map { String($0) } ?? "",
        ]
        return webhookJSON(labels: labels, annotations: annotations, status: status, startsAt: startsAt, endsAt: endsAt)
    }

    /// One alert as Alertmanager's webhook JSON; `labels` must hold `alertname`.
    package static func webhookJSON(labels: [String: String], annotations: [String: String], status: String, startsAt: String, endsAt: String?)
        -> Data
    {
        let name = labels["alertname"] ?? "tern"
        let alert: [String: Any] = [
            "status": status, "labels": labels, "annotations": annotations, "startsAt": startsAt,
            "endsAt": endsAt ?? "0001-01-01T00:00:00Z", "generatorURL": "",
            "fingerprint": String(UInt64(bitPattern: Int64(labels.sorted { $0.key < $1.key }.description.hashValue)), radix: 16),
        ]
        let body: [String: Any] = [
            "version": "4", "groupKey": "{}:{alertname=\"\(name)\"}", "truncatedAlerts": 0, "status": status, "receiver": "tern",
            "groupLabels": ["alertname": name], "commonLabels": labels, "commonAnnotations": annotations, "externalURL": "",
            "alerts": [alert],
        ]
        return (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) ?? Data()
    }

    /// POSTs with a 5 s timeout, up to 4 attempts with backoff (0.5, 1, 2 s); a receiver that hangs or fails
    /// is logged, never waited for by anything else.
    package static func deliver(_ payload: Data, to url: String, client: HTTPClient, logger: Logger) async {
        var delay = Duration.milliseconds(500)
        for attempt in 1...4 {
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: payload))
            do {
                let response = try await client.execute(request, timeout: .seconds(5))
                _ = try? await response.body.collect(upTo: 1 << 20)
                if (200..<300).contains(Int(response.status.code)) { return }
                logger.warning("alert webhook answered \(response.status.code)", metadata: ["url": "\(url)", "attempt": "\(attempt)"])
            } catch {
                logger.warning("alert webhook failed", metadata: ["url": "\(url)", "attempt": "\(attempt)", "error": "\(error)"])
            }
            try? await Task.sleep(for: delay)
            delay *= 2
        }
        logger.error("alert webhook gave up", metadata: ["url": "\(url)"])
    }

    /// Runs the rule's retraining command with TERN_MODEL, TERN_VERSION, TERN_ALERT and TERN_DATA (a CSV of the
    /// window's inputs, the model's outputs as `prediction.<name>`, and the ground truth where feedback came
    /// under the bundle's label column, else `label`); records the run in the audit trail.
    private func retrain(_ rule: AlertRule, command: String, version: String) async {
        let folder = FileManager.default.temporaryDirectory.path + "/tern-retrain"
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let dataPath = folder + "/\(rule.name)-\(Int(Date().timeIntervalSince1970 * 1000)).csv"
        if let drift, let served = try? service.catalog.resolveStable(name: rule.model, version: nil),
            let records = try? await drift.records(of: served, window: rule.window)
        {
            let labels = try? await feedback?.labels(of: served.name)
            let labelColumn = await drift.labelColumn(of: served) ?? "label"
            FileManager.default.createFile(
                atPath: dataPath,
                contents: Data(PredictionExport.text(records, format: .csv, labels: labels ?? [:], labelColumn: labelColumn).utf8))
        }
        var attempt = 1
        while true {
            let outcome = await run(rule, command: command, version: version, dataPath: dataPath, attempt: attempt)
            guard outcome != "succeeded", attempt <= rule.retrainRetries, !Task.isCancelled else { return }
            // A failing command is tried again after a growing pause; serving never waits for it.
            try? await Task.sleep(for: rule.retrainBackoff * (1 << (attempt - 1)))
            attempt += 1
        }
    }

    /// One run of the retraining command; its outcome is logged, shown in the API and audited.
    private func run(_ rule: AlertRule, command: String, version: String, dataPath: String, attempt: Int) async -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        var environment = ProcessInfo.processInfo.environment
        environment["TERN_MODEL"] = rule.model
        environment["TERN_VERSION"] = version
        environment["TERN_ALERT"] = rule.name
        environment["TERN_DATA"] = dataPath
        process.environment = environment
        let started = Date()
        var outcome: String
        do {
            try process.run()
            let deadline = ContinuousClock.now + rule.retrainTimeout
            while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(100)) }
            if process.isRunning {
                process.terminate()
                outcome = "timed out after \(rule.retrainTimeout)"
            } else {
                outcome = process.terminationStatus == 0 ? "succeeded" : "failed with status \(process.terminationStatus)"
            }
        } catch {
            outcome = "could not start: \(error)"
        }
        let seconds = Date().timeIntervalSince(started)
        logger.info(
            "retraining \(outcome)",
            metadata: [
                "alert": "\(rule.name)", "model": "\(rule.model)", "seconds": "\(seconds)", "attempt": "\(attempt)",
            ])
        states.withLock { $0[rule.name]?.lastRetrain = attempt > 1 ? "\(outcome) (attempt \(attempt))" : outcome }
        try? await registry?.record(
            action: "retrain", model: rule.model, version: Int(version), actor: "alert:\(rule.name)",
            detail: "\(command): \(outcome)" + (attempt > 1 ? " (attempt \(attempt))" : ""))
        return outcome
    }
}
