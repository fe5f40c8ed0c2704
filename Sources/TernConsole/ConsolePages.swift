import Foundation
import HTTPTypes
import Mustache
import NIOCore
import Synchronization
import TernBundle
import TernCodecs
import TernCore
import TernHTTP
import TernModels
import TernMonitoring
import TernRegistry
import TernRollouts
import TernStatistics

/// The console's pages: the owners' answers turned into the templates' values (``ConsoleTemplates``), with
/// the charts drawn here (``Charts``). Every chart has its numbers in a table beside it.
struct ConsolePages: Sendable {
    let library: MustacheLibrary
    /// Model cards by `name@version`, read from their bundles once.
    private let cards = CardCache()

    init() throws {
        var templates: [String: MustacheTemplate] = [:]
        for (name, text) in ConsoleTemplates.all { templates[name] = try MustacheTemplate(string: text) }
        library = MustacheLibrary(templates: templates)
    }

    private func render(_ template: String, _ values: [String: Any]) -> String {
        library.render(values, withTemplate: template) ?? ""
    }

    /// A whole page: the layout around `body`.
    private func layout(_ title: String, _ body: String, session: ConsoleRoutes.Session) -> String {
        render(
            "layout",
            [
                "title": title, "body": body, "csrf": session.csrf, "signedIn": session.signedIn,
                "who": session.caller?.name ?? "", "admin": session.may(.admin), "version": TernVersion.version,
            ])
    }

    // MARK: - Sign-in and errors

    func login(next: String, message: String?, session: ConsoleRoutes.Session) -> String {
        layout("Sign in", render("login", ["next": next].merging(message.map { ["message": $0] } ?? [:]) { a, _ in a }), session: session)
    }

    func error(status: HTTPResponse.Status, message: String) -> String {
        let session = ConsoleRoutes.Session(caller: nil, csrf: "", signedIn: false)
        return layout(
            "\(status.code) \(status.reasonPhrase)", render("error", ["status": "\(status.code) \(status.reasonPhrase)", "message": message]),
            session: session)
    }

    // MARK: - Models

    func models(_ owners: ConsoleOwners, session: ConsoleRoutes.Session) async throws -> String {
        layout("Models", render("models", ["table": try await modelsTable(owners, session: session)]), session: session)
    }

    func modelsTable(_ owners: ConsoleOwners, session: ConsoleRoutes.Session) async throws -> String {
        let overviews = try await ModelOverview.all(service: owners.service, models: owners.models) { session.caller?.mayUse(model: $0) ?? true }
        let rows: [[String: Any]] = overviews.map { model in
            let series = owners.history.series(model: model.name, span: 300)
            var perSecond = [Double](repeating: 0, count: 300)
            var lastMinute = 0, requests = 0, errors = 0
            for version in series {
                for (index, count) in version.requests.enumerated() { perSecond[index] += Double(count) }
                lastMinute += version.requests.suffix(60).reduce(0) { $0 + Int($1) }
                requests += version.total.requests
                errors += version.total.refused + version.total.failed
            }
            let aliases = Dictionary(grouping: model.aliases, by: \.version).mapValues { $0.map(\.name).sorted() }
            let versions = model.versions.map { version -> String in
                let names = aliases[version.number].map { " (" + $0.joined(separator: ", ") + ")" } ?? ""
                return "v\(version.number)\(names)" + (version.loaded ? "" : " [\(version.state)]")
            }
            return [
                "name": model.name, "href": "/ui/models/" + ConsoleRoutes.pathSegment(model.name),
                "versions": versions.joined(separator: " · "),
                "traffic": Self.traffic(model),
                "loaded": "\(model.versions.filter(\.loaded).count) of \(model.versions.count) loaded",
                "rate": Charts.number(Double(lastMinute) / 60), "errors": requests == 0 ? "-" : Self.percent(Double(errors) / Double(requests)),
                "requests": Charts.grouped(requests),
                "spark": Charts.sparkline(perSecond, label: "\(model.name): requests per second over the last 5 minutes"),
            ]
        }
        return render("modelsTable", ["models": rows, "none": rows.isEmpty])
    }

