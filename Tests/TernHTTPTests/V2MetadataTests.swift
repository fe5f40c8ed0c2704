import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import TernCore
import TernTestSupport
import Testing

@testable import TernHTTP

@Suite("V2 REST health and metadata")
struct V2MetadataTests {
    func json(_ response: TestResponse) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
    }

    @Test("health, server metadata, model metadata, readiness and config")
    func metadata() async throws {
        let service = try fixtureService(["all_types", "gbc_zipmap"])
        try await withLiveServer(service) { client in
            try await client.execute(uri: "/v2/health/live", method: .get) { response in
                #expect(response.status == .ok)
                let object = try json(response)
                #expect(object["live"] as? Bool == true)
            }
            try await client.execute(uri: "/v2/health/ready", method: .get) { response in
                #expect(response.status == .ok)
                let object = try json(response)
                #expect(object["ready"] as? Bool == true)
            }
            try await client.execute(uri: "/v2", method: .get) { response in
                let body = try json(response)
                #expect(body["name"] as? String == "tern")
                #expect((body["extensions"] as? [String])?.contains("binary_tensor_data") == true)
            }
            for uri in ["/v2/models/all_types", "/v2/models/all_types/versions/1"] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status == .ok)
                    let body = try json(response)
                    #expect(body["name"] as? String == "all_types")
                    #expect(body["versions"] as? [String] == ["1"])
                    #expect(body["platform"] as? String == "onnxruntime_onnx")
                    let inputs = try #require(body["inputs"] as? [[String: Any]])
                    #expect(Set(inputs.compactMap { $0["datatype"] as? String }) == Set(DataType.allCases.map(\.rawValue)))
                    #expect(inputs.allSatisfy { ($0["shape"] as? [Int]) == [-1, 3] })
                }
            }
            try await client.execute(uri: "/v2/models/gbc_zipmap", method: .get) { response in
                let outputs = try #require(try json(response)["outputs"] as? [[String: Any]])
                #expect(outputs[1]["name"] as? String == "output_probability")
                #expect(outputs[1]["datatype"] as? String == "FP32")
            }
            try await client.execute(uri: "/v2/models/all_types/ready", method: .get) { response in
                #expect(response.status == .ok)
                let object = try json(response)
                #expect(object["ready"] as? Bool == true)
            }
            try await client.execute(uri: "/v2/models/all_types/versions/1/ready", method: .get) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/v2/models/all_types/config", method: .get) { response in
                let body = try json(response)
                #expect(body["max_batch_size"] as? Int == 0)
                #expect((body["input"] as? [[String: Any]])?.first?["data_type"] as? String == "TYPE_BOOL")
            }
            for (uri, status) in [
                ("/v2/models/missing", HTTPResponse.Status.notFound), ("/v2/models/all_types/versions/9", .notFound),
                ("/v2/models/missing/ready", .notFound), ("/v2/models/all_types/versions/x/ready", .notFound),
                ("/v2/unknown/route", .notFound),
            ] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status == status, "\(uri)")
                    let object = try json(response)
                    #expect(object["error"] is String, "\(uri)")
                }
            }
        }
    }

    @Test("before the models are loaded: live, but not ready, and inference is 503")
    func notReady() async throws {
        let service = try fixtureService(["logreg"], ready: false)
        try await withLiveServer(service) { client in
            try await client.execute(uri: "/v2/health/live", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v2/health/ready", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                let body = try json(response)
                #expect(body["ready"] as? Bool == false)
            }
            try await client.execute(uri: "/v2/models/logreg/ready", method: .get) { #expect($0.status == .serviceUnavailable) }
            let body = "{\"inputs\":\(try rawGoldenInputs("logreg")[0])}"
            try await client.execute(uri: "/v2/models/logreg/infer", method: .post, body: ByteBuffer(string: body)) { response in
                #expect(response.status == .serviceUnavailable)
                let message = try json(response)["error"] as? String
                #expect(message?.contains("not ready") == true)
            }
        }
        service.isReady = true
    }
}
