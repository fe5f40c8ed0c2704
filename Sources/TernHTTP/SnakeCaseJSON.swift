import Foundation
import Hummingbird
import NIOCore

/// A monitoring answer (drift, live quality, alerts) as JSON: keys in snake_case, keys sorted, and numbers
/// that are not finite as the strings "inf", "-inf" and "nan" (JSON has none).
struct SnakeCaseJSON<Value: Encodable>: ResponseGenerator {
    let value: Value

    init(_ value: Value) { self.value = value }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return Response(
            status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}
