import NIOCore
import TernCore

/// The V2 JSON request and response forms, for callers outside HTTP (the CLI's `predict`).
public enum V2JSON {
    /// Decodes a V2 inference request body (JSON only).
    public static func decodeRequest(_ bytes: [UInt8]) throws(TernError) -> InferenceRequest {
        try V2RequestDecoder.decode(body: ByteBuffer(bytes: bytes), headerLength: nil).0
    }

    /// Encodes a response as V2 JSON (every output as JSON data).
    public static func encodeResponse(_ response: InferenceResponse) -> String {
        let (buffer, _) = V2ResponseEncoder.encode(response, encoding: .init())
        return String(buffer: buffer)
    }
}
