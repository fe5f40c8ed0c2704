import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import TernCore
import TernTestSupport
import Testing

@testable import TernHTTP

@Suite("V2 REST inference over live HTTP")
struct V2InferenceTests {
    @Test("JSON requests get onnxruntime's outputs, batch 1 and 64", arguments: Fixtures.modelNames)
    func json(name: String) async throws {
        let service = try fixtureService([name])
        let golden = try Fixtures.golden(name)
        let bodies = try rawGoldenInputs(name)
        for path in InferPath.allCases {
            try await withLiveServer(service, path: path) { client in
                // Each case twice: once a model's run has been timed, the event loop may run it (pipelineInline).
                for (golden, inputs) in Array(zip(golden, bodies)) + Array(zip(golden, bodies)) {
                    let body = "{\"id\":\"req-\(golden.name)\",\"inputs\":\(inputs)}"
                    try await client.execute(uri: "/v2/models/\(name)/infer", method: .post, body: ByteBuffer(string: body)) { response in
                        #expect(response.status == .ok, "\(String(buffer: response.body))")
                        #expect(response.headers[.contentType] == "application/json")
                        let decoded = try JSONDecoder().decode(V2Response.self, from: Data(buffer: response.body))
                        #expect(decoded.model_name == name)
                        #expect(decoded.model_version == "1")
                        #expect(decoded.id == "req-\(golden.name)")
                        expectMatches(decoded.outputs.map(\.tensor), golden, "\(name) \(golden.name) JSON \(path)")
                    }
                }
            }
        }
        try expectRanInline(service, name)
    }

    @Test("binary tensor data both ways gets onnxruntime's outputs, batch 1 and 64", arguments: Fixtures.modelNames)
    func binary(name: String) async throws {
        let service = try fixtureService([name])
        for path in InferPath.allCases {
            try await withLiveServer(service, path: path) { client in
                for golden in try Fixtures.golden(name) + Fixtures.golden(name) {
                    let (body, headers) = binaryRequest(golden.inputs.map(\.tensor))
                    try await client.execute(uri: "/v2/models/\(name)/versions/1/infer", method: .post, headers: headers, body: body) { response in
                        #expect(response.status == .ok, "\(String(buffer: response.body))")
                        #expect(response.headers[.contentType] == "application/octet-stream")
                        expectMatches(try decodeBinaryResponse(response), golden, "\(name) \(golden.name) binary \(path)")
                    }
                }
            }
        }
        try expectRanInline(service, name)
    }

    /// A model with a batch dimension had batches run on the event loop (the pipelineInline pass).
    func expectRanInline(_ service: InferenceService, _ name: String) throws {
        let served = try service.catalog.resolve(name: name, version: nil)
        if served.model.signature.hasBatchDimension {
            #expect(try inlineBatches(service, name) > 0, "\(name) ran on the event loop")
        } else {
            #expect(served.inlineBatcher == nil)
        }
    }

    @Test("binary inputs with JSON outputs, and a per-output choice overriding the request's")
    func mixedEncodings() async throws {
        let service = try fixtureService(["gbc"])
        let golden = try Fixtures.golden("gbc")[1]
        try await withLiveServer(service) { client in
            let (body, headers) = binaryRequest(golden.inputs.map(\.tensor), binaryOutput: false)
            try await client.execute(uri: "/v2/models/gbc/infer", method: .post, headers: headers, body: body) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.headerLength] == nil)
                let decoded = try JSONDecoder().decode(V2Response.self, from: Data(buffer: response.body))
                expectMatches(decoded.outputs.map(\.tensor), golden, "binary in, JSON out")
            }
            // Output subset: only probabilities, as binary, though the request default is JSON.
            let inputs = try rawGoldenInputs("gbc")[1]
            let request = "{\"inputs\":\(inputs),\"outputs\":[{\"name\":\"probabilities\",\"parameters\":{\"binary_data\":true}}]}"
            try await client.execute(uri: "/v2/models/gbc/infer", method: .post, body: ByteBuffer(string: request)) { response in
                #expect(response.status == .ok)
                let outputs = try decodeBinaryResponse(response)
                #expect(outputs.map(\.name) == ["probabilities"])
                #expect(difference(outputs[0], golden.outputs[1].tensor) == nil)
            }
        }
    }

    @Test("nested data, parameters of every kind, and no Content-Type are accepted")
    func requestForms() async throws {
        let service = try fixtureService(["logreg"])
        let golden = try Fixtures.golden("logreg")[0]
        let row = golden.inputs[0].tensor.values(as: Float.self)!.map { "\($0)" }.joined(separator: ",")
        let body = """
            {"parameters":{"a":1,"b":2.5,"c":"x","d":true,"e":null},"inputs":[{"parameters":{"note":"hi"},
            "data":[[\(row)]],"shape":[1,10],"datatype":"FP32","name":"features"}],"outputs":[{"name":"label"}]}
            """
        try await withLiveServer(service) { client in
            try await client.execute(uri: "/v2/models/logreg/infer", method: .post, body: ByteBuffer(string: body)) { response in
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                let decoded = try JSONDecoder().decode(V2Response.self, from: Data(buffer: response.body))
                #expect(decoded.outputs.map(\.name) == ["label"])
                #expect(decoded.id == nil)
                #expect(difference(decoded.outputs[0].tensor, golden.outputs[0].tensor) == nil)
            }
        }
    }
}
