import Prometheus
import Testing

@testable import TernServer

/// Tern's per-processor latency histograms write what swift-prometheus's duration histogram writes for the
/// same records: the same buckets, sums and counts, line for line.
@Suite struct LatencyHistogramsTests {
    static let name = "tern_request_duration_seconds"
    static let labels = [("model", #"a "quoted" \ name"#), ("version", "3")]

    @Test func writesWhatSwiftPrometheusWritesForTheSameRecords() async throws {
        // Below the first bound, on bounds (a value on a bound counts in it), between them, past the last.
        let values: [Int64] =
            [1_000, 50_000, 50_001, 999_999, 1_000_000, 7_300_000, 2_500_000_000, 20_000_000_000]
            + (0..<2_000).map { Int64($0) * 37_811 % 300_000_000 }

        let registry = PrometheusCollectorRegistry()
        let reference = registry.makeDurationHistogram(
            name: Self.name, labels: Self.labels, buckets: TernMetricsFactory.latencyBuckets, help: "Latency.")
        for value in values { reference.recordNanoseconds(value) }

        let histograms = LatencyHistograms(buckets: TernMetricsFactory.latencyBuckets) { _ in "Latency." }
        let histogram = histograms.make(name: Self.name, labels: Self.labels)
        #expect(histograms.make(name: Self.name, labels: Self.labels) === histogram)
        // Recorded from several threads at once, so that more than one processor's copy holds counts.
        await withTaskGroup(of: Void.self) { group in
            for part in 0..<4 {
                group.addTask {
                    for (index, value) in values.enumerated() where index % 4 == part { histogram.recordNanoseconds(value) }
                }
            }
        }

        var expected: [UInt8] = []
        registry.emit(into: &expected)
        var written: [UInt8] = []
        histograms.emit(into: &written)
        #expect(String(decoding: written, as: UTF8.self) == String(decoding: expected, as: UTF8.self))
        #expect(String(decoding: written, as: UTF8.self).contains(#"le="+Inf"} 2008"#))

        histograms.destroy(histogram)
        var none: [UInt8] = []
        histograms.emit(into: &none)
        #expect(none.isEmpty)
    }

    @Test func secondsAreWrittenAsSwiftPrometheusWritesADuration() {
        for nanoseconds: Int64 in [0, 1, 50_000, 1_000_000_000, 1_234_500_000, 12_000_000_001] {
            #expect(LatencyHistograms.seconds(nanoseconds) == Duration.nanoseconds(nanoseconds).bucketRepresentation)
        }
    }
}
