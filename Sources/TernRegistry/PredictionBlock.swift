import CGzip
import TernCodecs
import TernCore

/// How a database keeps the prediction log: the predictions of one model version that one writer pass
/// takes are packed into one block, column by column (times as differences, then latencies, request ids,
/// protocols, callers, trace ids), then each prediction's tensors as typed bytes (4 bytes for an FP32
/// feature, a length and the bytes for a string), and the whole deflated. What the tensors mean (names,
/// types, the feature names a `[rows, k]` input spreads into, redacted fields) is written once per block.
/// JSON is made only when a record is read, by the same encoder the JSON Lines files use, so a record
/// reads the same from either.
///
/// Redacted fields are never stored: a redacted tensor keeps only its shape, a redacted feature of a
/// spread input is stored as zero (or an empty string), and both read back as `"[redacted]"`.
///
/// Predictions reach a block through a ``PredictionDraft``; records written before blocks (JSON text) are moved
/// into blocks whose layout says so.
package enum PredictionBlock {
    /// The first byte of a block: deflated, or sealed (``PayloadCipher``) then deflated inside.
    static let deflated: UInt8 = 1
    static let sealed: UInt8 = 2

    /// The most predictions a block holds (a record's id is its block's id times this, plus its slot).
    package static let capacity = 1 << 16

    struct TensorLayout: Equatable {
        var name: String
        var datatype: DataType
        var rank: Int
        var inner: ArraySlice<Int>
        var redacted: Bool
    }

    /// What the predictions of a block that share it mean.
    struct Layout: Equatable {
        /// Inputs and outputs as JSON text (records from before blocks).
        var json = false
        var featureNames: [String]?
        var redact: Set<String> = []
        var inputs: [TensorLayout] = []
        var outputs: [TensorLayout] = []

        init(json: Bool) { self.json = json }

        init(inputs: [Tensor], outputs: [Tensor], featureNames: [String]?, redact: Set<String>) {
            self.featureNames = featureNames
            self.redact = redact
            self.inputs = inputs.map { Self.tensor($0, redact) }
            self.outputs = outputs.map { Self.tensor($0, redact) }
        }

        static func tensor(_ tensor: Tensor, _ redact: Set<String>) -> TensorLayout {
            TensorLayout(
                name: tensor.name, datatype: tensor.datatype, rank: tensor.shape.count, inner: tensor.shape.dropFirst(),
                redacted: redact.contains(tensor.name))
        }

        /// Whether a prediction has this layout (what a block's next prediction almost always has).
        func fits(_ inputs: [Tensor], _ outputs: [Tensor], featureNames: [String]?, redact: Set<String>) -> Bool {
            guard !json, inputs.count == self.inputs.count, outputs.count == self.outputs.count,
                featureNames == self.featureNames, redact == self.redact
            else { return false }
            // By position, the layouts read in place (a loop over pairs copied each layout, retaining its strings).
            for index in inputs.indices where !Self.same(inputs[index], self.inputs, index) { return false }
            for index in outputs.indices where !Self.same(outputs[index], self.outputs, index) { return false }
            return true
        }

        @inline(__always)
        static func same(_ tensor: Tensor, _ layouts: [TensorLayout], _ index: Int) -> Bool {
            guard tensor.datatype == layouts[index].datatype, tensor.shape.count == layouts[index].rank,
                tensor.name == layouts[index].name
            else { return false }
            let inner = layouts[index].inner
            var dimension = 1
            for expected in inner {
                if tensor.shape[dimension] != expected { return false }
                dimension += 1
            }
            return true
        }
    }

    // MARK: Packing (what a ``PredictionDraft`` finishes with)

    static func write(_ layout: Layout, into writer: inout ByteWriter) {
        writer.byte(layout.json ? 1 : 0)
        guard !layout.json else { return }
        if let names = layout.featureNames {
            writer.varint(UInt64(names.count) + 1)
            for name in names { writer.string(name) }
        } else {
            writer.varint(0)
        }
        let redact = layout.redact.sorted()
        writer.varint(UInt64(redact.count))
        for name in redact { writer.string(name) }
        for tensors in [layout.inputs, layout.outputs] {
            writer.varint(UInt64(tensors.count))
            for tensor in tensors {
                writer.string(tensor.name)
                writer.string(tensor.datatype.rawValue)
                writer.varint(UInt64(tensor.rank))
                for dimension in tensor.inner { writer.signed(Int64(dimension)) }
            }
        }
    }

    static func writeTensor(_ tensor: Tensor, redact: Set<String>, spreadNames: [String]?, into data: inout ByteWriter) {
        if let rows = tensor.shape.first { data.signed(Int64(rows)) }
        guard !redact.contains(tensor.name) else { return }
        let hidden = spreadNames.map { names in names.indices.filter { redact.contains(names[$0]) } } ?? []
        switch tensor.contents {
        case .raw(let bytes):
            guard !hidden.isEmpty, let width = spreadNames?.count, let size = tensor.datatype.byteSize else {
                data.bytes(bytes)
                return
            }
            var copy = bytes
            for row in 0..<(tensor.elementCount / width) {
                for column in hidden {
                    let start = (row * width + column) * size
                    for offset in start..<(start + size) { copy[offset] = 0 }
                }
            }
            data.bytes(copy)
        case .strings(let elements):
            let width = spreadNames?.count ?? 1
            for (index, element) in elements.enumerated() {
                if !hidden.isEmpty, hidden.contains(index % width) {
                    data.varint(0)
                } else {
                    data.varint(UInt64(element.count))
                    data.bytes(element)
                }
            }
        }
    }

    /// A block's plain bytes deflated, and sealed with a cipher.
    static func seal(_ plain: [UInt8], cipher: PayloadCipher?) throws(TernError) -> [UInt8] {
        var block = ByteWriter(capacity: plain.count / 2 + 16)
        block.byte(deflated)
        block.varint(UInt64(plain.count))
        block.bytes(try deflate(plain))
        guard let cipher else { return block.buffer }
        var sealed = ByteWriter(capacity: block.buffer.count + 64)
        sealed.byte(Self.sealed)
        sealed.string(cipher.currentID)
        sealed.bytes(try cipher.seal(bytes: block.buffer))
        return sealed.buffer
    }

    private static func deflate(_ plain: [UInt8]) throws(TernError) -> [UInt8] {
        var length = compressBound(uLong(plain.count))
        var out = [UInt8](repeating: 0, count: Int(length))
        let status = out.withUnsafeMutableBufferPointer { out in
            plain.withUnsafeBufferPointer { plain in compress2(out.baseAddress, &length, plain.baseAddress, uLong(plain.count), 1) }
        }
        guard status == Z_OK else { throw .internalError("cannot deflate a prediction log block (zlib \(status))") }
        out.removeLast(out.count - Int(length))
        return out
    }

    // MARK: Unpacking

    /// A block's records, in the order written; those `keeping` refuses (by their place in the block) are nil,
    /// and their JSON is not made.
    package static func unpack(
        _ block: [UInt8], model: String, version: Int, cipher: PayloadCipher?, keeping: (Int) -> Bool = { _ in true }
    ) throws(TernError) -> [PredictionRecord?] {
        try records(plain: try plainBytes(block, cipher: cipher), model: model, version: version, cipher: cipher, keeping: keeping)
    }

    /// The records of a block's plain bytes (``unpack(_:model:version:cipher:keeping:)``); `cipher` opens
    /// records moved in from before blocks that were sealed then.
    static func records(
        plain bytes: [UInt8], model: String, version: Int, cipher: PayloadCipher?, keeping: (Int) -> Bool = { _ in true }
    ) throws(TernError) -> [PredictionRecord?] {
        var plain = ByteReader(bytes)
        let count = Int(try plain.varint())
        let layoutCount = Int(try plain.varint())
        guard count <= capacity, layoutCount >= 1, layoutCount <= count + 1 else { throw .internalError("a prediction log block is damaged") }
        var layouts: [Layout] = []
        for _ in 0..<layoutCount { layouts.append(try readLayout(&plain)) }
        var times: [Int64] = []
        var previous: Int64 = 0
        for _ in 0..<count {
            previous += try plain.signed()
            times.append(previous)
        }
        var latencies: [Int64] = []
        for _ in 0..<count { latencies.append(try plain.signed()) }
        var ids: [String] = []
        for _ in 0..<count { ids.append(try plain.string()) }
        var protocols: [String] = []
        for _ in 0..<count { protocols.append(try plain.string()) }
        var callers: [String?] = []
        for _ in 0..<count { callers.append(try plain.optional()) }
        var traces: [String?] = []
        for _ in 0..<count { traces.append(try plain.optional()) }
        var chosen = [Int](repeating: 0, count: count)
        if layoutCount > 1 {
            for index in 0..<count {
                chosen[index] = Int(try plain.varint())
                guard chosen[index] < layoutCount else { throw .internalError("a prediction log block is damaged") }
            }
        }
        var records: [PredictionRecord?] = []
        records.reserveCapacity(count)
        for index in 0..<count {
            let layout = layouts[chosen[index]]
            guard keeping(index) else {
                // Read past its data.
                if layout.json {
                    _ = try plain.string()
                    _ = try plain.string()
                } else {
                    for spec in layout.inputs + layout.outputs { _ = try readTensor(spec, &plain) }
                }
                records.append(nil)
                continue
            }
            var record = PredictionRecord(
                time: times[index], requestID: ids[index], model: model, version: version, protocol: protocols[index],
                latencyMicroseconds: latencies[index], caller: callers[index], traceID: traces[index], inputs: "", outputs: "")
            if layout.json {
                record.inputs = try plain.string()
                record.outputs = try plain.string()
                record = try PayloadCipher.open(record, with: cipher)
            } else {
                let inputs = try layout.inputs.map { spec throws(TernError) in try readTensor(spec, &plain) }
                let outputs = try layout.outputs.map { spec throws(TernError) in try readTensor(spec, &plain) }
                record.inputs = PredictionRecordEncoder.rows(inputs, featureNames: layout.featureNames, redact: layout.redact)
                record.outputs = PredictionRecordEncoder.rows(outputs, redact: layout.redact)
            }
            records.append(record)
        }
        return records
    }

    /// A block's bytes opened (when sealed) and inflated.
    package static func plainBytes(_ block: [UInt8], cipher: PayloadCipher?) throws(TernError) -> [UInt8] {
        var reader = ByteReader(block)
        var format = try reader.byte()
        var body = block
        if format == sealed {
            let id = try reader.string()
            guard let cipher else {
                throw TernError(.unavailable, "the prediction log's records are encrypted: give the key file (--prediction-log-key)")
            }
            body = try cipher.open(bytes: Array(block[reader.position...]), keyID: id)
            reader = ByteReader(body)
            format = try reader.byte()
        }
        guard format == deflated else { throw .internalError("a prediction log block has an unknown format (\(format))") }
        let length = Int(try reader.varint())
        guard length <= 1 << 30 else { throw .internalError("a prediction log block is damaged") }
        return try inflate(Array(body[reader.position...]), length: length)
    }

    private static func readLayout(_ reader: inout ByteReader) throws(TernError) -> Layout {
        var layout = Layout(json: try reader.byte() == 1)
        guard !layout.json else { return layout }
        let names = Int(try reader.varint())
        if names > 0 {
            var list: [String] = []
            for _ in 0..<(names - 1) { list.append(try reader.string()) }
            layout.featureNames = list
        }
        for _ in 0..<(try reader.varint()) { layout.redact.insert(try reader.string()) }
        for side in 0..<2 {
            var tensors: [TensorLayout] = []
            for _ in 0..<(try reader.varint()) {
                let name = try reader.string()
                guard let datatype = DataType(rawValue: try reader.string()) else { throw .internalError("a prediction log block is damaged") }
                let rank = Int(try reader.varint())
                guard rank <= 16 else { throw .internalError("a prediction log block is damaged") }
                var inner: [Int] = []
                for _ in 0..<max(0, rank - 1) { inner.append(Int(try reader.signed())) }
                tensors.append(TensorLayout(name: name, datatype: datatype, rank: rank, inner: inner[...], redacted: layout.redact.contains(name)))
            }
            if side == 0 { layout.inputs = tensors } else { layout.outputs = tensors }
        }
        return layout
    }

    private static func readTensor(_ spec: TensorLayout, _ reader: inout ByteReader) throws(TernError) -> Tensor {
        var shape: [Int] = []
        if spec.rank > 0 { shape.append(Int(try reader.signed())) }
        shape += spec.inner
        var count = 1
        for dimension in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard dimension >= 0, !overflow else { throw .internalError("a prediction log block is damaged") }
            count = product
        }
        guard count <= reader.remaining * 8 + 1 << 20 else { throw .internalError("a prediction log block is damaged") }
        let contents: TensorContents
        if let size = spec.datatype.byteSize {
            contents = .raw(spec.redacted ? [UInt8](repeating: 0, count: count * size) : try reader.bytes(count * size))
        } else if spec.redacted {
            contents = .strings(Array(repeating: [], count: count))
        } else {
            var elements: [[UInt8]] = []
            elements.reserveCapacity(count)
            for _ in 0..<count { elements.append(try reader.bytes(Int(try reader.varint()))) }
            contents = .strings(elements)
        }
        return Tensor(unchecked: spec.name, datatype: spec.datatype, shape: shape, contents: contents)
    }

    private static func inflate(_ deflated: [UInt8], length: Int) throws(TernError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: length)
        var produced = uLong(length)
        let status = out.withUnsafeMutableBufferPointer { out in
            deflated.withUnsafeBufferPointer { input in uncompress(out.baseAddress, &produced, input.baseAddress, uLong(input.count)) }
        }
        guard status == Z_OK, Int(produced) == length else { throw .internalError("a prediction log block is damaged (zlib \(status))") }
        return out
    }
}

