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
    /// The first dimension of the first input of each prediction, summed (what the log's queue bounds).
    public private(set) var rows = 0
    /// The earliest and latest request times, in milliseconds since the Unix epoch.
    public private(set) var first = Int64.max
    public private(set) var last = Int64.min

    /// The model's feature names and redacted fields (what ``append(time:requestID:protocol:latencyMicroseconds:caller:traceID:inputs:outputs:)`` uses).
    private let featureNames: [String]?
    private let redact: Set<String>
    private var layouts: [PredictionBlock.Layout] = []
    private var lastLayout = 0
    /// Each prediction's time, latency, request id, protocol, caller, trace id and layout, one after another.
    private var heads: PredictionBlock.ByteWriter
    /// Each prediction's tensors.
    private var data: PredictionBlock.ByteWriter

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
    }

    public var isFull: Bool { count >= PredictionBlock.capacity }
    public var isEmpty: Bool { count == 0 }

    /// Appends a prediction of the draft's model (its feature names and redacted fields): its header to the
    /// columns, its tensors' bytes to the data (a redacted tensor keeps only its shape; a redacted feature of
    /// a spread input is stored as zero or an empty string).
    ///
    /// - Precondition: `!isFull`.
    public mutating func append(
        time: Int64, requestID: String, protocol: String, latencyMicroseconds: Int64, caller: String?, traceID: String?,
        inputs: [Tensor], outputs: [Tensor]
    ) {
        append(
            time: time, requestID: requestID, protocol: `protocol`, latencyMicroseconds: latencyMicroseconds, caller: caller,
            traceID: traceID, inputs: inputs, outputs: outputs, featureNames: featureNames, redact: redact)
    }

    private mutating func append(
        time: Int64, requestID: String, protocol: String, latencyMicroseconds: Int64, caller: String?, traceID: String?,
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
        header(time: time, requestID: requestID, protocol: `protocol`, latencyMicroseconds: latencyMicroseconds, caller: caller, traceID: traceID)
        rows += max(1, inputs.first?.shape.first ?? 1)
        let spread = redact.isEmpty ? nil : PredictionRecordEncoder.spreadTensor(inputs, featureNames: featureNames)
        for position in inputs.indices {
            PredictionBlock.writeTensor(
                inputs[position], redact: redact, spreadNames: position == spread ? featureNames : nil, into: &data)
        }
        for position in outputs.indices {
            PredictionBlock.writeTensor(outputs[position], redact: redact, spreadNames: nil, into: &data)
        }
    }

    /// Appends an entry, with its own feature names and redacted fields.
    public mutating func append(_ entry: PredictionEntry) {
        append(
            time: entry.time, requestID: entry.requestID, protocol: entry.protocol, latencyMicroseconds: entry.latencyMicroseconds,
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
            time: record.time, requestID: record.requestID, protocol: record.protocol,
            latencyMicroseconds: record.latencyMicroseconds, caller: record.caller, traceID: record.traceID)
        rows += 1
        data.string(record.inputs)
        data.string(record.outputs)
    }

    private mutating func header(
        time: Int64, requestID: String, protocol: String, latencyMicroseconds: Int64, caller: String?, traceID: String?
    ) {
        count += 1
        first = min(first, time)
        last = max(last, time)
        heads.signed(time)
        heads.signed(latencyMicroseconds)
        heads.string(requestID)
        heads.string(`protocol`)
        heads.optional(caller)
        heads.optional(traceID)
        heads.varint(UInt64(lastLayout))
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
            let time = try reader.signed()
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
