/// The raw tensor encoding of the Open Inference Protocol, shared by Triton's binary tensor data extension
/// (REST) and `raw_input_contents`/`raw_output_contents` (gRPC): fixed-size elements little-endian and
/// contiguous; BYTES elements each preceded by a 4-byte little-endian length.
public enum RawTensorEncoding {
    /// Decodes `bytes` as `count` elements of `datatype`.
    ///
    /// - Throws: ``TernError`` `invalidArgument` naming the input when the size does not match.
    public static func decode(_ bytes: UnsafeRawBufferPointer, datatype: DataType, count: Int, name: String)
        throws(TernError) -> TensorContents
    {
        guard let size = datatype.byteSize else {
            var elements: [[UInt8]] = []
            elements.reserveCapacity(min(count, bytes.count / 4))
            var offset = 0
            while offset < bytes.count {
                guard offset + 4 <= bytes.count else {
                    throw .invalidArgument("input '\(name)': raw BYTES data ends inside a length prefix")
                }
                let length = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
                offset += 4
                guard length <= bytes.count - offset else {
                    throw .invalidArgument(
                        "input '\(name)': raw BYTES element \(elements.count) declares "
                            + "\(length) bytes but only \(bytes.count - offset) remain")
                }
                elements.append(Array(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length)])))
                offset += length
            }
            guard elements.count == count else {
                throw .invalidArgument(
                    "input '\(name)': its shape needs \(count) elements but the raw data "
                        + "holds \(elements.count)")
            }
            return .strings(elements)
        }
        guard bytes.count == count * size else {
            throw .invalidArgument(
                "input '\(name)': raw data is \(bytes.count) bytes but its shape and "
                    + "\(datatype) need \(count * size)")
        }
        return .raw(Array(bytes))
    }

    /// The size of a tensor's raw encoding.
    public static func byteCount(_ tensor: Tensor) -> Int {
        switch tensor.contents {
        case .raw(let bytes): bytes.count
        case .strings(let elements): elements.reduce(0) { $0 + 4 + $1.count }
        }
    }

    /// Calls `write` with the pieces of a tensor's raw encoding, in order.
    public static func encode(_ tensor: Tensor, _ write: (UnsafeRawBufferPointer) -> Void) {
        switch tensor.contents {
        case .raw(let bytes): bytes.withUnsafeBytes(write)
        case .strings(let elements):
            for element in elements {
                withUnsafeBytes(of: UInt32(element.count).littleEndian, write)
                element.withUnsafeBytes(write)
            }
        }
    }
}