extension PredictionBlock {
    /// Bytes appended: varints (LEB128; signed ones zigzagged), strings as their length and UTF-8.
    struct ByteWriter {
        var buffer: [UInt8]

        init(capacity: Int) {
            buffer = []
            buffer.reserveCapacity(capacity)
        }

        mutating func byte(_ value: UInt8) { buffer.append(value) }

        mutating func bytes(_ value: [UInt8]) { buffer.append(contentsOf: value) }

        mutating func varint(_ value: UInt64) {
            var value = value
            while value >= 0x80 {
                buffer.append(UInt8(truncatingIfNeeded: value) | 0x80)
                value >>= 7
            }
            buffer.append(UInt8(value))
        }

        mutating func signed(_ value: Int64) { varint(UInt64(bitPattern: (value << 1) ^ (value >> 63))) }

        mutating func string(_ value: String) {
            var value = value
            value.withUTF8 { utf8 in
                varint(UInt64(utf8.count))
                buffer.append(contentsOf: utf8)
            }
        }

        /// nil as 0, else the length plus one and the bytes.
        mutating func optional(_ value: String?) {
            guard var value else { return varint(0) }
            value.withUTF8 { utf8 in
                varint(UInt64(utf8.count) + 1)
                buffer.append(contentsOf: utf8)
            }
        }
    }

}

