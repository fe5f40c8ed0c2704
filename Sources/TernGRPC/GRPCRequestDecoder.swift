import Foundation
import TernCore

/// Translates a gRPC `ModelInferRequest` into an ``InferenceRequest``: raw contents (every input) or typed
/// contents (each input's one list for its datatype), never both. Every error names the input.
enum GRPCRequestDecoder {
    static func decode(_ message: Inference_ModelInferRequest) throws(TernError) -> InferenceRequest {
        let raw = message.rawInputContents
        if !raw.isEmpty {
            if let typed = message.inputs.first(where: { $0.hasContents && Self.lists($0.contents).contains { $0.count > 0 } }) {
                throw .invalidArgument(
                    "input '\(typed.name)' has typed contents while the request also has "
                        + "raw_input_contents; use one or the other for all inputs")
            }
            guard raw.count == message.inputs.count else {
                throw .invalidArgument("raw_input_contents has \(raw.count) entries for \(message.inputs.count) inputs")
            }
        }
        var request = InferenceRequest(
            id: message.id.isEmpty ? nil : message.id, inputs: [], outputs: [],
            parameters: try parameters(message.parameters))
        request.inputs.reserveCapacity(message.inputs.count)
        for (index, input) in message.inputs.enumerated() {
            guard !input.name.isEmpty else { throw .invalidArgument("input \(index) has no name") }
            guard let datatype = DataType(v2Name: input.datatype) else {
                throw .invalidArgument(
                    "input '\(input.name)' has unknown datatype '\(input.datatype)'; expected one of "
                        + DataType.allCases.map(\.rawValue).joined(separator: ", "))
            }
            let shape = input.shape.map { $0 > Int64(Int.max) ? Int.max : Int($0) }
            let count = try Shape.elementCount(shape, name: input.name)
            let contents: TensorContents
            if raw.isEmpty {
                contents = try typed(input.contents, datatype: datatype, count: count, name: input.name)
            } else {
                let result: Result<TensorContents, TernError> = raw[index].withUnsafeBytes { bytes in
                    Result { () throws(TernError) in
                        try RawTensorEncoding.decode(bytes, datatype: datatype, count: count, name: input.name)
                    }
                }
                contents = try result.get()
            }
            request.inputs.append(try Tensor(name: input.name, datatype: datatype, shape: shape, contents: contents))
        }
        for output in message.outputs {
            if output.parameters["classification"] != nil {
                throw .invalidArgument("the classification extension is not supported; request the probabilities output instead")
            }
            request.outputs.append(output.name)
        }
        return request
    }

    static func parameters(_ map: [String: Inference_InferParameter]) throws(TernError) -> [String: ParameterValue] {
        var result: [String: ParameterValue] = [:]
        for (key, value) in map {
            switch value.parameterChoice {
            case .boolParam(let flag): result[key] = .bool(flag)
            case .int64Param(let number): result[key] = .int(number)
            case .stringParam(let text): result[key] = .string(text)
            case .doubleParam(let number): result[key] = .double(number)
            case .uint64Param(let number): result[key] = number <= UInt64(Int64.max) ? .int(Int64(number)) : .double(Double(number))
            case nil: continue
            }
        }
        return result
    }

    /// The typed lists of a contents message, by field name, with their element counts.
    private static func lists(_ contents: Inference_InferTensorContents) -> [(name: String, count: Int)] {
        [
            ("bool_contents", contents.boolContents.count), ("int_contents", contents.intContents.count),
            ("int64_contents", contents.int64Contents.count), ("uint_contents", contents.uintContents.count),
            ("uint64_contents", contents.uint64Contents.count), ("fp32_contents", contents.fp32Contents.count),
            ("fp64_contents", contents.fp64Contents.count), ("bytes_contents", contents.bytesContents.count),
        ]
    }

    private static func field(for datatype: DataType) -> String? {
        switch datatype {
        case .bool: "bool_contents"
        case .int8, .int16, .int32: "int_contents"
        case .int64: "int64_contents"
        case .uint8, .uint16, .uint32: "uint_contents"
        case .uint64: "uint64_contents"
        case .fp32: "fp32_contents"
        case .fp64: "fp64_contents"
        case .bytes: "bytes_contents"
        case .fp16: nil
        }
    }

