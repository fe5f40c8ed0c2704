import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import TernCore
import TernTestSupport
import Testing

@testable import TernCodecs
@testable import TernHTTP

/// One malformed request and what the server must answer.
struct BadRequest: Sendable, CustomTestStringConvertible {
    var label: String
    var uri = "/v2/models/logreg/infer"
    var body: [UInt8]
    var headers: HTTPFields = [:]
    var status: HTTPResponse.Status = .badRequest
    /// Words the error message must contain (it names the problem).
    var mentions: [String]

    var testDescription: String { label }

    init(
        _ label: String, uri: String = "/v2/models/logreg/infer", _ body: String, headers: HTTPFields = [:],
        status: HTTPResponse.Status = .badRequest, mentions: [String]
    ) {
        self.label = label
        self.uri = uri
        self.body = Array(body.utf8)
        self.headers = headers
        self.status = status
        self.mentions = mentions
    }

    init(_ label: String, bytes: [UInt8], headers: HTTPFields = [:], status: HTTPResponse.Status = .badRequest, mentions: [String]) {
        self.label = label
        self.body = bytes
        self.headers = headers
        self.status = status
        self.mentions = mentions
    }
}

private let row = "[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0]"
private func input(_ fields: String) -> String { "{\"inputs\":[{\(fields)}]}" }