/// Reads what ``PredictionBlock/ByteWriter`` wrote; running past the end is a damaged block.
struct ByteReader {
    let buffer: [UInt8]
    var position = 0

    init(_ buffer: [UInt8]) { self.buffer = buffer }

    var remaining: Int { buffer.count - position }

    mutating func byte() throws(TernError) -> UInt8 {
        guard position < buffer.count else { throw .internalError("a prediction log block is damaged (short)") }
        position += 1
        return buffer[position - 1]
    }

    mutating func varint() throws(TernError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try byte()
            guard shift < 64 else { throw .internalError("a prediction log block is damaged (varint)") }
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
    }

    mutating func signed() throws(TernError) -> Int64 {
        let raw = try varint()
        return Int64(bitPattern: raw >> 1) ^ -Int64(bitPattern: raw & 1)
    }

    mutating func bytes(_ count: Int) throws(TernError) -> [UInt8] {
        guard count >= 0, count <= remaining else { throw .internalError("a prediction log block is damaged (short)") }
        position += count
        return Array(buffer[(position - count)..<position])
    }

    mutating func string() throws(TernError) -> String {
        String(decoding: try bytes(Int(clamping: try varint())), as: UTF8.self)
    }

    /// Copies a string (or an optional one, ``PredictionBlock/ByteWriter/optional(_:)``) as it is, and returns
    /// where its bytes are.
    mutating func copyString(into writer: inout PredictionBlock.ByteWriter, optional: Bool = false) throws(TernError) -> Range<Int> {
        let stored = try varint()
        writer.varint(stored)
        let length = Int(clamping: optional && stored > 0 ? stored - 1 : stored)
        guard length <= remaining else { throw .internalError("a prediction log block is damaged (short)") }
        writer.buffer.append(contentsOf: buffer[position..<(position + length)])
        position += length
        return (position - length)..<position
    }

    /// Moves past a string (or an optional one); at the end of the buffer when it runs past it.
    mutating func skipString(optional: Bool = false) {
        guard let stored = try? varint() else { return }
        let length = Int(clamping: optional && stored > 0 ? stored - 1 : stored)
        position += min(length, remaining)
    }

    mutating func optional() throws(TernError) -> String? {
        let length = try varint()
        guard length > 0 else { return nil }
        return String(decoding: try bytes(Int(clamping: length - 1)), as: UTF8.self)
    }
}
