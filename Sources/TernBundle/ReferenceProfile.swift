import Foundation
import TernCore
import TernStatistics

/// What the training (reference) data looked like: the baseline that drift is measured against.
public struct ReferenceProfile: Codable, Sendable, Equatable {
    public var rows: Int
    /// One entry per input column, in the CSV's order.
    public var features: [FeatureProfile]
    /// The model's outputs on the same rows.
    public var predictions: [FeatureProfile]
    /// A bounded random sample of the rows (raw CSV values), for exact two-sample tests later.
    public var sample: Sample
    /// The model's outputs on the same sampled rows (`label`, `probabilities[1]`, ...), for the drift of the
    /// predictions themselves; nil in bundles made before it was kept.
    public var outputSample: Sample?
    /// The ground truth's column in the reference data (`tern pack --label-column`), left out of the
    /// features; nil when the data had none, and in bundles made before it was kept.
    public var labelColumn: String?

    public struct Sample: Codable, Sendable, Equatable {
        public var columns: [String]
        public var rows: [[String]]
        public var seed: UInt64
    }

    /// The most rows kept in ``sample`` unless told otherwise (`tern pack --reference-sample`): enough for the
    /// Kolmogorov-Smirnov test's exact p-value and a stable Wasserstein distance, small enough to ship.
    public static let defaultSampleLimit = 10_000

    /// - Parameter outputs: the model's outputs on every row of `table` (same order), sampled with it.
    public init(
        table: CSVTable, predictions: [FeatureProfile], outputs: (columns: [String], rows: [[String]])? = nil,
        seed: UInt64 = 42, sampleLimit: Int = defaultSampleLimit
    ) {
        rows = table.rows.count
        features = table.columns.indices.map { FeatureProfile(name: table.columns[$0], values: table.column($0)) }
        self.predictions = predictions
        let kept = Self.reservoir(Array(table.rows.indices), limit: sampleLimit, seed: seed)
        sample = Sample(columns: table.columns, rows: kept.map { table.rows[$0] }, seed: seed)
        if let outputs, outputs.rows.count == table.rows.count {
            outputSample = Sample(columns: outputs.columns, rows: kept.map { outputs.rows[$0] }, seed: seed)
        }
    }

    /// Reservoir sampling (Algorithm R) with a seeded generator: the same file gives the same sample.
    static func reservoir<Row>(_ rows: [Row], limit: Int, seed: UInt64) -> [Row] {
        guard rows.count > limit else { return rows }
        var generator = SplitMix64(seed: seed)
        var kept = Array(rows.prefix(limit))
        for index in limit..<rows.count {
            let slot = Int(generator.next() % UInt64(index + 1))
            if slot < limit { kept[slot] = rows[index] }
        }
        return kept
    }
}

/// One column's distribution: numeric (all present values parse as numbers) or categorical.
public struct FeatureProfile: Codable, Sendable, Equatable {
    public var name: String
    /// `numeric` or `categorical`.
    public var kind: String
    /// Present (non-missing) values.
    public var count: Int
    public var missing: Int
    public var numeric: NumericSummary?
    public var categorical: CategoricalSummary?

    /// Values read as missing, as pandas reads them.
    public static let missingMarkers: Set<String> = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]

    public init(name: String, values: [String]) {
        let present = values.filter { !Self.missingMarkers.contains($0.trimmingCharacters(in: .whitespaces)) }
        let numbers = present.compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        if !present.isEmpty, numbers.count == present.count, numbers.allSatisfy(\.isFinite) {
            self.init(name: name, numbers: numbers, missing: values.count - present.count)
        } else {
            self.init(name: name, categories: present, missing: values.count - present.count)
        }
    }

    public init(name: String, numbers: [Double], missing: Int = 0) {
        self.name = name
        kind = "numeric"
        count = numbers.count
        self.missing = missing
        numeric = NumericSummary(numbers)
    }

    public init(name: String, categories: [String], missing: Int = 0) {
        self.name = name
        kind = "categorical"
        count = categories.count
        self.missing = missing
        categorical = CategoricalSummary(categories)
    }
}

