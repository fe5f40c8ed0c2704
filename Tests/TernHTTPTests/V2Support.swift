import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import TernCore
import TernONNX
import TernTestSupport
import Testing

@testable import TernCodecs
@testable import TernHTTP

/// A service with the named fixture models loaded (each as version 1), ready; as `tern serve` loads them,
/// models with a batch dimension are behind a dynamic batcher.
func fixtureService(_ names: [String] = Fixtures.modelNames, ready: Bool = true) throws -> InferenceService {
    let service = InferenceService()
    for name in names {
        let onnx = try ONNXModel(path: Fixtures.modelPath(name), runtime: Fixtures.runtime, pool: Fixtures.pool)
        let model = try DynamicBatcher.applying(ModelConfig(), to: onnx, maxConcurrentBatches: 2, name: name)
        service.catalog.add(ServedModel(name: name, version: 1, model: model, config: ModelConfig(), platform: "onnxruntime_onnx"))
    }
    service.isReady = ready
    return service
}

/// Where a live server runs infer requests.
enum InferPath: CaseIterable {
    /// The channel pipeline (``V2InferFastPath``), models run on runner threads.
    case pipeline
    /// The channel pipeline, batched models run on the event loop once timed (``EventLoopRunQueue``, with a
    /// budget large enough for any fixture).
    case pipelineInline
}

/// Runs `body` against a live HTTP server (real sockets on a free port) serving `service`, as `tern serve`
/// does: infer requests in the channel pipeline, light runs on the event loop (`path` chooses otherwise).
func withLiveServer(
    _ service: InferenceService, maxRequestBytes: Int = 64 << 20,
    platform: PlatformRoutesConfiguration = .init(), path: InferPath = .pipelineInline,
    _ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void
) async throws {
    let router = Router(context: BasicRequestContext.self)
    let http = HTTPFrontEndConfiguration(
        maxRequestBytes: maxRequestBytes, inlineRunBudget: path == .pipelineInline ? .seconds(1) : .zero)
    let routes = ScopedRouter(router: router, access: http.access)
    V2Routes(service: service, configuration: http).register(on: routes)
    PlatformRoutes(service: service, configuration: platform, http: http).register(on: routes)
    let app = Application(
        router: router,
        server: .http1(
            configuration: .init(
                additionalChannelHandlers: [V2Routes.inferFastPath(service: service, configuration: http)])),
        configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    try await app.test(.live) { client in try await body(client) }
}

/// Batches of `name` run on an event loop so far (0 for a model without an inline batcher).
func inlineBatches(_ service: InferenceService, _ name: String) throws -> Int {
    try service.catalog.resolve(name: name, version: nil).inlineBatcher?.statistics.inlineBatches ?? 0
}

/// The raw JSON text of each golden case's `inputs` array, exactly as Python's json module wrote it.
func rawGoldenInputs(_ name: String) throws -> [String] {
    let data = try Fixtures.goldenData(name)
    return try data.withUnsafeBytes { bytes in
        var ranges: [Range<Int>] = []
        var reader = JSONReader(bytes)
        try reader.readObject { (reader: inout JSONReader, key: String) throws(TernError) in
            guard key == "cases" else {
                try reader.skipValue()
                return
            }
            try reader.readArray { (reader: inout JSONReader) throws(TernError) in
                try reader.readObject { (reader: inout JSONReader, key: String) throws(TernError) in
                    let range = try reader.skipValue()
                    if key == "inputs" { ranges.append(range) }
                }
            }
        }
        return ranges.map { String(decoding: UnsafeRawBufferPointer(rebasing: bytes[$0]), as: UTF8.self) }
    }
}

/// A decoded V2 JSON response.
struct V2Response: Decodable {
    var model_name: String
    var model_version: String
    var id: String?
    var outputs: [GoldenTensor]
}

/// The JSON part of a response carrying binary outputs.
struct V2BinaryHeader: Decodable {
    struct Output: Decodable {
        struct Parameters: Decodable { var binary_data_size: Int }
        var name: String
        var datatype: String
        var shape: [Int]
        var parameters: Parameters
    }
    var model_name: String
    var outputs: [Output]
}

extension HTTPField.Name {
    static let headerLength = HTTPField.Name("Inference-Header-Content-Length")!
}

/// A request whose inputs all travel as binary data, asking for binary outputs.
func binaryRequest(_ inputs: [Tensor], binaryOutput: Bool = true) -> (ByteBuffer, HTTPFields) {
    var json = JSONWriter()
    json.raw("{\"inputs\":[")
    for (index, tensor) in inputs.enumerated() {
        if index > 0 { json.byte(UInt8(ascii: ",")) }
        json.tensorHeader(name: tensor.name, datatype: tensor.datatype, shape: tensor.shape)
        json.raw(",\"parameters\":{\"binary_data_size\":")
        json.integer(RawTensorEncoding.byteCount(tensor))
        json.raw("}}")
    }
    json.raw("]")
    if binaryOutput { json.raw(",\"parameters\":{\"binary_data_output\":true}") }
    json.raw("}")
    let headerLength = json.buffer.readableBytes
    var body = json.buffer
    for tensor in inputs { RawTensorEncoding.encode(tensor) { body.writeBytes($0) } }
    return (body, [.headerLength: String(headerLength)])
}

/// Splits a binary response into tensors.
func decodeBinaryResponse(_ response: TestResponse) throws -> [Tensor] {
    let headerValue = try #require(response.headers[.headerLength])
    let headerLength = try #require(Int(headerValue))
    var body = response.body
    guard let json = body.readBytes(length: headerLength) else { throw TernError.invalidArgument("short response") }
    let header = try JSONDecoder().decode(V2BinaryHeader.self, from: Data(json))
    var tensors: [Tensor] = []
    for output in header.outputs {
        let datatype = try #require(DataType(rawValue: output.datatype))
        guard let bytes = body.readBytes(length: output.parameters.binary_data_size) else {
            throw TernError.invalidArgument("short binary output \(output.name)")
        }
        let contents = try bytes.withUnsafeBytes { raw in
            try RawTensorEncoding.decode(raw, datatype: datatype, count: output.shape.reduce(1, *), name: output.name)
        }
        tensors.append(try Tensor(name: output.name, datatype: datatype, shape: output.shape, contents: contents))
    }
    #expect(body.readableBytes == 0)
    return tensors
}

func expectMatches(_ outputs: [Tensor], _ golden: GoldenCase, _ label: String) {
    #expect(outputs.map(\.name) == golden.outputs.map(\.name), "\(label)")
    for (actual, expected) in zip(outputs, golden.outputs) {
        #expect(difference(actual, expected.tensor) == nil, "\(label): \(difference(actual, expected.tensor) ?? "")")
    }
}
