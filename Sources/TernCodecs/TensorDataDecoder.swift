import TernCore

/// Decodes a V2 JSON `data` value (flat or nested arrays) straight into a tensor's typed buffer.
public enum TensorDataDecoder {
    /// Decodes the `data` value in `range` (which must hold nothing else).
    public static func decode(
        _ bytes: UnsafeRawBufferPointer, range: Range<Int>, datatype: DataType, shape: [Int], count: Int, name: String
    ) throws(TernError) -> TensorContents {
        var reader = JSONReader(bytes, range: range)
        let contents = try decode(&reader, datatype: datatype, shape: shape, count: count, name: name)
        try reader.expectEnd()
        return contents
    }

    /// Decodes the `data` value at the reader's position and moves past it: the single pass over a
    /// request's numbers when its `datatype` and `shape` came before its `data`.
    /// `data` is flat (every element in one array) or nested exactly as `shape` says (ragged rows whose
    /// element count happens to match are refused).
    public static func decode(
        _ reader: inout JSONReader, datatype: DataType, shape: [Int], count: Int, name: String
    ) throws(TernError) -> TensorContents {
        var nesting = Nesting(shape: shape, name: name)
        // Each element takes at least one byte of JSON: a larger count cannot be satisfied, and checking
        // first keeps a huge declared shape from allocating anything.
        guard count <= reader.end - reader.index else {
            var found = 0
            try leaves(&reader, depth: 0, nesting: &nesting) { (r: inout JSONReader) throws(TernError) in
                try r.skipValue()
                found += 1
            }
            throw tooFew(name, count, found)
        }
        switch datatype {
        case .bool:
            return .raw(
                try fixed(&reader, count: count, nesting: &nesting) { (r: inout JSONReader) throws(TernError) -> Bool in
                    try r.readBool()
                })
        case .uint8:
            return .raw(
                try fixed(&reader, count: count, nesting: &nesting) { (r: inout JSONReader) throws(TernError) -> UInt8 in
                    try integer(&r, datatype: datatype, name: name)
                })
        case .uint16:
            return .raw(
                try fixed(&reader, count: count, nesting: &nesting) { (r: inout JSONReader) throws(TernError) -> UInt16 in
                    try integer(&r, datatype: datatype, name: name)
                })
        case .uint32:
            return .raw(
                try fixed(&reader, count: count, nesting: &nesting) { (r: inout JSONReader) throws(TernError) -> UInt32 in
                    try integer(&r, datatype: datatype, name: name)
                })
        case .uint64:
            return .raw(
                try fixed(&reader, count: count, nesting: &nesting) { (r: inout JSONReader) throws(TernError) -> UInt64 in
                    try integer(&r, datatype: datatype, name: name)
                })
        case .int8:
            return .raw(
                try fixed(&reader, count: count, nesting: &nesting) { (r: inout JSONReader) throws(TernError) -> Int8 in
                    try integer(&r, datatype: datatype, name: name)
                })
        case .int16:
            return .raw(
                try fixed(&reader, count: count, nesting: &nesting) { (r: inout JSONReader) throws(TernError) -> Int16 in
                    try integer(&r, datatype: datatype, name: name)
                })
        case .int32:
            return .raw(
                try fixed(&reader, count: count, nesting: &nesting) { (r: inout JSONReader) throws(TernError) -> Int32 in
                    try integer(&r, datatype: datatype, name: name)
                })
        case .int64:
            return .raw(
                try fixed(&reader, count: count, nesting: &nesting) { (r: inout JSONReader) throws(TernError) -> Int64 in
                    try integer(&r, datatype: datatype, name: name)
                })
        case .fp16:
            return .raw(
                try fixed(&reader, count: count, nesting: &nesting) { (r: inout JSONReader) throws(TernError) -> Float16 in
                    try narrowed(try number(&r, name: name, forFloat32: true), as: Float16.self, name: name)
                })
        case .fp32:
            return .raw(
                try fixed(&reader, count: count, nesting: &nesting) { (r: inout JSONReader) throws(TernError) -> Float in
                    try narrowed(try number(&r, name: name, forFloat32: true), as: Float.self, name: name)
                })
        case .fp64:
            return .raw(
                try fixed(&reader, count: count, nesting: &nesting) { (r: inout JSONReader) throws(TernError) -> Double in
                    try number(&r, name: name)
                })
        case .bytes:
            var elements: [[UInt8]] = []
            elements.reserveCapacity(count)
            try leaves(&reader, depth: 0, nesting: &nesting) { (r: inout JSONReader) throws(TernError) in
                guard elements.count < count else { throw tooMany(name, count) }
                guard r.peek() == UInt8(ascii: "\"") else {
                    throw .invalidArgument("input '\(name)': BYTES data must be strings")
                }
                elements.append(try r.readStringBytes())
            }
            guard elements.count == count else { throw tooFew(name, count, elements.count) }
            return .strings(elements)
        }
    }

