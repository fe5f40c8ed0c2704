import Foundation
import TernCore

/// One value of a source column: a number, or a string (a categorical).
package enum Cell: Sendable, Hashable {
    case number(Double)
    case text(String)
}

/// A model's inputs as the columns a person names, which is what an explanation attributes to: a `[rows, 1]`
/// input is one column under its own name (skl2onnx's DataFrame recipe: one input per column, strings for
/// categoricals); a `[rows, k]` input is k columns, named by the model's feature names when they count k,
/// else `input[j]`. Rows of cells go to the model's tensors and back.
package struct SourceColumns: Sendable {
    package struct Column: Sendable {
        package var name: String
        package var input: Int
        package var offset: Int
        package var isText: Bool
    }

    package let inputs: [TensorSpec]
    package let widths: [Int]
    package let columns: [Column]

    package var names: [String] { columns.map(\.name) }
    package var count: Int { columns.count }

    /// Whether this is the plain case every exact explainer reads directly: one numeric `[rows, k]` input.
    package var isOneMatrix: Bool { inputs.count == 1 && !columns.contains { $0.isText } }

    package init(inputs: [TensorSpec], featureNames: [String]?) throws(TernError) {
        var widths: [Int] = [], columns: [Column] = []
        for (i, spec) in inputs.enumerated() {
            let isText = spec.datatype == .bytes
            guard spec.datatype != .fp16 else {
                throw .invalidArgument("input '\(spec.name)' is FP16, which explanations do not read")
            }
            var width: Int
            switch spec.shape.count {
            case 1: width = 1
            case 2: width = spec.shape[1]
            default:
                throw .invalidArgument(
                    "explanations read tabular inputs ([rows, columns]); '\(spec.name)' has shape \(spec.shape)")
            }
            if width < 0, inputs.count == 1, let featureNames { width = featureNames.count }
            guard width > 0 else {
                throw .invalidArgument(
                    "input '\(spec.name)' does not say how many columns it has (\(spec.shape)); "
                        + "name the features (feature_names) so explanations know them")
            }
            widths.append(width)
            let named = inputs.count == 1 && featureNames?.count == width ? featureNames : nil
            for j in 0..<width {
                let name = width == 1 && inputs.count > 1 ? spec.name : named?[j] ?? (width == 1 ? spec.name : "\(spec.name)[\(j)]")
                columns.append(Column(name: name, input: i, offset: j, isText: isText))
            }
        }
        self.inputs = inputs
        self.widths = widths
        self.columns = columns
    }

    /// Rows of a table (CSV cells): by column name when the table names every column (other columns, such
    /// as a label, are left out), else in order when it has exactly as many.
    package func rows(columns names: [String], values: [[String]], what: String) throws(TernError) -> [[Cell]] {
        let order: [Int]
        if Set(self.names).isSubset(of: names) {
            order = self.names.map { names.firstIndex(of: $0)! }
        } else if names.count == count {
            order = Array(0..<count)
        } else {
            let missing = self.names.filter { !names.contains($0) }
            throw .invalidArgument(
                "\(what) has no column\(missing.count == 1 ? "" : "s") \(Echo.clip(missing.joined(separator: ", "))) "
                    + "(the model takes \(count) columns: \(Echo.clip(self.names.joined(separator: ", "))))")
        }
        var rows: [[Cell]] = []
        rows.reserveCapacity(values.count)
        for (r, row) in values.enumerated() {
            var cells: [Cell] = []
            cells.reserveCapacity(count)
            for (c, index) in order.enumerated() {
                guard index < row.count else { throw .invalidArgument("\(what) row \(r + 1) has \(row.count) values") }
                let text = row[index]
                if columns[c].isText {
                    cells.append(.text(text))
                    continue
                }
                let trimmed = text.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty || trimmed.lowercased() == "nan" {
                    cells.append(.number(.nan))
                } else if let value = Double(trimmed), value.isFinite {
                    cells.append(.number(value))
                } else {
                    throw .invalidArgument("\(what) row \(r + 1), column '\(Echo.clip(columns[c].name))': '\(Echo.clip(text))' is not a number")
                }
            }
            rows.append(cells)
        }
        return rows
    }

    /// Rows of a request's tensors (every input of the model, by name).
    package func rows(tensors: [Tensor]) throws(TernError) -> [[Cell]] {
        var perInput: [[Cell]] = []
        var count: Int?
        for (i, spec) in inputs.enumerated() {
            guard let tensor = tensors.first(where: { $0.name == spec.name }) else {
                throw .invalidArgument(
                    "an explanation needs every input of the model: '\(spec.name)' is missing (inputs: "
                        + "\(Echo.clip(inputs.map(\.name).joined(separator: ", "))))")
            }
            let width = widths[i]
            guard let rows = tensor.shape.first, tensor.elementCount == rows * width, tensor.shape.count <= 2 else {
                throw .invalidArgument("input '\(spec.name)' has shape \(tensor.shape); explanations take [rows, \(width)]")
            }
            if let count, count != rows {
                throw .invalidArgument("input '\(spec.name)' has \(rows) rows, the others \(count)")
            }
            count = rows
            perInput.append(try Self.cells(tensor))
        }
        guard let count else { return [] }
        return (0..<count).map { r in columns.map { column in perInput[column.input][r * widths[column.input] + column.offset] } }
    }

    /// The model's input tensors for `rows`.
    package func tensors(_ rows: [[Cell]]) throws(TernError) -> [Tensor] {
        try inputs.indices.map { (i: Int) throws(TernError) -> Tensor in
            let spec = inputs[i]
            let mine = columns.indices.filter { columns[$0].input == i }
            let shape = spec.shape.count == 1 ? [rows.count] : [rows.count, widths[i]]
            if spec.datatype == .bytes {
                var texts: [String] = []
                texts.reserveCapacity(rows.count * mine.count)
                for row in rows {
                    for c in mine {
                        switch row[c] {
                        case .text(let text): texts.append(text)
                        case .number(let value): texts.append(value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : String(value))
                        }
                    }
                }
                return try Tensor(name: spec.name, shape: shape, strings: texts)
            }
            var numbers: [Double] = []
            numbers.reserveCapacity(rows.count * mine.count)
            for row in rows {
                for c in mine {
                    switch row[c] {
                    case .number(let value): numbers.append(value)
                    case .text(let text):
                        guard let value = Double(text) else {
                            throw .invalidArgument("column '\(columns[c].name)' takes numbers; '\(Echo.clip(text))' is not one")
                        }
                        numbers.append(value)
                    }
                }
            }
            return try Self.tensor(spec, numbers, shape: shape)
        }
    }

    static func tensor(_ spec: TensorSpec, _ v: [Double], shape: [Int]) throws(TernError) -> Tensor {
        func whole<T: TensorElement & FixedWidthInteger>(_ type: T.Type) throws(TernError) -> Tensor {
            var values: [T] = []
            values.reserveCapacity(v.count)
            for value in v {
                guard let exact = T(exactly: value) else {
                    throw .invalidArgument("input '\(spec.name)' takes \(spec.datatype.rawValue); \(value) is not one")
                }
                values.append(exact)
            }
            return try Tensor(name: spec.name, shape: shape, values: values)
        }
        switch spec.datatype {
        case .fp32: return try Tensor(name: spec.name, shape: shape, values: v.map { Float($0) })
        case .fp64: return try Tensor(name: spec.name, shape: shape, values: v)
        case .int64: return try whole(Int64.self)
        case .int32: return try whole(Int32.self)
        case .int16: return try whole(Int16.self)
        case .int8: return try whole(Int8.self)
        case .uint64: return try whole(UInt64.self)
        case .uint32: return try whole(UInt32.self)
        case .uint16: return try whole(UInt16.self)
        case .uint8: return try whole(UInt8.self)
        case .bool: return try Tensor(name: spec.name, shape: shape, values: v.map { $0 != 0 })
        case .fp16, .bytes: throw .invalidArgument("input '\(spec.name)' is \(spec.datatype.rawValue), which explanations do not read")
        }
    }

    static func cells(_ tensor: Tensor) throws(TernError) -> [Cell] {
        if let strings = tensor.strings { return strings.map(Cell.text) }
        let column = Tensor(unchecked: tensor.name, datatype: tensor.datatype, shape: [tensor.elementCount, 1], contents: tensor.contents)
        let numbers = try FeatureRows.rows(tensor: column, width: 1).map { $0[0] }
        return numbers.map(Cell.number)
    }
}

/// Cells as numbers for KernelSHAP, which only ever copies a value from the explained row or a background
/// row: a number is itself; a string, its index in its column's table of strings.
package struct CellCodes: Sendable {
    private var texts: [[String]]
    private var codes: [[String: Int]]

    package init(columns: Int) {
        texts = Array(repeating: [], count: columns)
        codes = Array(repeating: [:], count: columns)
    }

    package mutating func encode(_ rows: [[Cell]]) -> [[Double]] {
        rows.map { row in
            row.enumerated().map { c, cell in
                switch cell {
                case .number(let value): return value
                case .text(let text):
                    if let code = codes[c][text] { return Double(code) }
                    codes[c][text] = texts[c].count
                    texts[c].append(text)
                    return Double(texts[c].count - 1)
                }
            }
        }
    }

    package func decode(_ values: ArraySlice<Double>, columns: SourceColumns) -> [Cell] {
        zip(values, columns.columns).enumerated().map { c, pair in
            let (value, column) = pair
            return column.isText ? .text(texts[c][Int(value)]) : .number(value)
        }
    }
}
