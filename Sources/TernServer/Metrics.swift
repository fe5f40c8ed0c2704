import CoreMetrics
import Foundation
import NIOCore
import Prometheus
import TernCore

/// Tern's metrics as Prometheus scrapes them: swift-metrics handles made by this factory land in a
/// swift-prometheus registry, with each metric's help text (``MetricNames/help``) and buckets fit for
/// inference latencies (50 µs to 10 s) and batch sizes (1 to 1024 rows). Timers, which every request
/// records three of, are Tern's own histograms kept per processor (``LatencyHistograms``); ``emit(into:)``
/// writes both.
public struct TernMetricsFactory: MetricsFactory {
    public let registry: PrometheusCollectorRegistry
    let latencies: LatencyHistograms

    public static let latencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
        .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
        .seconds(10),
    ]
    public static let sizeBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    /// For differences of probabilities (a shadow's scores against the answering version's): 0.001 ... 1.
    public static let probabilityBuckets: [Double] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1]
    /// Recorders whose values are probabilities, not sizes.
    static let probabilityLabels: Set<String> = ["tern_shadow_score_abs_difference"]

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        latencies = LatencyHistograms(buckets: Self.latencyBuckets) { MetricNames.help[$0] ?? "" }
    }

    /// The Prometheus text of every metric made by this factory.
    public func emit(into buffer: inout [UInt8]) {
        registry.emit(into: &buffer)
        latencies.emit(into: &buffer)
    }

    private func help(_ label: String) -> String { MetricNames.help[label] ?? "" }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: help(label))
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: help(label))
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(name: label, labels: dimensions, help: help(label)) }
        let buckets = Self.probabilityLabels.contains(label) ? Self.probabilityBuckets : Self.sizeBuckets
        return registry.makeValueHistogram(name: label, labels: dimensions, buckets: buckets, help: help(label))
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(name: label, labels: dimensions, help: help(label))
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        latencies.make(name: label, labels: dimensions)
    }

    public func destroyCounter(_ handler: any CounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    public func destroyRecorder(_ handler: any RecorderHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
        if let histogram = handler as? ValueHistogram { registry.unregisterValueHistogram(histogram) }
    }

    public func destroyMeter(_ handler: any MeterHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
    }

    public func destroyTimer(_ handler: any TimerHandler) {
        if let histogram = handler as? LatencyHistogram { latencies.destroy(histogram) }
    }
}

/// The standard `process_*` metrics, read from /proc at each scrape (as Prometheus's own client libraries
/// name them): CPU seconds, resident and virtual memory, open and maximum file descriptors, start time.
enum ProcessMetrics {
    static func exposition() -> String {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return "" }
        // Fields after "pid (comm) ": state is field 3; utime 14, stime 15, starttime 22, vsize 23, rss 24.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        func field(_ number: Int) -> Double { Double(fields[number - 3]) ?? 0 }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        var bootTime = 0.0
        if let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("btime ") })
        {
            bootTime = Double(line.dropFirst(6)) ?? 0
        }
        let openFiles = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        var text = ""
        func metric(_ name: String, _ type: String, _ help: String, _ value: Double) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        metric(
            "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
            (field(14) + field(15)) / ticks)
        metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", field(24) * pageSize)
        metric("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", field(23))
        metric("process_open_fds", "gauge", "Number of open file descriptors.", Double(openFiles))
        metric("process_max_fds", "gauge", "Maximum number of open file descriptors.", Double(limit.rlim_cur))
        metric(
            "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
            bootTime + field(22) / ticks)
        return text
    }
}
