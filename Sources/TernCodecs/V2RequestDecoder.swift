import NIOCore
import TernCore

/// Decodes an Open Inference Protocol v2 REST inference request (JSON, optionally followed by Triton's
/// binary tensor data) into an ``InferenceRequest``.
///
/// Tensor data is decoded straight into typed buffers. Every error names the input at fault.
public struct V2RequestDecoder {
    /// What the response should carry as binary.
    public struct OutputEncoding: Sendable {
        /// Request-level `binary_data_output`: every output binary unless it says otherwise.
        public var binaryByDefault = false
        /// Per-output `binary_data` choices.
        public var perOutput: [String: Bool] = [:]

        public init() {}

        public func isBinary(_ name: String) -> Bool { perOutput[name] ?? binaryByDefault }
    }

    private struct InputHeader {
        var name: String?
        var datatype: String?
        var shape: [Int]?
        var dataRange: Range<Int>?
        /// `data`, decoded as it was read when `name`, `datatype` and `shape` came before it.
        var decoded: TensorContents?
        var binarySize: Int?
    }

    /// Decodes `body`. `headerLength` is the `Inference-Header-Content-Length` header, if sent.
    public static func decode(body: ByteBuffer, headerLength: Int?) throws(TernError) -> (InferenceRequest, OutputEncoding) {
        let total = body.readableBytes
        if let headerLength {
            guard headerLength >= 0, headerLength <= total else {
                throw .invalidArgument(
                    "Inference-Header-Content-Length is \(headerLength) but the body has only \(total) bytes")
            }
        }
        let jsonLength = headerLength ?? total
        let result: Result<(InferenceRequest, OutputEncoding), TernError> = body.withUnsafeReadableBytes { bytes in
            do throws(TernError) {
                return .success(try decode(bytes: bytes, jsonLength: jsonLength, hasBinary: headerLength != nil))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    private static func decode(bytes: UnsafeRawBufferPointer, jsonLength: Int, hasBinary: Bool) throws(TernError)
        -> (InferenceRequest, OutputEncoding)
    {
        guard jsonLength > 0 else { throw .invalidArgument("the request body is empty; expected a JSON object") }
        var reader = JSONReader(bytes, range: 0..<jsonLength)
        var request = InferenceRequest(inputs: [])
        var headers: [InputHeader] = []
        var encoding = OutputEncoding()
        var sawInputs = false
        guard reader.peek() == UInt8(ascii: "{") else {
            let first = reader.peek()
            let looksLikeRows =
                first.map { $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "[") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } ?? false
            throw reader.error(
                "the request must be a JSON object, as the Open Inference Protocol v2 defines it"
                    + (looksLikeRows
                        ? "; CSV rows go to POST /invocations (Content-Type: text/csv), JSON rows to "
                            + "POST /v1/models/<name>:predict as {\"instances\": [...]}" : ""))
        }
        try reader.readObject { (reader: inout JSONReader, key: String) throws(TernError) in
            switch key {
            case "id":
                if try !reader.readNull() { request.id = try reader.readString() }
            case "parameters":
                request.parameters = try readParameters(&reader, context: "request")
                if case .bool(let flag) = request.parameters["binary_data_output"] { encoding.binaryByDefault = flag }
            case "inputs":
                sawInputs = true
                try reader.readArray { (reader: inout JSONReader) throws(TernError) in
                    headers.append(try readInputHeader(&reader, position: headers.count))
                }
            case "outputs":
                try reader.readArray { (reader: inout JSONReader) throws(TernError) in
                    let (name, binary) = try readOutputHeader(&reader)
                    request.outputs.append(name)
                    if let binary { encoding.perOutput[name] = binary }
                }
            default:
                try reader.skipValue()
            }
        }
        try reader.expectEnd()
        guard sawInputs else { throw .invalidArgument("the request has no 'inputs'") }

        var binaryOffset = jsonLength
        request.inputs.reserveCapacity(headers.count)
        for (position, header) in headers.enumerated() {
            guard let name = header.name else { throw .invalidArgument("input \(position) has no 'name'") }
            guard let typeName = header.datatype else { throw .invalidArgument("input '\(name)' has no 'datatype'") }
            guard let datatype = DataType(v2Name: typeName) else {
                throw .invalidArgument(
                    "input '\(name)' has unknown datatype '\(typeName)'; expected one of "
                        + DataType.allCases.map(\.rawValue).joined(separator: ", "))
            }
            guard let shape = header.shape else { throw .invalidArgument("input '\(name)' has no 'shape'") }
            let count = try Shape.elementCount(shape, name: name)
            let contents: TensorContents
            switch (header.dataRange, header.binarySize) {
            case (.some, .some):
                throw .invalidArgument("input '\(name)' has both 'data' and 'binary_data_size'")
            case (nil, nil):
                throw .invalidArgument("input '\(name)' has neither 'data' nor 'binary_data_size'")
            case (.some(let range), nil):
                if let decoded = header.decoded {
                    contents = decoded
                } else {
                    contents = try TensorDataDecoder.decode(bytes, range: range, datatype: datatype, shape: shape, count: count, name: name)
                }
            case (nil, .some(let size)):
                guard hasBinary else {
                    throw .invalidArgument(
                        "input '\(name)' has binary_data_size but the request has no "
                            + "Inference-Header-Content-Length header")
                }
                guard size >= 0, size <= bytes.count - binaryOffset else {
                    throw .invalidArgument(
                        "input '\(name)' declares \(size) bytes of binary data but only "
                            + "\(bytes.count - binaryOffset) remain in the body (truncated?)")
                }
                let slice = UnsafeRawBufferPointer(rebasing: bytes[binaryOffset..<(binaryOffset + size)])
                contents = try RawTensorEncoding.decode(slice, datatype: datatype, count: count, name: name)
                binaryOffset += size
            }
            request.inputs.append(try Tensor(name: name, datatype: datatype, shape: shape, contents: contents))
        }
        guard binaryOffset == bytes.count else {
            throw .invalidArgument(
                "the body has \(bytes.count - binaryOffset) bytes after the declared binary "
                    + "data; check Inference-Header-Content-Length and each input's binary_data_size")
        }
        return (request, encoding)
    }

    private static func readInputHeader(_ reader: inout JSONReader, position: Int) throws(TernError) -> InputHeader {
        var header = InputHeader()
        guard reader.peek() == UInt8(ascii: "{") else { throw reader.error("input \(position) must be an object") }
        try reader.readObject { (reader: inout JSONReader, key: String) throws(TernError) in
            switch key {
            case "name": header.name = try reader.readString()
            case "datatype": header.datatype = try reader.readString()
            case "shape":
                var shape: [Int] = []
                try reader.readArray { (reader: inout JSONReader) throws(TernError) in
                    let (magnitude, negative) = try reader.readInteger()
                    // Out-of-range dimensions are kept as values Shape.elementCount refuses with the input's name.
                    let dim = magnitude > UInt64(Int.max) ? Int.max : Int(magnitude)
                    shape.append(negative ? -max(dim, 1) : dim)
                }
                header.shape = shape
            case "data":
                _ = reader.peek()  // past whitespace
                let start = reader.index
                if let name = header.name, let typeName = header.datatype, let datatype = DataType(v2Name: typeName),
                    let shape = header.shape, let count = try? Shape.elementCount(shape, name: name)
                {
                    header.decoded = try TensorDataDecoder.decode(&reader, datatype: datatype, shape: shape, count: count, name: name)
                    header.dataRange = start..<reader.index
                } else {
                    header.decoded = nil
                    header.dataRange = try reader.skipValue()
                }
            case "parameters":
                let parameters = try readParameters(&reader, context: "input \(header.name.map { "'\($0)'" } ?? "\(position)")")
                if let size = parameters["binary_data_size"] {
                    guard case .int(let value) = size else {
                        throw .invalidArgument("binary_data_size of input \(header.name ?? "\(position)") must be an integer")
                    }
                    header.binarySize = Int(value)
                }
            default:
                try reader.skipValue()
            }
        }
        return header
    }

    private static func readOutputHeader(_ reader: inout JSONReader) throws(TernError) -> (String, Bool?) {
        var name: String?
        var binary: Bool?
        guard reader.peek() == UInt8(ascii: "{") else { throw reader.error("each output must be an object") }
        try reader.readObject { (reader: inout JSONReader, key: String) throws(TernError) in
            switch key {
            case "name": name = try reader.readString()
            case "parameters":
                let parameters = try readParameters(&reader, context: "output")
                if case .bool(let flag) = parameters["binary_data"] { binary = flag }
                if parameters["classification"] != nil {
                    throw .invalidArgument(
                        "the classification extension is not supported; request the "
                            + "probabilities output instead")
                }
            default: try reader.skipValue()
            }
        }
        guard let name else { throw .invalidArgument("an output has no 'name'") }
        return (name, binary)
    }

    /// Reads a parameters object: string, number and boolean values; nested values are refused.
    public static func readParameters(_ reader: inout JSONReader, context: String) throws(TernError) -> [String: ParameterValue] {
        var parameters: [String: ParameterValue] = [:]
        if try reader.readNull() { return parameters }
        guard reader.peek() == UInt8(ascii: "{") else { throw reader.error("\(context) parameters must be an object") }
        try reader.readObject { (reader: inout JSONReader, key: String) throws(TernError) in
            switch reader.peek() {
            case UInt8(ascii: "\""): parameters[key] = .string(try reader.readString())
            case UInt8(ascii: "t"), UInt8(ascii: "f"): parameters[key] = .bool(try reader.readBool())
            case UInt8(ascii: "n"): _ = try reader.readNull()
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                throw reader.error("\(context) parameter '\(key)' must be a string, number or boolean")
            default:
                let token = try reader.readNumberToken()
                let value = JSONReader.parseDouble(reader.bytes, token)
                if value == value.rounded(), abs(value) < 9.0e15 {
                    parameters[key] = .int(Int64(value))
                } else {
                    parameters[key] = .double(value)
                }
            }
        }
        return parameters
    }
}
