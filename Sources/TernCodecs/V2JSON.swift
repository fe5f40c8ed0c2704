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

/// Every request form Tern's REST front-ends accept, for callers outside HTTP (the CLI's `predict`): a V2
/// request, the platform forms (`instances`, `inputs`, `dataframe_split`, `dataframe_records`), an object
/// keyed by input name, a list of rows, or CSV. Datatypes come from the signature, shapes from the data.
public enum TabularInput {
    public static func request(json text: String, signature: ModelSignature, featureNames: [String]?)
        throws(TernError) -> InferenceRequest
    {
        let codec = TabularCodec(signature: signature, featureNames: featureNames)
        let value = try JSONValue.parse(Array(text.utf8))
        switch value {
        case .array(let rows):
            return try codec.request(instances: rows)
        case .object:
            if case .array(let inputs)? = value["inputs"], case .object? = inputs.first, inputs.first?["datatype"] != nil {
                return try V2JSON.decodeRequest(Array(text.utf8))
            }
            let forms = ["instances", "inputs", "dataframe_split", "dataframe_records"]
            if value.keys.contains(where: forms.contains) { return try PlatformForms.request(value, codec: codec) }
            return try codec.request(columnar: value)
        default:
            throw .invalidArgument("expected a JSON object or a list of rows")
        }
    }

    /// Rows of text cells under named columns (a parsed CSV file): numbers where a cell reads as one.
    public static func request(columns: [String], rows: [[String]], signature: ModelSignature, featureNames: [String]?)
        throws(TernError) -> InferenceRequest
    {
        func cell(_ text: String) -> JSONValue {
            if let exact = Int64(text) { return .number(Double(exact), exact) }
            if let double = Double(text) { return .number(double, nil) }
            return .string(text)
        }
        let codec = TabularCodec(signature: signature, featureNames: featureNames)
        return try codec.request(columns: columns, data: rows.map { .array($0.map(cell)) })
    }

    public static func request(csv text: String, signature: ModelSignature, featureNames: [String]?)
        throws(TernError) -> InferenceRequest
    {
        try PlatformForms.csvRequest(text, codec: TabularCodec(signature: signature, featureNames: featureNames))
    }
}
