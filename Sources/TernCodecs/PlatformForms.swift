import Foundation
import NIOCore
import TernCore

/// The tabular request forms other platforms' clients send (SageMaker, Vertex AI, Azure ML, MLflow):
/// `instances`, `inputs`, `dataframe_split`, `dataframe_records`, and SageMaker's text/csv.
public enum PlatformForms {
    public static func jsonRequest(_ body: ByteBuffer, codec: TabularCodec) throws(TernError) -> InferenceRequest {
        guard body.readableBytes > 0 else { throw .invalidArgument("the request body is empty") }
        let value: JSONValue = try body.withUnsafeReadableBytes { bytes in
            Result { () throws(TernError) in try JSONValue.parse(bytes) }
        }.get()
        return try request(value, codec: codec)
    }

    /// A request from a parsed body in one of the platform forms.
    public static func request(_ value: JSONValue, codec: TabularCodec) throws(TernError) -> InferenceRequest {
        guard case .object = value else {
            throw .invalidArgument(
                "the request must be a JSON object with one of: instances, inputs, dataframe_split, "
                    + "dataframe_records")
        }
        if let split = value["dataframe_split"] {
            guard case .array(let columns)? = split["columns"], case .array(let data)? = split["data"] else {
                throw .invalidArgument("dataframe_split needs 'columns' (a list of names) and 'data' (a list of rows)")
            }
            var names: [String] = []
            for column in columns {
                guard case .string(let name) = column else { throw .invalidArgument("dataframe_split 'columns' must be strings") }
                names.append(name)
            }
            return try codec.request(columns: names, data: data)
        }
        if let records = value["dataframe_records"] {
            guard case .array(let rows) = records else { throw .invalidArgument("dataframe_records must be a list of objects") }
            return try codec.request(instances: rows)
        }
        if let instances = value["instances"] {
            guard case .array(let rows) = instances else { throw .invalidArgument("'instances' must be a list of rows") }
            return try codec.request(instances: rows)
        }
        if let inputs = value["inputs"] {
            return try codec.request(columnar: inputs)
        }
        throw .invalidArgument(
            "expected one of: instances, inputs, dataframe_split, dataframe_records; got keys: "
                + value.keys.joined(separator: ", "))
    }

    /// SageMaker's text/csv: one row per line, no header (a first line of names only is taken as a header).
    public static func csvRequest(_ body: ByteBuffer, codec: TabularCodec) throws(TernError) -> InferenceRequest {
        let text = String(buffer: body)
        guard text.utf8.elementsEqual(body.readableBytesView) else { throw .invalidArgument("the CSV body is not valid UTF-8") }
        return try csvRequest(text, codec: codec)
    }

    public static func csvRequest(_ text: String, codec: TabularCodec) throws(TernError) -> InferenceRequest {
        // Quoted fields may hold commas ("car or other, not in attribute ..."), as pandas' to_csv writes them.
        var lines = try CSVRecords.parse(text, source: "the CSV body").map { line in
            line.map { $0.trimmingCharacters(in: .whitespaces) }
        }
        guard !lines.isEmpty else { throw .invalidArgument("the CSV body has no rows") }
        func cell(_ text: String) -> JSONValue {
            if let exact = Int64(text) { return .number(Double(exact), exact) }
            if let double = Double(text) { return .number(double, nil) }
            return .string(text)
        }
        if lines.count > 1, lines[0].allSatisfy({ Double($0) == nil }) {
            let header = lines.removeFirst()
            return try codec.request(columns: header, data: lines.map { .array($0.map(cell)) })
        }
        let width = lines[0].count
        if let bad = lines.firstIndex(where: { $0.count != width }) {
            throw .invalidArgument("CSV line \(bad + 1) has \(lines[bad].count) values; line 1 has \(width)")
        }
        if codec.signature.inputs.count > 1 {
            // Columns map to the inputs in order.
            let names = codec.signature.inputs.map(\.name)
            guard width == names.count else {
                throw .invalidArgument("CSV lines have \(width) values but the model has \(names.count) inputs (\(names.joined(separator: ", ")))")
            }
            return try codec.request(columns: names, data: lines.map { .array($0.map(cell)) })
        }
        return try codec.request(instances: lines.map { .array($0.map(cell)) })
    }
}