    /// How a `data` value nests, learnt from its first element: at depth 1 (flat), or at the shape's depth
    /// with every array as long as the shape says.
    public struct Nesting {
        let shape: [Int]
        let name: String
        var leafDepth: Int?

        mutating func leaf(at depth: Int) throws(TernError) {
            guard let leafDepth else {
                guard depth <= 1 || depth == shape.count else {
                    throw .invalidArgument(
                        "input '\(name)': data nested \(depth) deep does not follow its shape \(shape); "
                            + "send it flat or nested as the shape says")
                }
                leafDepth = depth
                return
            }
            guard depth == leafDepth else {
                throw .invalidArgument(
                    "input '\(name)': data mixes values and arrays at one level; send it flat or nested as its shape \(shape) says")
            }
        }

        func closed(array depth: Int, holding elements: Int) throws(TernError) {
            guard let leafDepth, leafDepth > 1, depth < shape.count, elements != shape[depth] else { return }
            throw .invalidArgument(
                "input '\(name)': nested data has an array of \(elements) where its shape \(shape) "
                    + "has \(shape[depth]) (ragged rows?)")
        }
    }

    /// Visits every non-array value of a (possibly nested) array, in row-major order.
    private static func leaves(
        _ reader: inout JSONReader, depth: Int, nesting: inout Nesting, _ visit: (inout JSONReader) throws(TernError) -> Void
    ) throws(TernError) {
        guard depth < 32 else { throw .invalidArgument("input '\(nesting.name)': data is nested too deeply") }
        if reader.peek() == UInt8(ascii: "[") {
            var elements = 0
            try reader.readArray { (r: inout JSONReader) throws(TernError) in
                elements += 1
                try leaves(&r, depth: depth + 1, nesting: &nesting, visit)
            }
            try nesting.closed(array: depth, holding: elements)
        } else {
            try nesting.leaf(at: depth)
            try visit(&reader)
        }
    }

    /// Reads `count` fixed-size elements into one contiguous buffer, in a single pass.
    private static func fixed<T: BitwiseCopyable>(
        _ reader: inout JSONReader, count: Int, nesting: inout Nesting, _ read: (inout JSONReader) throws(TernError) -> T
    ) throws(TernError) -> [UInt8] {
        let stride = MemoryLayout<T>.stride
        let name = nesting.name
        var failure: TernError?
        let bytes = [UInt8](unsafeUninitializedCapacity: count * stride) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            var written = 0
            do throws(TernError) {
                try leaves(&reader, depth: 0, nesting: &nesting) { (r: inout JSONReader) throws(TernError) in
                    guard written < count else { throw tooMany(name, count) }
                    raw.storeBytes(of: try read(&r), toByteOffset: written * stride, as: T.self)
                    written += 1
                }
                guard written == count else { throw tooFew(name, count, written) }
                initialized = count * stride
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return bytes
    }

    private static func integer<T: FixedWidthInteger>(_ reader: inout JSONReader, datatype: DataType, name: String)
        throws(TernError) -> T
    {
        let (magnitude, negative) = try reader.readInteger()
        if negative {
            guard T.isSigned, magnitude <= UInt64(T.max) + 1 else {
                throw .invalidArgument("input '\(name)': value -\(magnitude) is out of range for \(datatype)")
            }
            return T(truncatingIfNeeded: 0 &- magnitude)
        }
        guard magnitude <= UInt64(T.max) else {
            throw .invalidArgument("input '\(name)': value \(magnitude) is out of range for \(datatype)")
        }
        return T(truncatingIfNeeded: magnitude)
    }

    private static func number(_ reader: inout JSONReader, name: String, forFloat32: Bool = false) throws(TernError) -> Double {
        do {
            return try reader.readDouble(forFloat32: forFloat32)
        } catch {
            throw .invalidArgument("input '\(name)': \(error.message)")
        }
    }

    /// A number in a narrower float type; a finite number too large for it is refused (never silently infinite).
    @inline(__always)
    private static func narrowed<T: BinaryFloatingPoint>(_ value: Double, as: T.Type, name: String) throws(TernError) -> T {
        let narrow = T(value)
        guard narrow.isFinite || !value.isFinite else {
            throw .invalidArgument("input '\(name)': \(value) is out of range for \(T.self == Float.self ? "FP32" : "FP16")")
        }
        return narrow
    }

    private static func tooMany(_ name: String, _ count: Int) -> TernError {
        .invalidArgument("input '\(name)': 'data' holds more than the \(count) elements its shape needs")
    }

    private static func tooFew(_ name: String, _ count: Int, _ found: Int) -> TernError {
        .invalidArgument("input '\(name)': its shape needs \(count) elements but 'data' holds \(found)")
    }
}
