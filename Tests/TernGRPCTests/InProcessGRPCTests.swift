import Foundation
import GRPCCore
import GRPCInProcessTransport
import TernCore
import TernModelFiles
import TernONNX
import TernTestSupport
import Testing

@testable import TernGRPC

/// The gRPC service over grpc-swift-2's in-process transport: the generated client calls the real service on
/// real models, without a socket.
@Suite("gRPC in process")
struct InProcessGRPCTests {
    /// A service with credit-risk v2 (dynamic batching with preferred sizes) and every fixture model.
    static func service() throws -> InferenceService {
        let service = InferenceService()
        var batched = ModelConfig()
        batched.batching = .enabled(DynamicBatching(preferredBatchSizes: [8, 4], maxQueueDelay: .microseconds(200)))
        service.catalog.add(
            try ServedModel.loadONNX(
                name: "credit-risk", version: 2, path: Fixtures.examplesDirectory + "/credit-risk/2/model.onnx", config: batched,
                runtime: Fixtures.runtime, pool: Fixtures.pool, sessionOptions: SessionOptions()))
        for name in Fixtures.modelNames {
            service.catalog.add(
                try ServedModel.loadONNX(
                    name: name, version: 1, path: Fixtures.modelPath(name), config: ModelConfig(), runtime: Fixtures.runtime,
                    pool: Fixtures.pool, sessionOptions: SessionOptions()))
        }
        service.isReady = true
        return service
    }

    func withClient(_ body: @Sendable @escaping (Inference_GRPCInferenceService.Client<InProcessTransport.Client>) async throws -> Void) async throws
    {
        let service = try Self.service()
        let transport = InProcessTransport()
        try await withGRPCServer(transport: transport.server, services: [InferenceGRPCService(service: service)]) { _ in
            try await withGRPCClient(transport: transport.client) { client in
                try await body(Inference_GRPCInferenceService.Client(wrapping: client))
            }
        }
    }

    @Test("health, metadata and the model configuration with its dynamic batching")
    func metadataAndConfig() async throws {
        try await withClient { client in
            #expect(try await client.serverLive(Inference_ServerLiveRequest()).live)
            #expect(try await client.serverReady(Inference_ServerReadyRequest()).ready)
            var ready = Inference_ModelReadyRequest()
            ready.name = "credit-risk"
            #expect(try await client.modelReady(ready).ready)
            var request = Inference_ModelConfigRequest()
            request.name = "credit-risk"
            let config = try await client.modelConfig(request).config
            #expect(config.name == "credit-risk" && config.platform == "onnxruntime_onnx" && config.backend == "onnxruntime")
            #expect(config.input.map(\.name) == ["features"] && config.input[0].dims == [-1, 10] && config.input[0].dataType == .typeFp32)
            #expect(config.dynamicBatching.preferredBatchSize == [4, 8] && config.dynamicBatching.maxQueueDelayMicroseconds == 200)
            var plain = Inference_ModelConfigRequest()
            plain.name = "logreg"
            #expect(
                try await client.modelConfig(plain).config.hasDynamicBatching
                    == (ModelDescription(
                        try Self.service().catalog.resolve(name: "logreg", version: nil)
                    ).dynamicBatching != nil))
            var unknown = Inference_ModelConfigRequest()
            unknown.name = "nope"
            await #expect(throws: RPCError.self) { _ = try await client.modelConfig(unknown) }
        }
    }

    @Test("every fixture model's golden cases, as onnxruntime answered them", arguments: Fixtures.modelNames)
    func golden(_ name: String) async throws {
        let cases = try Fixtures.golden(name)
        try await withClient { client in
            for golden in cases {
                var request = Inference_ModelInferRequest()
                request.modelName = name
                for input in golden.inputs {
                    var tensor = Inference_ModelInferRequest.InferInputTensor()
                    tensor.name = input.name
                    tensor.datatype = input.datatype.rawValue
                    tensor.shape = input.shape.map(Int64.init)
                    request.inputs.append(tensor)
                    var bytes = Data()
                    RawTensorEncoding.encode(input.tensor) { bytes.append(contentsOf: $0) }
                    request.rawInputContents.append(bytes)
                }
                let response = try await client.modelInfer(request)
                #expect(response.modelName == name && response.modelVersion == "1")
                for expected in golden.outputs {
                    guard let index = response.outputs.firstIndex(where: { $0.name == expected.name }) else {
                        Issue.record("\(name) \(golden.name): no output \(expected.name)")
                        continue
                    }
                    let output = response.outputs[index]
                    let datatype = try #require(DataType(rawValue: output.datatype))
                    let shape = output.shape.map(Int.init)
                    let contents = try response.rawOutputContents[index].withUnsafeBytes { bytes in
                        try RawTensorEncoding.decode(bytes, datatype: datatype, count: shape.reduce(1, *), name: output.name)
                    }
                    let actual = try Tensor(name: output.name, datatype: datatype, shape: shape, contents: contents)
                    if let problem = difference(actual, expected.tensor) { Issue.record("\(name) \(golden.name): \(problem)") }
                }
            }
        }
    }
}