    private static func typed(_ contents: Inference_InferTensorContents, datatype: DataType, count: Int, name: String)
        throws(TernError) -> TensorContents
    {
        let used = lists(contents).filter { $0.count > 0 }
        guard let expected = field(for: datatype) else {
            guard count == 0 else {
                throw .invalidArgument("input '\(name)': FP16 has no typed contents list; send it in raw_input_contents")
            }
            return .raw([])
        }
        if let wrong = used.first(where: { $0.name != expected }) {
            throw .invalidArgument("input '\(name)' is \(datatype), which takes \(expected), but \(wrong.name) was given")
        }
        let given = used.first?.count ?? 0
        guard given == count else {
            throw .invalidArgument("input '\(name)': its shape needs \(count) elements but \(expected) holds \(given)")
        }
        func bytes<T: BitwiseCopyable>(_ values: [T]) -> TensorContents {
            .raw(values.withUnsafeBytes { Array($0) })
        }
        func narrowed<Source: BinaryInteger, Target: FixedWidthInteger & BitwiseCopyable>(
            _ values: [Source], _ type: Target.Type
        ) throws(TernError) -> TensorContents {
            var result: [Target] = []
            result.reserveCapacity(values.count)
            for value in values {
                guard let exact = Target(exactly: value) else {
                    throw .invalidArgument("input '\(name)': value \(value) is out of range for \(datatype)")
                }
                result.append(exact)
            }
            return bytes(result)
        }
        switch datatype {
        case .bool: return bytes(contents.boolContents)
        case .int8: return try narrowed(contents.intContents, Int8.self)
        case .int16: return try narrowed(contents.intContents, Int16.self)
        case .int32: return bytes(contents.intContents)
        case .int64: return bytes(contents.int64Contents)
        case .uint8: return try narrowed(contents.uintContents, UInt8.self)
        case .uint16: return try narrowed(contents.uintContents, UInt16.self)
        case .uint32: return bytes(contents.uintContents)
        case .uint64: return bytes(contents.uint64Contents)
        case .fp32: return bytes(contents.fp32Contents)
        case .fp64: return bytes(contents.fp64Contents)
        case .bytes: return .strings(contents.bytesContents.map { Array($0) })
        case .fp16: return .raw([])
        }
    }
}

/// Translates an ``InferenceResponse`` into a gRPC `ModelInferResponse`, every output in
/// `raw_output_contents` (what tritonclient and kserve decode).
enum GRPCResponseEncoder {
    static func encode(_ response: InferenceResponse) -> Inference_ModelInferResponse {
        var message = Inference_ModelInferResponse()
        message.modelName = response.modelName
        message.modelVersion = response.modelVersion
        if let id = response.id { message.id = id }
        for (key, value) in response.parameters {
            var parameter = Inference_InferParameter()
            switch value {
            case .bool(let b): parameter.boolParam = b
            case .int(let i): parameter.int64Param = i
            case .double(let d): parameter.doubleParam = d
            case .string(let s): parameter.stringParam = s
            }
            message.parameters[key] = parameter
        }
        message.outputs.reserveCapacity(response.outputs.count)
        message.rawOutputContents.reserveCapacity(response.outputs.count)
        for output in response.outputs {
            var tensor = Inference_ModelInferResponse.InferOutputTensor()
            tensor.name = output.name
            tensor.datatype = output.datatype.rawValue
            tensor.shape = output.shape.map(Int64.init)
            message.outputs.append(tensor)
            switch output.contents {
            case .raw(let bytes): message.rawOutputContents.append(Data(bytes))
            case .strings:
                var data = Data(capacity: RawTensorEncoding.byteCount(output))
                RawTensorEncoding.encode(output) { data.append(contentsOf: $0) }
                message.rawOutputContents.append(data)
            }
        }
        return message
    }
}
