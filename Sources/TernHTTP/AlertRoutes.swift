import Foundation
import Hummingbird
import NIOCore
import TernCore
import TernMonitoring

/// `GET /api/v1/alerts`: every rule's state, translation only.
struct AlertRoutes {
    let alerts: AlertEvaluator

    func register(on router: ScopedRouter) {
        router.get("/api/v1/alerts", .read) { _, _ in SnakeCaseJSON(["alerts": alerts.snapshot]) }
    }
}
