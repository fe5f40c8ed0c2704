import TernCodecs
import TernCore

/// The predictions of one model version on their way into a block (``PredictionBlock``): as each prediction
/// arrives its header fields are appended to one buffer and its tensors' bytes to another, so that the log's
/// queue keeps bytes, not the requests' tensors and contexts (nothing of a request is retained, and nothing
/// is freed by another thread), and a request touches two buffers' ends, not one per column (the event loops
/// take turns appending, and each buffer end one takes is a cache miss for the other). The writer finishes
/// a draft into a block (``block(cipher:)``), putting the header fields into columns; JSON Lines files read
/// its records (``records()``).
///
/// A draft holds at most ``PredictionBlock/capacity`` predictions (``isFull``).
public struct PredictionDraft: Sendable {
    public let model: String
    public let version: Int
    /// Predictions appended.
    public private(set) var count = 0
    /// The earliest and latest request times, in milliseconds since the Unix epoch.
    public private(set) var first = Int64.max
    public private(set) var last = Int64.min

    /// The model's feature names and redacted fields (what ``append(microseconds:requestID:protocol:latencyMicroseconds:caller:traceID:inputs:outputs:)`` uses).
    private let featureNames: [String]?
    private let redact: Set<String>
    private var layouts: [PredictionBlock.Layout] = []
    private var lastLayout = 0
    /// Each prediction's time (in microseconds, the order ``merged(_:)`` keeps; the block keeps milliseconds),
    /// latency, request id, protocol, caller, trace id and layout, one after another.
    private var heads: PredictionBlock.ByteWriter
    /// Each prediction's tensors.
    private var data: PredictionBlock.ByteWriter
    /// Where each prediction's tensors end in `data`.
    private var ends: [Int] = []

    /// `featureNames` and `redact`: the model's (the names a `[rows, k]` input spreads into, and the fields
    /// never stored). `expected`: about how many predictions will be appended (the buffers' first capacity).
    public init(model: String, version: Int, featureNames: [String]? = nil, redact: Set<String> = [], expected: Int = 16) {
        self.model = model
        self.version = version
        self.featureNames = featureNames
        self.redact = redact
        let expected = min(max(expected, 1), PredictionBlock.capacity)
        heads = .init(capacity: expected * 40)
        data = .init(capacity: expected * 64)
        ends.reserveCapacity(expected)
    }

    public var isFull: Bool { count >= PredictionBlock.capacity }
    public var isEmpty: Bool { count == 0 }

    /// Appends a prediction of the draft's model (its feature names and redacted fields): its header to the
    /// columns, its tensors' bytes to the data (a redacted tensor keeps only its shape; a redacted feature of
    /// a spread input is stored as zero or an empty string).
    ///
    /// `microseconds`: when the request arrived, since the Unix epoch (the block keeps milliseconds; the
    /// microseconds order the predictions when drafts made on several cores are merged).
    ///
    /// - Precondition: `!isFull`.
    public mutating func append(
        microseconds time: Int64, requestID: String, protocol: String, latencyMicroseconds: Int64, caller: String?, traceID: String?,
        inputs: [Tensor], outputs: [Tensor]
    ) {
        append(
            microseconds: time, requestID: requestID, protocol: `protocol`, latencyMicroseconds: latencyMicroseconds, caller: caller,
            traceID: traceID, inputs: inputs, outputs: outputs, featureNames: featureNames, redact: redact)
    }

    private mutating func append(
        microseconds time: Int64, requestID: String, protocol: String, latencyMicroseconds: Int64, caller: String?, traceID: String?,
        inputs: [Tensor], outputs: [Tensor], featureNames: [String]?, redact: Set<String>
    ) {
        if !(lastLayout < layouts.count && layouts[lastLayout].fits(inputs, outputs, featureNames: featureNames, redact: redact)) {
            if let found = layouts.firstIndex(where: { $0.fits(inputs, outputs, featureNames: featureNames, redact: redact) }) {
                lastLayout = found
            } else {
                layouts.append(PredictionBlock.Layout(inputs: inputs, outputs: outputs, featureNames: featureNames, redact: redact))
                lastLayout = layouts.count - 1
            }
        }
        header(
            microseconds: time, requestID: requestID, protocol: `protocol`, latencyMicroseconds: latencyMicroseconds, caller: caller, traceID: traceID
        )
        let spread = redact.isEmpty ? nil : PredictionRecordEncoder.spreadTensor(inputs, featureNames: featureNames)
        for position in inputs.indices {
            PredictionBlock.writeTensor(
                inputs[position], redact: redact, spreadNames: position == spread ? featureNames : nil, into: &data)
        }
        for position in outputs.indices {
            PredictionBlock.writeTensor(outputs[position], redact: redact, spreadNames: nil, into: &data)
        }
        ends.append(data.buffer.count)
    }