    static func traffic(_ model: ModelOverview) -> String {
        if model.traffic.isEmpty {
            return model.defaultVersion.map { "all to v\($0)" } ?? "-"
        }
        let total = model.traffic.reduce(0) { $0 + $1.weight }
        return model.traffic.map { "v\($0.version) \(percent(total > 0 ? $0.weight / total : 0))" }.joined(separator: " · ")
            + (model.shadows.isEmpty ? "" : " · shadow " + model.shadows.map { "v\($0)" }.joined(separator: ", "))
    }

    static func percent(_ share: Double) -> String {
        let value = share * 100
        return (value == value.rounded() ? String(Int(value)) : String(format: value < 1 ? "%.2f" : "%.1f", value)) + "%"
    }

    // MARK: - One model

    func model(_ name: String, _ owners: ConsoleOwners, session: ConsoleRoutes.Session, query: [String: String]) async throws -> String {
        let overviews = try await ModelOverview.all(service: owners.service, models: owners.models) { $0 == name }
        guard let model = overviews.first else {
            let known = owners.service.catalog.modelNames.filter { session.caller?.mayUse(model: $0) ?? true }
            throw TernError.notFound("no model '\(Echo.clip(name))'; models: \(known.joined(separator: ", "))")
        }
        let span = [300, 900, 3_600].contains(Int(query["span"] ?? "") ?? 0) ? Int(query["span"]!)! : 300
        var values: [String: Any] = [
            "name": model.name, "href": "/ui/models/" + ConsoleRoutes.pathSegment(model.name), "csrf": session.csrf,
            "admin": session.may(.admin) && owners.models != nil, "mayExplain": session.may(.infer) && owners.explanations != nil,
            "traffic": Self.traffic(model), "span": span,
            "spans": [(300, "5 minutes"), (900, "15 minutes"), (3_600, "hour")].map { ["value": $0.0, "label": $0.1, "selected": $0.0 == span] },
            "live": live(name, owners, span: span),
        ]
        if let done = query["done"], !done.isEmpty { values["done"] = done }
        values["versions"] = model.versions.map { version -> [String: Any] in
            [
                "number": version.number, "state": version.state, "loaded": version.loaded ? "yes" : "no",
                "aliases": version.aliases.joined(separator: ", "), "created": version.createdAt ?? "", "by": version.createdBy ?? "",
                "sha": String((version.sha256 ?? "").prefix(12)),
                "metrics": version.validation.filter { ["accuracy", "roc_auc", "f1", "rmse", "r2"].contains($0.name) }
                    .map { "\($0.name) \(Charts.number($0.value))" }.joined(separator: ", "),
                "archivable": version.state == "active",
            ]
        }
        values["versionNumbers"] = model.versions.map { ["number": $0.number] }
        values["aliasNames"] = model.aliases.map { ["name": $0.name] }
        if let models = owners.models {
            if let rollout = try await rollout(name, models, owners.rollouts, session: session) { values["rollout"] = rollout }
            values["audit"] = try await audit(name, models.registry, query: query)
            if let stable = try? owners.service.catalog.resolveStable(name: name, version: nil) {
                if let card = try await card(name, version: stable.version, registry: models.registry) {
                    values["card"] = card
                    values["cardVersion"] = stable.version
                }
            }
        }
        if let drift = await drift(name, owners) { values["drift"] = drift }
        let quality = await quality(name, owners)
        values["quality"] = quality ?? []
        values["hasQuality"] = !(quality ?? []).isEmpty
        let alerts = alerts(name, owners)
        values["alerts"] = alerts ?? []
        values["hasAlerts"] = !(alerts ?? []).isEmpty
        if let served = try? owners.service.catalog.resolveStable(name: name, version: nil) {
            values["example"] = Self.exampleRequest(served)
        }
        return layout(model.name, render("model", values), session: session)
    }

