import Hummingbird
import NIOCore
import TernCore

/// `GET /metrics`: Prometheus's text format, as the server composes it (its registry's metrics, then the
/// gauges read at scrape time and the process's).
public struct MetricsRoute: Sendable {
    /// Writes the whole exposition.
    let exposition: @Sendable (inout ByteBuffer) -> Void

    public init(exposition: @escaping @Sendable (inout ByteBuffer) -> Void) {
        self.exposition = exposition
    }

    func register(on router: ScopedRouter) {
        router.get("/metrics", router.access.protectsMetrics ? .metrics : nil) { _, _ in
            var buffer = ByteBuffer()
            buffer.reserveCapacity(16 << 10)
            exposition(&buffer)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: buffer))
        }
    }
}