/// Moments, order statistics and a histogram, computed as numpy computes them.
public struct NumericSummary: Codable, Sendable, Equatable {
    public var mean: Double?
    /// Sample standard deviation (n - 1 in the denominator, as pandas' `describe`); nil below two values.
    public var std: Double?
    public var min: Double?
    public var max: Double?
    /// Quantile ("0.05") -> value, linear interpolation between order statistics (numpy's default).
    public var quantiles: [String: Double]
    public var histogram: Histogram?
    /// The whole column's decile bins as drift uses them (`numpy.quantile(values, [0.1, ..., 0.9])`, repeated
    /// edges dropped, bins (-inf, e1], ..., (em, +inf)) and its count in each; nil in older bundles.
    public var deciles: Deciles?

    public struct Deciles: Codable, Sendable, Equatable {
        public var edges: [Double]
        public var counts: [Int]
    }

    public struct Histogram: Codable, Sendable, Equatable {
        /// `bins + 1` edges; the last bin includes its right edge.
        public var edges: [Double]
        public var counts: [Int]
    }

    public static let quantileLevels: [Double] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
    public static let histogramBins = 10

    public init(_ values: [Double]) {
        quantiles = [:]
        guard !values.isEmpty else { return }
        let n = Double(values.count)
        // Two-pass mean and variance: exact enough to compare with numpy at 1e-12 relative.
        let mean = values.reduce(0, +) / n
        self.mean = mean
        if values.count > 1 {
            std = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)).squareRoot()
        }
        let edges = DriftStatistics.decileEdges(values)
        deciles = Deciles(edges: edges, counts: DriftStatistics.binCounts(values, edges: edges))
        let sorted = values.sorted()
        min = sorted.first
        max = sorted.last
        for level in Self.quantileLevels {
            quantiles[Self.key(level)] = Self.quantile(sorted, level)
        }
        histogram = Self.histogram(sorted, bins: Self.histogramBins)
    }

    public static func key(_ level: Double) -> String { String(format: "%g", level) }

    /// numpy's `quantile(method="linear")` on sorted values.
    static func quantile(_ sorted: [Double], _ level: Double) -> Double {
        let position = Double(sorted.count - 1) * level
        let lower = Int(position.rounded(.down))
        let upper = Swift.min(lower + 1, sorted.count - 1)
        let fraction = position - Double(lower)
        return sorted[lower] + fraction * (sorted[upper] - sorted[lower])
    }

    /// numpy's `histogram(values, bins)`: equal-width bins over [min, max] (±0.5 when they are equal).
    static func histogram(_ sorted: [Double], bins: Int) -> Histogram {
        var first = sorted.first!, last = sorted.last!
        if first == last {
            first -= 0.5
            last += 0.5
        }
        let step = (last - first) / Double(bins)
        var edges = (0...bins).map { first + Double($0) * step }
        edges[bins] = last
        var counts = [Int](repeating: 0, count: bins)
        let norm = Double(bins) / (last - first)
        for value in sorted {
            var index = Int((value - first) * norm)
            if index >= bins { index = bins - 1 }
            if value < edges[index] { index -= 1 }
            if index + 1 < bins, value >= edges[index + 1] { index += 1 }
            counts[Swift.max(0, index)] += 1
        }
        return Histogram(edges: edges, counts: counts)
    }
}

/// Category frequencies: the most frequent values, the rest summed.
public struct CategoricalSummary: Codable, Sendable, Equatable {
    public var distinct: Int
    /// Value -> count for the ``limit`` most frequent values.
    public var frequencies: [String: Int]
    /// Rows whose value is not among `frequencies`.
    public var other: Int

    public static let limit = 100

    public init(_ values: [String]) {
        var counts: [String: Int] = [:]
        for value in values { counts[value, default: 0] += 1 }
        distinct = counts.count
        let top = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(Self.limit)
        frequencies = Dictionary(uniqueKeysWithValues: top.map { ($0.key, $0.value) })
        other = values.count - top.reduce(0) { $0 + $1.value }
    }
}
