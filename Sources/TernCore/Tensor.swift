/// The contents of a tensor: contiguous little-endian bytes for fixed-size types, or one byte string per
/// element for ``DataType/bytes``.
public enum TensorContents: Sendable, Equatable {
    case raw([UInt8])
    case strings([[UInt8]])
}

/// A named tensor: datatype, shape and contents.
///
/// The invariant `elementCount == product(shape)` is checked by ``init(name:datatype:shape:contents:)``.
public struct Tensor: Sendable, Equatable {
    public var name: String
    public var datatype: DataType
    public var shape: [Int]
    public var contents: TensorContents

    /// Creates a tensor, checking that the contents hold exactly `product(shape)` elements.
    ///
    /// - Throws: ``TernError`` `invalidArgument` when the shape has a negative dimension, overflows,
    ///   or disagrees with the number of elements.
    public init(name: String, datatype: DataType, shape: [Int], contents: TensorContents) throws(TernError) {
        let count = try Shape.elementCount(shape, name: name)
        switch (datatype, contents) {
        case (.bytes, .strings(let elements)):
            guard elements.count == count else {
                throw .invalidArgument(
                    "input '\(name)': shape \(shape) holds \(count) elements but \(elements.count) were given")
            }
        case (.bytes, .raw):
            throw .invalidArgument("input '\(name)': BYTES tensor needs string elements")
        case (_, .strings):
            throw .invalidArgument("input '\(name)': \(datatype) tensor cannot hold string elements")
        case (_, .raw(let bytes)):
            let expected = count * datatype.byteSize!
            guard bytes.count == expected else {
                throw .invalidArgument(
                    "input '\(name)': shape \(shape) of \(datatype) needs \(expected) bytes "
                        + "(\(count) elements) but \(bytes.count) bytes were given")
            }
        }
        self.name = name
        self.datatype = datatype
        self.shape = shape
        self.contents = contents
    }

    /// Creates a tensor without checking; for backends that build outputs they know to be consistent.
    public init(unchecked name: String, datatype: DataType, shape: [Int], contents: TensorContents) {
        self.name = name
        self.datatype = datatype
        self.shape = shape
        self.contents = contents
    }

    /// Number of elements (product of the shape).
    public var elementCount: Int { shape.reduce(1, *) }
}

extension Tensor {
    /// A tensor of fixed-size elements from a typed array, for tests and in-process callers.
    public init<T: TensorElement>(name: String, shape: [Int], values: [T]) throws(TernError) {
        let bytes = values.withUnsafeBytes { Array($0) }
        try self.init(name: name, datatype: T.dataType, shape: shape, contents: .raw(bytes))
    }

    /// A BYTES tensor from strings.
    public init(name: String, shape: [Int], strings: [String]) throws(TernError) {
        try self.init(name: name, datatype: .bytes, shape: shape, contents: .strings(strings.map { Array($0.utf8) }))
    }

    /// The elements as a typed array; `nil` if `T` is not this tensor's element type.
    public func values<T: TensorElement>(as type: T.Type = T.self) -> [T]? {
        guard T.dataType == datatype, case .raw(let bytes) = contents else { return nil }
        return bytes.withUnsafeBytes { raw in
            Array(raw.bindMemory(to: T.self))
        }
    }

    /// The elements of a BYTES tensor as strings (invalid UTF-8 is repaired).
    public var strings: [String]? {
        guard case .strings(let elements) = contents else { return nil }
        return elements.map { String(decoding: $0, as: UTF8.self) }
    }
}

/// A Swift type stored as a fixed-size tensor element.
public protocol TensorElement: Sendable, BitwiseCopyable {
    static var dataType: DataType { get }
}
extension Bool: TensorElement { public static var dataType: DataType { .bool } }
extension UInt8: TensorElement { public static var dataType: DataType { .uint8 } }
extension UInt16: TensorElement { public static var dataType: DataType { .uint16 } }
extension UInt32: TensorElement { public static var dataType: DataType { .uint32 } }
extension UInt64: TensorElement { public static var dataType: DataType { .uint64 } }
extension Int8: TensorElement { public static var dataType: DataType { .int8 } }
extension Int16: TensorElement { public static var dataType: DataType { .int16 } }
extension Int32: TensorElement { public static var dataType: DataType { .int32 } }
extension Int64: TensorElement { public static var dataType: DataType { .int64 } }
extension Float16: TensorElement { public static var dataType: DataType { .fp16 } }
extension Float: TensorElement { public static var dataType: DataType { .fp32 } }
extension Double: TensorElement { public static var dataType: DataType { .fp64 } }

/// Shape arithmetic shared by decoders and validation.
public enum Shape {
    /// The most elements one tensor may hold (2^31): far above any real request, far below overflow.
    public static let maxElements = 1 << 31

    /// Product of the dimensions, refusing negative dimensions and products past ``maxElements``.
    public static func elementCount(_ shape: [Int], name: String) throws(TernError) -> Int {
        var count = 1
        for dim in shape {
            guard dim >= 0 else {
                throw .invalidArgument("input '\(name)': shape \(shape) has a negative dimension")
            }
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard !overflow, product <= maxElements, dim <= maxElements else {
                throw .invalidArgument(
                    "input '\(name)': shape \(shape) is too large (more than \(maxElements) elements)")
            }
            count = product
        }
        return count
    }
}
