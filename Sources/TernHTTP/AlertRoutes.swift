import Foundation
import Hummingbird
import NIOCore
import TernCore
import TernMonitoring

/// `GET /api/v1/alerts`: every rule's state, translation only.
struct AlertRoutes {
    let alerts: AlertEvaluator

    func register(on router: ScopedRouter) {
        router.get("/api/v1/alerts", .read) { _, _ in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(["alerts": alerts.snapshot]))))
        }
    }
}
