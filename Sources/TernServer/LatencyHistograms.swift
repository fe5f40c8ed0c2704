import CoreMetrics
import Synchronization
import TernCore

/// The server's latency histograms (swift-metrics timers: a request's time, its wait in the batch queue, its
/// model run), kept per processor and merged when Prometheus scrapes.
///
/// Every request records three of them. swift-prometheus's histogram takes one lock for all threads and
/// compares the value with every bucket under it; here a record finds its one bucket and adds to the copy of
/// the core it runs on (``PerProcessor``), so the event loops never wait for each other or pass a cache
/// line between them. The exposition is the one swift-prometheus writes for its duration histograms
/// (cumulative buckets, `le` and the sum in seconds, `+Inf`, `_sum`, `_count`).
final class LatencyHistograms: Sendable {
    private let bounds: [Int64]
    private let boundTexts: [String]
    private let help: @Sendable (String) -> String
    /// By name, each name's series in the order made (a family's lines stay together in the exposition).
    private let families = Mutex<[(name: String, series: [LatencyHistogram])]>([])

    init(buckets: [Duration], help: @escaping @Sendable (String) -> String) {
        bounds = buckets.map(VersionMetrics.nanoseconds)
        boundTexts = bounds.map(Self.seconds)
        self.help = help
    }

    /// The histogram of `name` with `labels`: the one made before for the same name and labels, if any.
    func make(name: String, labels: [(String, String)]) -> LatencyHistogram {
        families.withLock { families in
            let family = families.firstIndex { $0.name == name } ?? families.count
            if family == families.count { families.append((name, [])) }
            if let made = families[family].series.first(where: { Self.same($0.labels, labels) }) { return made }
            let histogram = LatencyHistogram(name: name, labels: labels, bounds: bounds)
            families[family].series.append(histogram)
            return histogram
        }
    }

    /// Stops exposing `histogram` (its version was unloaded).
    func destroy(_ histogram: LatencyHistogram) {
        families.withLock { families in
            for index in families.indices { families[index].series.removeAll { $0 === histogram } }
            families.removeAll { $0.series.isEmpty }
        }
    }

    /// Appends the Prometheus text of every histogram.
    func emit(into buffer: inout [UInt8]) {
        let families = self.families.withLock { $0 }
        for family in families {
            let help = self.help(family.name)
            if !help.isEmpty {
                buffer.append(contentsOf: "# HELP \(family.name) ".utf8)
                for byte in help.utf8 {
                    if byte == UInt8(ascii: "\\") { buffer.append(contentsOf: #"\\"#.utf8) } else { buffer.append(byte) }
                }
                buffer.append(UInt8(ascii: "\n"))
            }
            buffer.append(contentsOf: "# TYPE \(family.name) histogram\n".utf8)
            for series in family.series { series.emit(into: &buffer, bounds: boundTexts) }
        }
    }

    static func same(_ left: [(String, String)], _ right: [(String, String)]) -> Bool {
        left.count == right.count && zip(left, right).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }

    /// Nanoseconds as Prometheus reads seconds, written as swift-prometheus writes a duration: the whole
    /// seconds, a point, the fraction without trailing zeros ("0.00005", "1.0", "12.3456").
    static func seconds(_ nanoseconds: Int64) -> String {
        let sign = nanoseconds < 0 ? "-" : ""
        let magnitude = nanoseconds.magnitude
        var fraction = String(magnitude % 1_000_000_000)
        fraction = String(repeating: "0", count: 9 - fraction.count) + fraction
        while fraction.count > 1, fraction.last == "0" { fraction.removeLast() }
        return "\(sign)\(magnitude / 1_000_000_000).\(fraction)"
    }
}

/// One latency histogram (a swift-metrics timer): per processor, each bucket's own count (made cumulative
/// when exposed), the sum in nanoseconds and the count.
final class LatencyHistogram: TimerHandler, Sendable {
    let name: String
    let labels: [(String, String)]
    private let rendered: [UInt8]
    private let bounds: [Int64]
    /// Per processor: a count per bucket (the last for values above every bound), then the sum in nanoseconds.
    private let counts: PerProcessor<[Int64]>

    init(name: String, labels: [(String, String)], bounds: [Int64]) {
        self.name = name
        self.labels = labels
        self.bounds = bounds
        var rendered: [UInt8] = []
        for (index, (key, value)) in labels.enumerated() {
            if index > 0 { rendered.append(UInt8(ascii: ",")) }
            rendered.append(contentsOf: key.utf8)
            rendered.append(contentsOf: #"=""#.utf8)
            for byte in value.utf8 {
                switch byte {
                case UInt8(ascii: "\\"): rendered.append(contentsOf: #"\\"#.utf8)
                case UInt8(ascii: "\""): rendered.append(contentsOf: #"\""#.utf8)
                case UInt8(ascii: "\n"): rendered.append(contentsOf: #"\n"#.utf8)
                default: rendered.append(byte)
                }
            }
            rendered.append(UInt8(ascii: "\""))
        }
        self.rendered = rendered
        let slots = bounds.count + 2
        counts = PerProcessor { [Int64](repeating: 0, count: slots) }
    }

    func recordNanoseconds(_ duration: Int64) {
        // A value on a bound counts in that bound's bucket (Prometheus's `le`).
        var bucket = 0
        while bucket < bounds.count, duration > bounds[bucket] { bucket += 1 }
        let sum = bounds.count + 1
        counts.withLocal { counts in
            counts[bucket] &+= 1
            counts[sum] &+= duration
        }
    }

    /// The counts of all processors added: one per bucket (not cumulative, the last above every bound), the sum.
    func merged() -> (buckets: [Int64], sum: Int64) {
        var total = [Int64](repeating: 0, count: bounds.count + 2)
        for index in 0..<counts.count {
            let copy = counts.with(index) { $0 }
            for slot in total.indices { total[slot] &+= copy[slot] }
        }
        return (Array(total[0...bounds.count]), total[bounds.count + 1])
    }

    func emit(into buffer: inout [UInt8], bounds texts: [String]) {
        let (buckets, sum) = merged()
        var cumulative: Int64 = 0
        func line(_ suffix: String, _ le: String?, _ value: String) {
            buffer.append(contentsOf: name.utf8)
            buffer.append(contentsOf: suffix.utf8)
            if !rendered.isEmpty || le != nil {
                buffer.append(UInt8(ascii: "{"))
                buffer.append(contentsOf: rendered)
                if let le {
                    if !rendered.isEmpty { buffer.append(UInt8(ascii: ",")) }
                    buffer.append(contentsOf: #"le=""#.utf8)
                    buffer.append(contentsOf: le.utf8)
                    buffer.append(UInt8(ascii: "\""))
                }
                buffer.append(UInt8(ascii: "}"))
            }
            buffer.append(UInt8(ascii: " "))
            buffer.append(contentsOf: value.utf8)
            buffer.append(UInt8(ascii: "\n"))
        }
        for (index, text) in texts.enumerated() {
            cumulative += buckets[index]
            line("_bucket", text, String(cumulative))
        }
        let count = cumulative + buckets[texts.count]
        line("_bucket", "+Inf", String(count))
        line("_sum", nil, LatencyHistograms.seconds(sum))
        line("_count", nil, String(count))
    }
}