    /// The live section: each version's requests per second, latency percentiles and errors over `span`
    /// seconds, charted and in a table (refreshed by the page's script).
    func live(_ name: String, _ owners: ConsoleOwners, span: Int) -> String {
        let span = max(60, min(span, TrafficHistory.seconds))
        let series = owners.history.series(model: name, span: span)
        // Charts of 5-second (15-second for the hour) means: a second-by-second line is noise at this width.
        let step = span > 900 ? 15 : 5
        func mean(_ values: [Double?]) -> [Double?] {
            stride(from: 0, to: values.count, by: step).map { start in
                let window = values[start..<min(start + step, values.count)].compactMap { $0 }
                return window.isEmpty ? nil : window.reduce(0, +) / Double(window.count)
            }
        }
        let rates = series.map { Charts.Line(name: "v\($0.version)", values: mean($0.requests.map { Double($0) })) }
        let errors = series.map { version in
            Charts.Line(name: "v\(version.version)", values: mean(zip(version.refused, version.failed).map { Double($0) + Double($1) }))
        }
        var latency: [Charts.Line] = []
        for version in series {
            latency.append(Charts.Line(name: "v\(version.version) p50", values: mean(version.p50)))
            latency.append(Charts.Line(name: "v\(version.version) p99", values: mean(version.p99), dashed: true))
        }
        let minutes = span / 60
        let rows: [[String: Any]] = series.map { version in
            let total = version.total
            return [
                "version": version.version, "requests": Charts.grouped(total.requests),
                "rate": Charts.number(Double(total.requests) / Double(span)), "refused": Charts.grouped(total.refused),
                "failed": Charts.grouped(total.failed),
                "errorRate": total.requests == 0 ? "-" : Self.percent(Double(total.refused + total.failed) / Double(total.requests)),
                "p50": Self.milliseconds(total.p50), "p95": Self.milliseconds(total.p95), "p99": Self.milliseconds(total.p99),
            ]
        }
        return render(
            "live",
            [
                "minutes": minutes, "rows": rows, "none": series.isEmpty,
                "rateChart": Charts.lines(rates, unit: "requests/s", label: "Requests per second by version, last \(minutes) minutes"),
                "latencyChart": Charts.lines(latency, unit: "ms (bucket bound)", label: "Latency p50 and p99 by version, last \(minutes) minutes"),
                "errorChart": Charts.lines(errors, unit: "errors/s", label: "Errors per second by version, last \(minutes) minutes"),
            ])
    }

    static func milliseconds(_ value: Double?) -> String {
        guard let value else { return "-" }
        return "≤ " + (value < 1 ? String(format: "%.2f", value) : Charts.number(value)) + " ms"
    }