private let badRequests: [BadRequest] = {
    let binaryHeader = "{\"inputs\":[{\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[1,10],\"parameters\":{\"binary_data_size\":40}}]}"
    let headerLength = HTTPFields([HTTPField(name: .headerLength, value: String(binaryHeader.utf8.count))])
    let fortyBytes = [UInt8](repeating: 0, count: 40)
    return [
        BadRequest("malformed JSON", "{\"inputs\": [", mentions: ["malformed JSON"]),
        BadRequest("not an object", "[1,2,3]", mentions: ["JSON object"]),
        BadRequest("empty body", "", mentions: ["empty"]),
        BadRequest(
            "trailing garbage", input("\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[1,10],\"data\":\(row)") + "xyz",
            mentions: ["after the JSON"]),
        BadRequest(
            "wrong datatype", input("\"name\":\"features\",\"datatype\":\"INT32\",\"shape\":[1,10],\"data\":[1,2,3,4,5,6,7,8,9,10]"),
            mentions: ["features", "INT32", "FP32"]),
        BadRequest(
            "unknown datatype", input("\"name\":\"features\",\"datatype\":\"FLOAT\",\"shape\":[1,10],\"data\":\(row)"),
            mentions: ["features", "FLOAT"]),
        BadRequest(
            "wrong shape", input("\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[2,5],\"data\":\(row)"),
            mentions: ["features", "[2, 5]", "[-1, 10]"]),
        BadRequest(
            "wrong rank", input("\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[10],\"data\":\(row)"),
            mentions: ["features", "[10]"]),
        BadRequest(
            "negative shape", input("\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[-1,10],\"data\":\(row)"),
            mentions: ["features", "negative"]),
        BadRequest(
            "huge shape", input("\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[4000000000,4000000000],\"data\":\(row)"),
            mentions: ["features", "too large"]),
        BadRequest(
            "overflowing dimension", input("\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[99999999999999999999999,10],\"data\":\(row)"),
            mentions: ["out of range"]),
        BadRequest(
            "shape larger than data", input("\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[1000000,10],\"data\":\(row)"),
            mentions: ["features", "10000000 elements"]),
        BadRequest(
            "too few data elements", input("\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[1,10],\"data\":[1,2,3]"),
            mentions: ["features", "10 elements", "3"]),
        BadRequest(
            "too many data elements", input("\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[1,10],\"data\":[\(row),\(row)]"),
            mentions: ["features", "more than"]),
        BadRequest(
            "string where a number belongs",
            input("\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[1,10],\"data\":[\"a\",2,3,4,5,6,7,8,9,10]"),
            mentions: ["features", "number"]),
        BadRequest("unknown model", uri: "/v2/models/nope/infer", "{}", status: .notFound, mentions: ["nope"]),
        BadRequest("unknown version", uri: "/v2/models/logreg/versions/7/infer", "{}", status: .notFound, mentions: ["logreg", "7"]),
        BadRequest(
            "unknown input",
            "{\"inputs\":[{\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[1,10],\"data\":\(row)},"
                + "{\"name\":\"extra\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}]}", mentions: ["extra"]),
        BadRequest("missing input", "{\"inputs\":[]}", mentions: ["missing input", "features"]),
        BadRequest("no inputs key", "{\"id\":\"x\"}", mentions: ["inputs"]),
        BadRequest("input without name", input("\"datatype\":\"FP32\",\"shape\":[1,10],\"data\":\(row)"), mentions: ["name"]),
        BadRequest(
            "input given twice",
            "{\"inputs\":[{\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[1,10],\"data\":\(row)},"
                + "{\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[1,10],\"data\":\(row)}]}", mentions: ["more than once"]),
        BadRequest(
            "unknown output",
            input("\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[1,10],\"data\":\(row)").dropLast()
                + ",\"outputs\":[{\"name\":\"nope\"}]}", mentions: ["unknown output", "nope"]),
        BadRequest(
            "data and binary together",
            input("\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[1,10],\"data\":\(row),\"parameters\":{\"binary_data_size\":40}"),
            mentions: ["both"]),
        BadRequest(
            "truncated binary section", bytes: Array(binaryHeader.utf8) + fortyBytes.prefix(30), headers: headerLength,
            mentions: ["features", "40 bytes", "truncated"]),
        BadRequest(
            "extra bytes after binary", bytes: Array(binaryHeader.utf8) + fortyBytes + [1, 2], headers: headerLength,
            mentions: ["after the declared binary"]),
        BadRequest(
            "Inference-Header-Content-Length past the body", bytes: Array(binaryHeader.utf8) + fortyBytes,
            headers: [.headerLength: "99999"], mentions: ["Inference-Header-Content-Length", "99999"]),
        BadRequest(
            "Inference-Header-Content-Length inside the JSON", bytes: Array(binaryHeader.utf8) + fortyBytes,
            headers: [.headerLength: "20"], mentions: ["malformed JSON"]),
        BadRequest(
            "Inference-Header-Content-Length not a number", bytes: Array(binaryHeader.utf8) + fortyBytes,
            headers: [.headerLength: "abc"], mentions: ["Inference-Header-Content-Length"]),
        BadRequest("binary size without the header", bytes: Array(binaryHeader.utf8), mentions: ["Inference-Header-Content-Length"]),
        BadRequest(
            "binary size that contradicts the shape",
            bytes: Array(binaryHeader.replacingOccurrences(of: "40", with: "36").utf8)
                + fortyBytes.prefix(36), headers: [.headerLength: String(binaryHeader.utf8.count)], mentions: ["features", "36", "40"]),
        BadRequest(
            "non-UTF-8 bytes in a string", bytes: Array("{\"id\":\"".utf8) + [0xFF, 0xFE] + Array("\",\"inputs\":[]}".utf8),
            mentions: ["UTF-8"]),
        BadRequest("non-UTF-8 bytes outside strings", bytes: [0xC3, 0x28, 0x7B], mentions: ["malformed JSON"]),
        BadRequest(
            "compressed body", input("\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[1,10],\"data\":\(row)"),
            headers: [.contentEncoding: "gzip"], mentions: ["Content-Encoding"]),
        BadRequest(
            "classification extension",
            input("\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[1,10],\"data\":\(row)").dropLast()
                + ",\"outputs\":[{\"name\":\"label\",\"parameters\":{\"classification\":2}}]}", mentions: ["classification"]),
        BadRequest("deep nesting", String(repeating: "[", count: 200), mentions: ["malformed JSON"]),
    ]
}()