    /// Appends an entry, with its own feature names and redacted fields.
    public mutating func append(_ entry: PredictionEntry) {
        append(
            microseconds: entry.time * 1000, requestID: entry.requestID, protocol: entry.protocol, latencyMicroseconds: entry.latencyMicroseconds,
            caller: entry.caller, traceID: entry.traceID, inputs: entry.inputs, outputs: entry.outputs,
            featureNames: entry.featureNames, redact: entry.redact)
    }

    /// Appends a record written before blocks: its inputs and outputs JSON text kept as it is (sealed or not).
    mutating func append(record: PredictionRecord) {
        if !(lastLayout < layouts.count && layouts[lastLayout].json) {
            if let found = layouts.firstIndex(where: \.json) {
                lastLayout = found
            } else {
                layouts.append(PredictionBlock.Layout(json: true))
                lastLayout = layouts.count - 1
            }
        }
        header(
            microseconds: record.time * 1000, requestID: record.requestID, protocol: record.protocol,
            latencyMicroseconds: record.latencyMicroseconds, caller: record.caller, traceID: record.traceID)
        data.string(record.inputs)
        data.string(record.outputs)
        ends.append(data.buffer.count)
    }

    private mutating func header(
        microseconds time: Int64, requestID: String, protocol: String, latencyMicroseconds: Int64, caller: String?, traceID: String?
    ) {
        count += 1
        first = min(first, Self.milliseconds(time))
        last = max(last, Self.milliseconds(time))
        heads.signed(time)
        heads.signed(latencyMicroseconds)
        heads.string(requestID)
        heads.string(`protocol`)
        heads.optional(caller)
        heads.optional(traceID)
        heads.varint(UInt64(lastLayout))
    }

    /// Microseconds since the epoch as the block's milliseconds (rounded down, before the epoch too).
    static func milliseconds(_ microseconds: Int64) -> Int64 {
        microseconds >= 0 ? microseconds / 1000 : -((-microseconds + 999) / 1000)
    }

    /// Drafts of the same model versions made on different cores, as one draft per version (more when one
    /// passes ``PredictionBlock/capacity``), in the order first seen: each version's predictions interleaved
    /// by the time their requests arrived, each draft's own order kept. So a client's requests one after
    /// another stay in order, whichever core answered each. A version's drafts merge when their feature
    /// names and redacted fields are the same (the same loaded model); a draft alone is returned as it is.
    public static func merged(_ drafts: [PredictionDraft]) -> [PredictionDraft] {
        var groups: [[PredictionDraft]] = []
        for draft in drafts where !draft.isEmpty {
            if let index = groups.firstIndex(where: { $0[0].mergesWith(draft) }) {
                groups[index].append(draft)
            } else {
                groups.append([draft])
            }
        }
        return groups.flatMap { $0.count == 1 ? $0 : merge($0) }
    }

    private func mergesWith(_ other: PredictionDraft) -> Bool {
        model == other.model && version == other.version && featureNames == other.featureNames && redact == other.redact
    }

    /// Where a prediction's header is in `heads`: its arrival time, its start, where its layout starts, its layout.
    private struct Mark {
        var time: Int64
        var start: Int
        var layoutAt: Int
        var layout: Int
    }

    /// Each prediction's ``Mark``, read in one pass over the headers.
    private func marks() -> [Mark] {
        var marks: [Mark] = []
        marks.reserveCapacity(count)
        var reader = ByteReader(heads.buffer)
        for _ in 0..<count {
            let start = reader.position
            let time = (try? reader.signed()) ?? 0
            _ = try? reader.signed()
            reader.skipString()  // request id
            reader.skipString()  // protocol
            reader.skipString(optional: true)  // caller
            reader.skipString(optional: true)  // trace id
            let layoutAt = reader.position
            marks.append(Mark(time: time, start: start, layoutAt: layoutAt, layout: Int((try? reader.varint()) ?? 0)))
        }
        return marks
    }

