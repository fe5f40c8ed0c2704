import NIOCore
import TernCore

/// Translates the row- and table-shaped request formats (KServe v1 / TF Serving `instances` and `inputs`,
/// MLflow `dataframe_split` and `dataframe_records`, SageMaker CSV, Vertex AI `instances`) into an
/// ``InferenceRequest`` typed by the model's signature, and outputs back into per-row `predictions`.
///
/// Rows of a model with one 2-D input may be objects keyed by feature name (`featureNames`, from the
/// model's `feature_names` metadata or config), in any order; a model with several inputs takes objects keyed
/// by input name. Missing or unexpected keys are errors that name them.
public struct TabularCodec {
    public let signature: ModelSignature
    public let featureNames: [String]?

    public init(signature: ModelSignature, featureNames: [String]?) {
        self.signature = signature
        let single = signature.inputs.count == 1 && signature.inputs[0].shape.count == 2
        self.featureNames = single ? featureNames : nil
    }

    // MARK: - Requests

    /// Row format: one element per row.
    public func request(instances rows: [JSONValue]) throws(TernError) -> InferenceRequest {
        guard !rows.isEmpty else { throw .invalidArgument("'instances' is empty; send at least one row") }
        var perInput = [[JSONValue]](repeating: [], count: signature.inputs.count)
        for (index, row) in rows.enumerated() {
            for (position, value) in try split(row, index: index).enumerated() { perInput[position].append(value) }
        }
        var inputs: [Tensor] = []
        for (spec, values) in zip(signature.inputs, perInput) { inputs.append(try tensor(spec, rows: values)) }
        return InferenceRequest(inputs: inputs)
    }

    /// Columnar format: the whole batch of the one input, or an object of batches keyed by input name.
    public func request(columnar value: JSONValue) throws(TernError) -> InferenceRequest {
        if case .object = value {
            try checkKeys(value.keys, expected: signature.inputs.map(\.name), context: "'inputs'", what: "input")
            var inputs: [Tensor] = []
            for spec in signature.inputs { inputs.append(try tensor(spec, batch: value[spec.name]!)) }
            return InferenceRequest(inputs: inputs)
        }
        guard signature.inputs.count == 1 else {
            throw .invalidArgument("the model has several inputs (\(names)); give 'inputs' as an object keyed by them")
        }
        return InferenceRequest(inputs: [try tensor(signature.inputs[0], batch: value)])
    }

    /// A table given as column names and rows of values (MLflow `dataframe_split`, CSV with a header).
    public func request(columns: [String], data: [JSONValue]) throws(TernError) -> InferenceRequest {
        let rows = try data.enumerated().map { (index, row) throws(TernError) -> JSONValue in
            guard case .array(let values) = row, values.count == columns.count else {
                throw .invalidArgument("row \(index) of 'data' must be a list of \(columns.count) values, one per column")
            }
            return .object(Array(zip(columns, values)))
        }
        if featureNames == nil, signature.inputs.count == 1 {
            // No names to match: the columns are the features, in the order given.
            return try request(instances: data)
        }
        return try request(instances: rows)
    }

    private var names: String { signature.inputs.map(\.name).joined(separator: ", ") }

    /// One row's value for each input.
    private func split(_ row: JSONValue, index: Int) throws(TernError) -> [JSONValue] {
        if signature.inputs.count == 1 {
            let spec = signature.inputs[0]
            guard case .object = row else { return [row] }
            if row.keys == [spec.name] { return [row[spec.name]!] }
            guard let featureNames else {
                throw .invalidArgument(
                    "instance \(index) is an object with keys \(row.keys.joined(separator: ", ")), but the "
                        + "model's input '\(spec.name)' has no feature names; send the row as a list, or set feature_names in "
                        + "the model's config.yaml")
            }
            try checkKeys(row.keys, expected: featureNames, context: "instance \(index)", what: "feature")
            return [.array(featureNames.map { row[$0]! })]
        }
        guard case .object = row else {
            throw .invalidArgument(
                "instance \(index): the model has several inputs (\(names)); give each row as an "
                    + "object keyed by them")
        }
        try checkKeys(row.keys, expected: signature.inputs.map(\.name), context: "instance \(index)", what: "input")
        return signature.inputs.map { row[$0.name]! }
    }

    private func checkKeys(_ keys: [String], expected: [String], context: String, what: String) throws(TernError) {
        let given = Set(keys)
        let wanted = Set(expected)
        let missing = expected.filter { !given.contains($0) }
        let extra = keys.filter { !wanted.contains($0) }
        guard missing.isEmpty && extra.isEmpty && given.count == keys.count else {
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing \(what)s: " + missing.map { "'\($0)'" }.joined(separator: ", ")) }
            if !extra.isEmpty { parts.append("unexpected keys: " + extra.map { "'\($0)'" }.joined(separator: ", ")) }
            if parts.isEmpty { parts.append("a key is repeated") }
            throw .invalidArgument(
                "\(context): " + parts.joined(separator: "; ") + " (expected: "
                    + expected.joined(separator: ", ") + ")")
        }
    }

