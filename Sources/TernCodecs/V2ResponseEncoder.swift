import NIOCore
import TernCore

/// Encodes an ``InferenceResponse`` as a V2 REST response: JSON, with the outputs asked for as binary
/// appended after it (Triton's binary tensor data extension).
public enum V2ResponseEncoder {
    /// The body, and the JSON header's length when binary data follows it (for `Inference-Header-Content-Length`).
    public static func encode(_ response: InferenceResponse, encoding: V2RequestDecoder.OutputEncoding) -> (ByteBuffer, Int?) {
        var estimate = 128
        for output in response.outputs {
            switch output.contents {
            case .raw(let bytes): estimate += encoding.isBinary(output.name) ? 96 : bytes.count * 3 + 96
            case .strings(let elements): estimate += elements.count * 16 + 96
            }
        }
        var json = JSONWriter(capacity: estimate)
        json.raw("{\"model_name\":")
        json.string(response.modelName)
        json.raw(",\"model_version\":")
        json.string(response.modelVersion)
        if let id = response.id {
            json.raw(",\"id\":")
            json.string(id)
        }
        if !response.parameters.isEmpty {
            json.raw(",\"parameters\":{")
            for (index, (key, value)) in response.parameters.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { json.byte(UInt8(ascii: ",")) }
                json.string(key)
                json.byte(UInt8(ascii: ":"))
                json.parameter(value)
            }
            json.byte(UInt8(ascii: "}"))
        }
        json.raw(",\"outputs\":[")
        var binary: [Tensor] = []
        for (index, output) in response.outputs.enumerated() {
            if index > 0 { json.byte(UInt8(ascii: ",")) }
            json.tensorHeader(name: output.name, datatype: output.datatype, shape: output.shape)
            if encoding.isBinary(output.name) {
                json.raw(",\"parameters\":{\"binary_data_size\":")
                json.integer(RawTensorEncoding.byteCount(output))
                json.raw("}}")
                binary.append(output)
            } else {
                json.raw(",\"data\":")
                json.tensorData(output)
                json.byte(UInt8(ascii: "}"))
            }
        }
        json.raw("]}")
        guard !binary.isEmpty else { return (json.buffer, nil) }
        let headerLength = json.buffer.readableBytes
        var body = json.buffer
        for output in binary { RawTensorEncoding.encode(output) { body.writeBytes($0) } }
        return (body, headerLength)
    }
}