@Suite("V2 REST bad input")
struct V2BadInputTests {
    @Test("each bad request gets a 4xx naming the problem, and a good request is answered right after", arguments: badRequests)
    func badRequest(_ bad: BadRequest) async throws {
        let service = try fixtureService(["logreg"])
        let golden = try Fixtures.golden("logreg")[1]
        let good = "{\"inputs\":\(try rawGoldenInputs("logreg")[1])}"
        // Infer requests are served in the channel pipeline; the Hummingbird route must answer the same.
        for path in InferPath.allCases {
            try await withLiveServer(service, path: path) { client in
                try await client.execute(uri: bad.uri, method: .post, headers: bad.headers, body: ByteBuffer(bytes: bad.body)) { response in
                    #expect(response.status == bad.status, "\(bad.label): \(String(buffer: response.body))")
                    let body = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]
                    let message = try #require(body?["error"] as? String, "\(bad.label)")
                    for word in bad.mentions {
                        #expect(message.contains(word), "\(bad.label): '\(message)' should mention '\(word)'")
                    }
                }
                try await client.execute(uri: "/v2/models/logreg/infer", method: .post, body: ByteBuffer(string: good)) { response in
                    #expect(response.status == .ok)
                    let decoded = try JSONDecoder().decode(V2Response.self, from: Data(buffer: response.body))
                    expectMatches(decoded.outputs.map(\.tensor), golden, "after \(bad.label)")
                }
            }
        }
    }

    @Test("values out of a datatype's range and BYTES with NUL are refused")
    func typedValues() async throws {
        let service = try fixtureService(["all_types"])
        let golden = try Fixtures.golden("all_types")[0]
        try await withLiveServer(service) { client in
            var inputs = golden.inputs.map(\.tensor)
            // JSON: 256 does not fit UINT8.
            let others = inputs.filter { $0.name != "x_uint8" }
            var json = JSONWriter()
            json.raw("{\"inputs\":[{\"name\":\"x_uint8\",\"datatype\":\"UINT8\",\"shape\":[1,3],\"data\":[1,256,3]}")
            for tensor in others {
                json.byte(UInt8(ascii: ","))
                json.tensorHeader(name: tensor.name, datatype: tensor.datatype, shape: tensor.shape)
                json.raw(",\"data\":")
                json.tensorData(tensor)
                json.raw("}")
            }
            json.raw("]}")
            try await client.execute(uri: "/v2/models/all_types/infer", method: .post, body: json.buffer) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("256 is out of range for UINT8"))
            }
            let index = inputs.firstIndex { $0.datatype == .bytes }!
            inputs[index] = try Tensor(name: "x_bytes", datatype: .bytes, shape: [1, 3], contents: .strings([[97, 0], [98], [99]]))
            let (body, headers) = binaryRequest(inputs)
            try await client.execute(uri: "/v2/models/all_types/infer", method: .post, headers: headers, body: body) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("NUL"))
            }
        }
    }

    @Test("a body over the configured limit gets 413, and the server keeps serving")
    func bodyLimit() async throws {
        let service = try fixtureService(["logreg"])
        let good = "{\"inputs\":\(try rawGoldenInputs("logreg")[0])}"
        for path in InferPath.allCases {
            try await withLiveServer(service, maxRequestBytes: 4096, path: path) { client in
                let big = String(repeating: " ", count: 10_000) + good
                try await client.execute(uri: "/v2/models/logreg/infer", method: .post, body: ByteBuffer(string: big)) { response in
                    #expect(response.status == .contentTooLarge)
                    #expect(String(buffer: response.body).contains("4096"))
                }
            }
            try await withLiveServer(service, maxRequestBytes: 4096, path: path) { client in
                try await client.execute(uri: "/v2/models/logreg/infer", method: .post, body: ByteBuffer(string: good)) { response in
                    #expect(response.status == .ok)
                }
            }
        }
    }
}
