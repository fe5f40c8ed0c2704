import Foundation
import Hummingbird
import NIOCore
import TernCore
import TernMonitoring

/// The drift API: translates between HTTP and ``LiveDrift``.
///
/// ```
/// GET /api/v1/models/{model}/drift[?version=V&window=N&since=T&until=T]
/// ```
/// `window` is how many of the version's newest predictions to compare (default 1,000, at most 10,000), or
/// with `since` (and `until`: RFC 3339 times or ages such as `1h`) how many of those in that time range;
/// `version` a number or alias (default: the model's stable version, its default alias's, not a canary's share). Every statistic is the one
/// `tern drift compare` computes (`docs/drift.md`).
struct DriftRoutes {
    let drift: LiveDrift

    func register(on router: ScopedRouter) {
        router.get("/api/v1/models/{model}/drift", .read) { request, context in
            let name = try context.parameters.require("model")
            let query = request.uri.queryParameters
            let window = try query.get("window").map { try Int(OutsideNumber.integer(text: $0, "window", in: 1...10_000)) } ?? 1_000
            let served = try drift.service.catalog.resolveStable(name: name, version: query.get("version").map { String($0) })
            let since = try query.get("since").map { try PredictionTime.parse(String($0), name: "since") }
            let until = try query.get("until").map { try PredictionTime.parse(String($0), name: "until") }
            return SnakeCaseJSON(try await drift.drift(of: served, window: window, since: since, until: until))
        }
    }
}
