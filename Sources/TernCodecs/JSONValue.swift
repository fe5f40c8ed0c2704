import TernCore

/// A parsed JSON value, for the row- and table-shaped formats (KServe v1, MLflow, SageMaker, Vertex AI)
/// whose layout depends on the model; the V2 hot path never builds these.
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// The value, and the exact integer when the token was one.
    case number(Double, Int64?)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case (.bool(let x), .bool(let y)): x == y
        case (.number(let x, _), .number(let y, _)): x == y
        case (.string(let x), .string(let y)): x == y
        case (.array(let x), .array(let y)): x == y
        case (.object(let x), .object(let y)): x.map(\.0) == y.map(\.0) && x.map(\.1) == y.map(\.1)
        default: false
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members.first { $0.0 == key }?.1 }
        return nil
    }

    public var keys: [String] {
        if case .object(let members) = self { return members.map(\.0) }
        return []
    }

    /// Parses a whole body.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(TernError) -> JSONValue {
        var reader = JSONReader(bytes)
        let value = try read(&reader, depth: 0)
        try reader.expectEnd()
        return value
    }

    public static func parse(_ bytes: [UInt8]) throws(TernError) -> JSONValue {
        let result: Result<JSONValue, TernError> = bytes.withUnsafeBytes { raw in
            Result { () throws(TernError) in try parse(raw) }
        }
        return try result.get()
    }

    private static func read(_ reader: inout JSONReader, depth: Int) throws(TernError) -> JSONValue {
        guard depth < 64 else { throw reader.error("nesting deeper than 64 levels") }
        switch reader.peek() {
        case UInt8(ascii: "{"):
            var members: [(String, JSONValue)] = []
            try reader.readObject { (reader: inout JSONReader, key: String) throws(TernError) in
                members.append((key, try read(&reader, depth: depth + 1)))
            }
            return .object(members)
        case UInt8(ascii: "["):
            var elements: [JSONValue] = []
            try reader.readArray { (reader: inout JSONReader) throws(TernError) in
                elements.append(try read(&reader, depth: depth + 1))
            }
            return .array(elements)
        case UInt8(ascii: "\""): return .string(try reader.readString())
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool(try reader.readBool())
        case UInt8(ascii: "n"):
            _ = try reader.readNull()
            return .null
        default:
            let token = try reader.readNumberToken()
            let value = JSONReader.parseDouble(reader.bytes, token)
            var exact: Int64?
            var integer = true
            for position in token where !(reader.bytes[position] == UInt8(ascii: "-") && position == token.lowerBound) {
                if reader.bytes[position] < UInt8(ascii: "0") || reader.bytes[position] > UInt8(ascii: "9") { integer = false }
            }
            if integer {
                exact = Int64(String(decoding: UnsafeRawBufferPointer(rebasing: reader.bytes[token]), as: UTF8.self))
            }
            return .number(value, exact)
        }
    }
}
