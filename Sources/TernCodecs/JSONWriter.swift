import NIOCore
import TernCore

/// Writes JSON straight into a response buffer.
public struct JSONWriter {
    public var buffer: ByteBuffer

    public init(capacity: Int = 512) {
        buffer = ByteBufferAllocator().buffer(capacity: capacity)
    }

    public mutating func raw(_ text: StaticString) {
        buffer.writeStaticString(text)
    }

    public mutating func byte(_ value: UInt8) {
        buffer.writeInteger(value)
    }

    /// A JSON string, escaped.
    public mutating func string(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in string(utf8: UnsafeRawBufferPointer(utf8)) }
    }

    /// A JSON string from UTF-8 bytes, escaped. Invalid UTF-8 is replaced (U+FFFD), as JSON must be Unicode.
    public mutating func string(bytes: [UInt8]) {
        if bytes.allSatisfy({ $0 < 0x80 }) || String(validating: bytes, as: UTF8.self) != nil {
            bytes.withUnsafeBytes { string(utf8: $0) }
        } else {
            string(String(decoding: bytes, as: UTF8.self))
        }
    }

    private mutating func string(utf8: UnsafeRawBufferPointer) {
        byte(UInt8(ascii: "\""))
        var start = 0
        for (index, character) in utf8.enumerated() where character < 0x20 || character == 0x22 || character == 0x5C {
            if index > start { buffer.writeBytes(UnsafeRawBufferPointer(rebasing: utf8[start..<index])) }
            switch character {
            case 0x22: raw("\\\"")
            case 0x5C: raw("\\\\")
            case 0x0A: raw("\\n")
            case 0x0D: raw("\\r")
            case 0x09: raw("\\t")
            default:
                raw("\\u00")
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                byte(hex[Int(character >> 4)])
                byte(hex[Int(character & 0xF)])
            }
            start = index + 1
        }
        if start < utf8.count { buffer.writeBytes(UnsafeRawBufferPointer(rebasing: utf8[start...])) }
        byte(UInt8(ascii: "\""))
    }

    public mutating func integer<T: FixedWidthInteger>(_ value: T) {
        if value == 0 {
            byte(UInt8(ascii: "0"))
            return
        }
        var magnitude = value.magnitude
        if value < 0 { byte(UInt8(ascii: "-")) }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var count = 0
            while magnitude > 0 {
                digits[19 - count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            }
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(digits)[(20 - count)...]))
        }
    }

    /// A float in its shortest round-trip form. NaN and infinities, which JSON lacks, are written as
    /// Python's json module writes and reads them (NaN, Infinity, -Infinity).
    public mutating func float<T: BinaryFloatingPoint & CustomStringConvertible>(_ value: T) {
        if value.isNaN {
            raw("NaN")
        } else if value.isInfinite {
            value < 0 ? raw("-Infinity") : raw("Infinity")
        } else {
            buffer.writeString(value.description)
        }
    }

    public mutating func bool(_ value: Bool) {
        value ? raw("true") : raw("false")
    }

    /// `[a,b,c]` of integers, such as a shape.
    public mutating func integers(_ values: [Int]) {
        byte(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { byte(UInt8(ascii: ",")) }
            integer(value)
        }
        byte(UInt8(ascii: "]"))
    }

    /// Opens a tensor object: `{"name":...,"datatype":...,"shape":[...]`; the caller adds fields and the `}`.
    public mutating func tensorHeader(name: String, datatype: DataType, shape: [Int]) {
        raw("{\"name\":")
        string(name)
        raw(",\"datatype\":")
        string(datatype.rawValue)
        raw(",\"shape\":")
        integers(shape)
    }

    /// A tensor's elements as a flat JSON array.
    public mutating func tensorData(_ tensor: Tensor) {
        byte(UInt8(ascii: "["))
        switch tensor.contents {
        case .strings(let elements):
            for (index, element) in elements.enumerated() {
                if index > 0 { byte(UInt8(ascii: ",")) }
                string(bytes: element)
            }
        case .raw(let bytes):
            bytes.withUnsafeBytes { raw in
                switch tensor.datatype {
                case .bool: elements(raw, Bool.self) { $0.bool($1) }
                case .uint8: elements(raw, UInt8.self) { $0.integer($1) }
                case .uint16: elements(raw, UInt16.self) { $0.integer($1) }
                case .uint32: elements(raw, UInt32.self) { $0.integer($1) }
                case .uint64: elements(raw, UInt64.self) { $0.integer($1) }
                case .int8: elements(raw, Int8.self) { $0.integer($1) }
                case .int16: elements(raw, Int16.self) { $0.integer($1) }
                case .int32: elements(raw, Int32.self) { $0.integer($1) }
                case .int64: elements(raw, Int64.self) { $0.integer($1) }
                case .fp16: elements(raw, Float16.self) { $0.float($1) }
                case .fp32: elements(raw, Float.self) { $0.float($1) }
                case .fp64: elements(raw, Double.self) { $0.float($1) }
                case .bytes: break
                }
            }
        }
        byte(UInt8(ascii: "]"))
    }

    private mutating func elements<T: BitwiseCopyable>(
        _ raw: UnsafeRawBufferPointer, _ type: T.Type, _ write: (inout JSONWriter, T) -> Void
    ) {
        let stride = MemoryLayout<T>.stride
        let count = raw.count / stride
        for index in 0..<count {
            if index > 0 { byte(UInt8(ascii: ",")) }
            write(&self, raw.loadUnaligned(fromByteOffset: index * stride, as: T.self))
        }
    }

    /// A parameter value.
    public mutating func parameter(_ value: ParameterValue) {
        switch value {
        case .bool(let flag): bool(flag)
        case .int(let number): integer(number)
        case .double(let number): float(number)
        case .string(let text): string(text)
        }
    }
}