    /// A tensor from one value per row.
    private func tensor(_ spec: TensorSpec, rows: [JSONValue]) throws(TernError) -> Tensor {
        // A [-1, 1] input takes a scalar per row (a column value).
        let wrapped = rows.map { row -> JSONValue in
            if spec.shape.count == 2, spec.shape[1] == 1 || spec.shape[1] == -1, !row.isArray { return .array([row]) }
            return row
        }
        return try tensor(spec, batch: .array(wrapped))
    }

    /// A tensor from a nested array holding the whole batch.
    private func tensor(_ spec: TensorSpec, batch: JSONValue) throws(TernError) -> Tensor {
        var shape: [Int] = []
        var probe = batch
        while case .array(let elements) = probe {
            shape.append(elements.count)
            guard let first = elements.first else { break }
            probe = first
        }
        var leaves: [JSONValue] = []
        try flatten(batch, shape: shape[...], into: &leaves, name: spec.name)
        // One row given for a model that takes [batch, ...]: add the batch dimension.
        if shape.count + 1 == spec.shape.count { shape.insert(1, at: 0) }
        return try Tensor(
            name: spec.name, datatype: spec.datatype, shape: shape,
            contents: try Self.contents(leaves, datatype: spec.datatype, name: spec.name))
    }

    private func flatten(_ value: JSONValue, shape: ArraySlice<Int>, into leaves: inout [JSONValue], name: String)
        throws(TernError)
    {
        if case .array(let elements) = value {
            guard let count = shape.first, elements.count == count else {
                throw .invalidArgument("input '\(name)': rows have different lengths or nesting")
            }
            for element in elements { try flatten(element, shape: shape.dropFirst(), into: &leaves, name: name) }
        } else {
            guard shape.isEmpty else { throw .invalidArgument("input '\(name)': rows have different lengths or nesting") }
            leaves.append(value)
        }
    }

    /// Converts leaf values to a datatype; numbers in strings (CSV cells) are accepted for numeric types.
    public static func contents(_ leaves: [JSONValue], datatype: DataType, name: String) throws(TernError) -> TensorContents {
        func fail(_ index: Int, _ value: JSONValue) -> TernError {
            .invalidArgument("input '\(name)': value \(index) (\(value.text)) is not a valid \(datatype)")
        }
        func number(_ index: Int, _ value: JSONValue) throws(TernError) -> (Double, Int64?) {
            switch value {
            case .number(let double, let exact): return (double, exact)
            case .bool(let flag): return (flag ? 1 : 0, flag ? 1 : 0)
            case .string(let text):
                if let exact = Int64(text) { return (Double(exact), exact) }
                if let double = Double(text) { return (double, nil) }
                throw fail(index, value)
            default: throw fail(index, value)
            }
        }
        func integers<T: FixedWidthInteger & BitwiseCopyable>(_ type: T.Type) throws(TernError) -> TensorContents {
            var values: [T] = []
            values.reserveCapacity(leaves.count)
            for (index, leaf) in leaves.enumerated() {
                let (double, exact) = try number(index, leaf)
                if let exact, let value = T(exactly: exact) {
                    values.append(value)
                } else if exact == nil, double == double.rounded(), let value = T(exactly: double) {
                    values.append(value)
                } else {
                    throw fail(index, leaf)
                }
            }
            return .raw(values.withUnsafeBytes { Array($0) })
        }
        func floats<T: BinaryFloatingPoint & BitwiseCopyable>(_ type: T.Type) throws(TernError) -> TensorContents {
            var values: [T] = []
            values.reserveCapacity(leaves.count)
            for (index, leaf) in leaves.enumerated() {
                let double = try number(index, leaf).0
                let value = T(double)
                // A finite number too large for the type is refused, never silently made infinite.
                guard value.isFinite || !double.isFinite else { throw fail(index, leaf) }
                values.append(value)
            }
            return .raw(values.withUnsafeBytes { Array($0) })
        }
        switch datatype {
        case .bool:
            var values: [Bool] = []
            for (index, leaf) in leaves.enumerated() {
                switch leaf {
                case .bool(let flag): values.append(flag)
                case .number(_, let exact?) where exact == 0 || exact == 1: values.append(exact == 1)
                case .string(let text) where ["true", "false"].contains(text.lowercased()): values.append(text.lowercased() == "true")
                default: throw fail(index, leaf)
                }
            }
            return .raw(values.withUnsafeBytes { Array($0) })
        case .uint8: return try integers(UInt8.self)
        case .uint16: return try integers(UInt16.self)
        case .uint32: return try integers(UInt32.self)
        case .uint64: return try integers(UInt64.self)
        case .int8: return try integers(Int8.self)
        case .int16: return try integers(Int16.self)
        case .int32: return try integers(Int32.self)
        case .int64: return try integers(Int64.self)
        case .fp16: return try floats(Float16.self)
        case .fp32: return try floats(Float.self)
        case .fp64: return try floats(Double.self)
        case .bytes:
            var values: [[UInt8]] = []
            for (index, leaf) in leaves.enumerated() {
                guard case .string(let text) = leaf else { throw fail(index, leaf) }
                values.append(Array(text.utf8))
            }
            return .strings(values)
        }
    }