    private static func merge(_ group: [PredictionDraft]) -> [PredictionDraft] {
        let total = group.reduce(0) { $0 + $1.count }
        func fresh() -> PredictionDraft {
            PredictionDraft(
                model: group[0].model, version: group[0].version, featureNames: group[0].featureNames, redact: group[0].redact,
                expected: total)
        }
        var merged = [fresh()]
        let marks = group.map { $0.marks() }
        var taken = [Int](repeating: 0, count: group.count)
        // Each draft's layouts' places in the merged draft's (found when first used).
        var places = group.map { [Int](repeating: -1, count: $0.layouts.count) }
        while true {
            var pick = -1
            var earliest = Int64.max
            for index in group.indices where taken[index] < marks[index].count {
                let time = marks[index][taken[index]].time
                if pick < 0 || time < earliest {
                    pick = index
                    earliest = time
                }
            }
            guard pick >= 0 else { break }
            if merged[merged.count - 1].isFull {
                merged.append(fresh())
                places = group.map { [Int](repeating: -1, count: $0.layouts.count) }
            }
            let last = merged.count - 1
            let record = taken[pick]
            let mark = marks[pick][record]
            if places[pick][mark.layout] < 0 {
                let wanted = group[pick].layouts[mark.layout]
                if let found = merged[last].layouts.firstIndex(of: wanted) {
                    places[pick][mark.layout] = found
                } else {
                    merged[last].layouts.append(wanted)
                    places[pick][mark.layout] = merged[last].layouts.count - 1
                }
            }
            // The header copied as it is up to its layout, which becomes the merged draft's; then the tensors.
            merged[last].count += 1
            merged[last].first = min(merged[last].first, milliseconds(mark.time))
            merged[last].last = max(merged[last].last, milliseconds(mark.time))
            merged[last].heads.buffer.append(contentsOf: group[pick].heads.buffer[mark.start..<mark.layoutAt])
            merged[last].heads.varint(UInt64(places[pick][mark.layout]))
            let dataStart = record == 0 ? 0 : group[pick].ends[record - 1]
            merged[last].data.buffer.append(contentsOf: group[pick].data.buffer[dataStart..<group[pick].ends[record]])
            merged[last].ends.append(merged[last].data.buffer.count)
            taken[pick] += 1
        }
        return merged
    }

    /// The block's bytes before deflating (its count, layouts, the header columns: times as differences,
    /// latencies, request ids, protocols, callers, trace ids; which layout each prediction has when there
    /// are several; then the data), and each prediction's request id key (``PredictionStore/key(_:)``).
    func finish() throws(TernError) -> (plain: [UInt8], keys: [Int64]) {
        var columns = (0..<7).map { _ in PredictionBlock.ByteWriter(capacity: heads.buffer.count / 4) }
        var keys: [Int64] = []
        keys.reserveCapacity(count)
        var reader = ByteReader(heads.buffer)
        var previous: Int64 = 0
        for _ in 0..<count {
            let time = Self.milliseconds(try reader.signed())
            columns[0].signed(time - previous)
            previous = time
            columns[1].signed(try reader.signed())
            let id = try reader.copyString(into: &columns[2])
            keys.append(heads.buffer[id].withUnsafeBufferPointer { PredictionStore.key(utf8: $0) })
            _ = try reader.copyString(into: &columns[3])
            _ = try reader.copyString(into: &columns[4], optional: true)
            _ = try reader.copyString(into: &columns[5], optional: true)
            columns[6].varint(try reader.varint())
        }
        var plain = PredictionBlock.ByteWriter(capacity: 16 + heads.buffer.count + data.buffer.count + layouts.count * 64)
        plain.varint(UInt64(count))
        plain.varint(UInt64(layouts.count))
        for layout in layouts { PredictionBlock.write(layout, into: &plain) }
        for column in columns[..<(layouts.count > 1 ? 7 : 6)] { plain.bytes(column.buffer) }
        plain.bytes(data.buffer)
        return (plain.buffer, keys)
    }

    /// The finished block (deflated, and sealed with a cipher) and its predictions' request id keys.
    public func block(cipher: PayloadCipher?) throws(TernError) -> (bytes: [UInt8], keys: [Int64]) {
        let (plain, keys) = try finish()
        return (try PredictionBlock.seal(plain, cipher: cipher), keys)
    }

    /// The predictions as records (for JSON Lines files), in the order appended.
    public func records() throws(TernError) -> [PredictionRecord] {
        try PredictionBlock.records(plain: finish().plain, model: model, version: version, cipher: nil).compactMap { $0 }
    }

    /// `entries` as drafts, one per model version in the order first seen (more when one passes
    /// ``PredictionBlock/capacity``).
    public static func drafts(_ entries: [PredictionEntry]) -> [PredictionDraft] {
        grouped(entries, model: \.model, version: \.version) { $0.append($1) }
    }

    /// Records written before blocks as drafts, as ``drafts(_:)`` groups entries.
    static func drafts(records: [PredictionRecord]) -> [PredictionDraft] {
        grouped(records, model: \.model, version: \.version) { $0.append(record: $1) }
    }

    private static func grouped<Row>(
        _ rows: [Row], model: (Row) -> String, version: (Row) -> Int, append: (inout PredictionDraft, Row) -> Void
    ) -> [PredictionDraft] {
        var drafts: [PredictionDraft] = []
        var open: [String: Int] = [:]
        for row in rows {
            let name = "\(version(row)) \(model(row))"
            if let index = open[name], !drafts[index].isFull {
                append(&drafts[index], row)
            } else {
                open[name] = drafts.count
                drafts.append(PredictionDraft(model: model(row), version: version(row), expected: rows.count))
                append(&drafts[drafts.count - 1], row)
            }
        }
        return drafts
    }
}