    private func rollout(_ name: String, _ models: RegistryModels, _ driver: RolloutDriver?, session: ConsoleRoutes.Session) async throws -> [String:
        Any]?
    {
        guard let rollout = try await models.registry.rollout(model: name) else { return nil }
        var values: [String: Any] = [
            "state": rollout.state, "stable": rollout.stable, "candidate": rollout.candidate, "alias": rollout.alias,
            "step": rollout.step + 1, "stepCount": rollout.steps.count,
            "steps": rollout.steps.enumerated().map { index, share in
                ["share": Charts.number(share) + "%", "current": index == rollout.step, "done": index < rollout.step]
            },
            "startedAt": rollout.startedAt, "startedBy": rollout.startedBy,
            "live": rollout.state == "running" || rollout.state == "paused",
        ]
        if let reason = rollout.reason, !reason.isEmpty { values["reason"] = reason }
        if rollout.state == "running" || rollout.state == "paused", let driver {
            let numbers = await driver.judge(rollout).numbers
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            if let data = try? encoder.encode(numbers), let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
                values["hasNumbers"] = !object.isEmpty
                values["numbers"] = object.keys.sorted().map { key in
                    ["name": key.replacingOccurrences(of: "_", with: " "), "value": Self.text(object[key])]
                }
            }
        }
        if session.may(.admin) {
            let allowed: [String] =
                switch rollout.state {
                case "running": ["pause", "promote", "abort"]
                case "paused": ["resume", "promote", "abort"]
                default: []
                }
            values["actions"] = allowed.map { ["step": $0] }
            values["hasActions"] = !allowed.isEmpty
        }
        return values
    }

    static func text(_ value: Any?) -> String {
        switch value {
        case let flag as NSNumber where flag is Bool: return flag.boolValue ? "yes" : "no"
        case let number as NSNumber: return Charts.number(number.doubleValue)
        case let text as String: return text
        case nil, is NSNull: return "-"
        case let array as [Any]: return array.map { text($0) }.joined(separator: ", ")
        case let object as [String: Any]: return object.keys.sorted().map { "\($0) \(text(object[$0]))" }.joined(separator: ", ")
        default: return "\(value!)"
        }
    }

    private func audit(_ name: String, _ registry: Registry, query: [String: String]) async throws -> [String: Any] {
        let action = (query["action"] ?? "").trimmingCharacters(in: .whitespaces)
        let actor = (query["actor"] ?? "").trimmingCharacters(in: .whitespaces)
        let all = try await registry.auditLog(model: name)
        let kept = all.filter { (action.isEmpty || $0.action == action) && (actor.isEmpty || $0.actor == actor) }
        let entries = kept.suffix(100).reversed().map { entry -> [String: Any] in
            [
                "seq": entry.seq, "at": entry.at, "actor": entry.actor, "action": entry.action,
                "version": entry.version.map { "v\($0)" } ?? "",
                "change": Self.clipped([entry.before, entry.after].compactMap { $0 }.joined(separator: " → ")),
            ]
        }
        return [
            "entries": Array(entries), "shown": entries.count, "total": kept.count, "action": action, "actor": actor,
            "actions": Set(all.map(\.action)).sorted().map { ["name": $0, "selected": $0 == action] },
        ]
    }

    private func card(_ name: String, version: Int, registry: Registry) async throws -> String? {
        let key = "\(name)@\(version)"
        if let card = cards.cards.withLock({ $0[key] }) { return card }
        guard let bundle = try? ModelBundle(archive: try await registry.archive(name, version)),
            let markdown = bundle.files[BundleFile.card].flatMap({ String(data: $0, encoding: .utf8) })
        else { return nil }
        let html = CardHTML.render(markdown)
        cards.cards.withLock { $0[key] = html }
        return html
    }

    private func drift(_ name: String, _ owners: ConsoleOwners) async -> [String: Any]? {
        guard let drift = owners.drift, let served = try? owners.service.catalog.resolveStable(name: name, version: nil) else { return nil }
        do {
            let answer = try await drift.drift(of: served, window: 1_000)
            let features = answer.features.map { feature -> [String: Any] in
                var values: [String: Any] = [
                    "feature": feature.feature, "kind": feature.kind.rawValue, "live": Charts.grouped(feature.liveCount),
                    "psi": Charts.number(feature.psi), "p": Self.pValue(feature.ksPValue ?? feature.chiSquaredPValue),
                    "test": feature.ksPValue != nil ? "KS" : (feature.chiSquaredPValue != nil ? "χ²" : ""),
                    "drifted": feature.drifted, "reasons": feature.reasons.joined(separator: "; "),
                ]
                if let insufficient = feature.insufficientData { values["insufficient"] = insufficient }
                if let bins = feature.bins, let reference = feature.referenceCounts, let live = feature.liveCounts, !bins.isEmpty {
                    values["histogram"] = Charts.histogram(
                        bins: bins, reference: reference, live: live,
                        label: "\(feature.feature): reference and live shares per bin")
                    let referenceTotal = max(reference.reduce(0, +), 1), liveTotal = max(live.reduce(0, +), 1)
                    values["bins"] = bins.indices.map { index in
                        [
                            "bin": bins[index], "reference": Self.percent(Double(reference[index]) / Double(referenceTotal)),
                            "live": Self.percent(Double(live[index]) / Double(liveTotal)),
                        ]
                    }
                }
                return values
            }
            return [
                "version": answer.version, "predictions": Charts.grouped(answer.predictions), "rows": Charts.grouped(answer.rows),
                "referenceRows": Charts.grouped(answer.referenceRows), "drifted": answer.drifted.joined(separator: ", "),
                "anyDrift": !answer.drifted.isEmpty, "features": features, "empty": answer.features.isEmpty,
            ]
        } catch {
            return ["unavailable": ErrorAnswer.clientFacing(error).message]
        }
    }

    /// A long audit detail (a whole manifest) cut to what a table row can show.
    static func clipped(_ text: String, limit: Int = 240) -> String {
        text.count <= limit ? text : String(text.prefix(limit)) + "…"
    }

    static func pValue(_ value: Double?) -> String {
        guard let value else { return "-" }
        return value < 0.001 ? String(format: "%.1e", value) : String(format: "%.3f", value)
    }

    private func quality(_ name: String, _ owners: ConsoleOwners) async -> [[String: Any]]? {
        guard let feedback = owners.feedback, let versions = try? await feedback.performance(of: name, since: nil, newest: nil),
            !versions.isEmpty
        else { return nil }
        return versions.map { version in
            let live = Dictionary(MetricView.all(version.live).map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
            let validation = Dictionary(MetricView.all(version.validation).map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
            let names = ["accuracy", "roc_auc", "f1", "precision", "recall", "log_loss", "mae", "rmse", "r2"].filter {
                live[$0] != nil || validation[$0] != nil
            }
            return [
                "version": version.version, "predictions": Charts.grouped(version.predictions), "rows": Charts.grouped(version.rows),
                "delay": version.labelDelaySecondsMedian.map { Charts.number($0) + " s" } ?? "-",
                "metrics": names.map { ["name": $0, "live": Charts.number(live[$0]), "validation": Charts.number(validation[$0])] },
            ]
        }
    }

    private func alerts(_ name: String, _ owners: ConsoleOwners) -> [[String: Any]]? {
        guard let alerts = owners.alerts else { return nil }
        return alerts.snapshot.filter { $0.model == name }.map { alert in
            [
                "rule": alert.rule, "metric": alert.metric, "state": alert.state, "firing": alert.state == "firing",
                "value": Charts.number(alert.value), "threshold": Charts.number(alert.threshold), "severity": alert.severity,
                "since": alert.since ?? "-", "resolved": alert.lastResolved ?? "-",
            ]
        }
    }

    /// A v2 request of one row of zeros for the version's signature: a start for the explanation form.
    static func exampleRequest(_ served: ServedModel) -> String {
        var writer = JSONWriter()
        writer.raw("{\"inputs\":[")
        for (index, spec) in served.model.signature.inputs.enumerated() {
            if index > 0 { writer.byte(UInt8(ascii: ",")) }
            let shape = spec.shape.map { $0 < 0 ? 1 : $0 }
            writer.tensorHeader(name: spec.name, datatype: spec.datatype, shape: shape)
            let count = shape.reduce(1, *)
            writer.raw(",\"data\":[")
            for index in 0..<min(count, 10_000) {
                if index > 0 { writer.byte(UInt8(ascii: ",")) }
                if spec.datatype == .bytes { writer.string("") } else { writer.byte(UInt8(ascii: "0")) }
            }
            writer.raw("]}")
        }
        writer.raw("]}")
        return String(buffer: writer.buffer)
    }

    // MARK: - Actions and explanations

    func confirm(_ model: String, _ action: ConsoleAction, session: ConsoleRoutes.Session) throws -> String {
        layout(
            "Confirm",
            render(
                "confirm",
                [
                    "summary": action.summary(model), "model": model, "href": "/ui/models/" + ConsoleRoutes.pathSegment(model),
                    "csrf": session.csrf, "fields": action.fields.map { ["name": $0.name, "value": $0.value] },
                ]), session: session)
    }

    func explanation(_ name: String, _ owners: ConsoleOwners, request text: String, session: ConsoleRoutes.Session) async throws -> String {
        guard let explanations = owners.explanations else { throw TernError.notFound("explanations are not served here") }
        var buffer = ByteBuffer(string: text)
        let request = try V2RequestDecoder.decode(body: buffer, headerLength: nil).0
        let call = CallContext(wire: WireProtocol(rawValue: "console"))
        call.caller = session.caller
        buffer.clear()
        let served = try owners.service.catalog.resolveStable(name: name, version: nil)
        let (answer, _) = try await explanations.explainRoute(served, request)
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: answer)) as? [String: Any],
            let features = object["features"] as? [String], let outputs = object["outputs"] as? [String],
            let rows = object["rows"] as? [[String: Any]], let first = rows.first,
            let attributions = first["attributions"] as? [String: [Double]], let output = outputs.first,
            let values = attributions[output]
        else { throw TernError(.internalError, "the explanation's answer has an unexpected shape") }
        let items = zip(features, values).map { (name: $0, value: $1) }.sorted { abs($0.value) > abs($1.value) }
        let base = (object["base_values"] as? [Double])?.first
        return layout(
            "Explanation",
            render(
                "explanation",
                [
                    "model": name, "version": served.version, "href": "/ui/models/" + ConsoleRoutes.pathSegment(name), "output": output,
                    "base": Charts.number(base), "score": Self.text(first["score"]), "rows": rows.count,
                    "chart": Charts.bars(items, label: "Attribution of each feature to \(output) for the first row"),
                    "items": items.map { ["name": $0.name, "value": String(format: "%.5g", $0.value)] }, "request": text,
                ]), session: session)
    }

    // MARK: - Jobs and keys

    func jobs(_ owners: ConsoleOwners, session: ConsoleRoutes.Session) async throws -> String {
        layout(
            "Batch jobs", render("jobs", ["table": try await jobsTable(owners, session: session), "served": owners.jobs != nil]), session: session)
    }

    func jobsTable(_ owners: ConsoleOwners, session: ConsoleRoutes.Session) async throws -> String {
        guard let jobs = owners.jobs else { return "" }
        let rows: [[String: Any]] = try await jobs.list().filter { session.caller?.mayUse(model: $0["model"] as? String ?? "") ?? true }.map { job in
            let fraction = job["fraction_done"] as? Double
            var row: [String: Any] = [
                "id": job["id"] as? String ?? "", "model": job["model"] as? String ?? "", "version": (job["version"] as? Int).map { "v\($0)" } ?? "",
                "state": job["state"] as? String ?? "", "rows": Charts.grouped(job["rows"] as? Int ?? 0),
                "rejected": Charts.grouped(job["rejected"] as? Int ?? 0), "started": job["started_at"] as? String ?? "",
                "ended": job["ended_at"] as? String ?? "", "input": job["input"] as? String ?? "", "output": job["output"] as? String ?? "",
            ]
            // Mustache shows a section for any value, an empty text too: only what is there is given.
            if let error = job["error"] as? String { row["error"] = error }
            if let fraction { row["progress"] = String(Int((fraction * 100).rounded())) }
            return row
        }
        return render("jobsTable", ["jobs": rows, "none": rows.isEmpty])
    }

    func keys(_ owners: ConsoleOwners, session: ConsoleRoutes.Session) async throws -> String {
        guard let registry = owners.models?.registry else { throw TernError.notFound("this server has no registry of keys") }
        let rows: [[String: Any]] = try await registry.keys().map { key in
            [
                "name": key.name, "id": key.id, "scopes": key.scopes.map(\.rawValue).sorted().joined(separator: ", "),
                "models": key.models?.joined(separator: ", ") ?? "all", "created": key.createdAt, "by": key.createdBy,
                "expires": key.expiresAt ?? "never", "revoked": key.revokedAt ?? "",
                "used": owners.keyLastUse(key.name).map { ISO8601DateFormatter().string(from: $0) } ?? "not since this server started",
            ]
        }
        return layout("API keys", render("keys", ["keys": rows]), session: session)
    }
}

final class CardCache: Sendable {
    let cards = Mutex<[String: String]>([:])
}