    // MARK: - Responses

    /// `[row, row, ...]`: each row is the output's row, or with several outputs an object keyed by output name.
    /// Outputs that do not share a batch dimension come back whole, keyed by name.
    public static func writePredictions(_ outputs: [Tensor], into writer: inout JSONWriter) {
        let rows = outputs.first?.shape.first
        guard let rows, outputs.allSatisfy({ $0.shape.first == rows }) else {
            writer.byte(UInt8(ascii: "{"))
            for (index, output) in outputs.enumerated() {
                if index > 0 { writer.byte(UInt8(ascii: ",")) }
                writer.string(output.name)
                writer.byte(UInt8(ascii: ":"))
                writeNested(output, offset: 0, shape: output.shape[...], into: &writer)
            }
            writer.byte(UInt8(ascii: "}"))
            return
        }
        writer.byte(UInt8(ascii: "["))
        for row in 0..<rows {
            if row > 0 { writer.byte(UInt8(ascii: ",")) }
            if outputs.count == 1 {
                writeRow(outputs[0], row: row, into: &writer)
            } else {
                writer.byte(UInt8(ascii: "{"))
                for (index, output) in outputs.enumerated() {
                    if index > 0 { writer.byte(UInt8(ascii: ",")) }
                    writer.string(output.name)
                    writer.byte(UInt8(ascii: ":"))
                    writeRow(output, row: row, into: &writer)
                }
                writer.byte(UInt8(ascii: "}"))
            }
        }
        writer.byte(UInt8(ascii: "]"))
    }

    public static func writeRow(_ tensor: Tensor, row: Int, into writer: inout JSONWriter) {
        let inner = tensor.shape.dropFirst()
        let perRow = inner.reduce(1, *)
        writeNested(tensor, offset: row * perRow, shape: inner, into: &writer)
    }

    public static func writeNested(_ tensor: Tensor, offset: Int, shape: ArraySlice<Int>, into writer: inout JSONWriter) {
        guard let count = shape.first else {
            writer.element(tensor, at: offset)
            return
        }
        let stride = shape.dropFirst().reduce(1, *)
        writer.byte(UInt8(ascii: "["))
        for index in 0..<count {
            if index > 0 { writer.byte(UInt8(ascii: ",")) }
            writeNested(tensor, offset: offset + index * stride, shape: shape.dropFirst(), into: &writer)
        }
        writer.byte(UInt8(ascii: "]"))
    }

    /// One line per row, values comma-separated (SageMaker's text/csv answer).
    public static func csv(_ outputs: [Tensor]) -> String {
        var writer = JSONWriter()
        guard let rows = outputs.first?.shape.first, outputs.allSatisfy({ $0.shape.first == rows }) else { return "" }
        for row in 0..<rows {
            var first = true
            for output in outputs {
                let perRow = output.shape.dropFirst().reduce(1, *)
                for index in 0..<perRow {
                    if !first { writer.byte(UInt8(ascii: ",")) }
                    first = false
                    writer.element(output, at: row * perRow + index, quoteStrings: false)
                }
            }
            writer.byte(UInt8(ascii: "\n"))
        }
        return String(buffer: writer.buffer)
    }
}

extension JSONValue {
    public var isArray: Bool {
        if case .array = self { return true }
        return false
    }

    /// A short rendering for error messages.
    public var text: String {
        switch self {
        case .null: "null"
        case .bool(let flag): String(flag)
        case .number(let value, let exact): exact.map(String.init) ?? String(value)
        case .string(let text): "\"\(text.prefix(40))\""
        case .array: "a list"
        case .object: "an object"
        }
    }
}

extension JSONWriter {
    /// One element of a tensor.
    public mutating func element(_ tensor: Tensor, at index: Int, quoteStrings: Bool = true) {
        switch tensor.contents {
        case .strings(let elements):
            if quoteStrings { string(bytes: elements[index]) } else { buffer.writeBytes(elements[index]) }
        case .raw(let bytes):
            bytes.withUnsafeBytes { raw in
                func load<T: BitwiseCopyable>(_ type: T.Type) -> T {
                    raw.loadUnaligned(fromByteOffset: index * MemoryLayout<T>.stride, as: T.self)
                }
                switch tensor.datatype {
                case .bool: bool(load(Bool.self))
                case .uint8: integer(load(UInt8.self))
                case .uint16: integer(load(UInt16.self))
                case .uint32: integer(load(UInt32.self))
                case .uint64: integer(load(UInt64.self))
                case .int8: integer(load(Int8.self))
                case .int16: integer(load(Int16.self))
                case .int32: integer(load(Int32.self))
                case .int64: integer(load(Int64.self))
                case .fp16: float(load(Float16.self))
                case .fp32: float(load(Float.self))
                case .fp64: float(load(Double.self))
                case .bytes: break
                }
            }
        }
    }
}
