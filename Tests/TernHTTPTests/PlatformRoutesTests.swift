import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import TernCore
import TernTestSupport
import Testing

@testable import TernHTTP

/// KServe v1 / TF Serving, MLflow / SageMaker, Vertex AI and Azure ML formats, with the payload shapes those
/// platforms send, checked against onnxruntime's outputs.
@Suite("Platform formats over live HTTP")
struct PlatformRoutesTests {
    static let features = [
        "age", "income", "debt_ratio", "credit_lines", "late_30d", "late_90d", "loan_amount",
        "employment_years", "open_accounts", "utilization",
    ]

    /// The golden batch-64 case of a fixture: rows of each input, and the expected outputs.
    func golden(_ name: String) throws -> (inputs: [[[Double]]], strings: [[String]]?, outputs: [Tensor]) {
        let golden = try Fixtures.golden(name)[1]
        var inputs: [[[Double]]] = []
        var strings: [[String]]?
        for input in golden.inputs {
            let tensor = input.tensor
            let width = tensor.shape[1]
            if let values = tensor.values(as: Float.self) {
                inputs.append((0..<tensor.shape[0]).map { row in values[(row * width)..<((row + 1) * width)].map(Double.init) })
            } else if let text = tensor.strings {
                strings = (0..<tensor.shape[0]).map { row in Array(text[(row * width)..<((row + 1) * width)]) }
            }
        }
        return (inputs, strings, golden.outputs.map(\.tensor))
    }

    /// Decodes `{"predictions": [{"label": ..., "probabilities": [...]}, ...]}` and compares with the outputs.
    func expectPredictions(_ response: TestResponse, _ expected: [Tensor], rows: Range<Int>, _ label: String) throws {
        #expect(response.status == .ok, "\(label): \(String(buffer: response.body))")
        let body = try #require(JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
        let predictions = try #require(body["predictions"] as? [[String: Any]], "\(label)")
        #expect(predictions.count == rows.count, "\(label)")
        let labels = expected[0].values(as: Int64.self)!
        let probabilities = expected[1].values(as: Float.self)!
        for (index, row) in rows.enumerated() {
            #expect((predictions[index]["label"] as? NSNumber)?.int64Value == labels[row], "\(label) row \(row)")
            let got = try #require(predictions[index]["probabilities"] as? [Double], "\(label)")
            for (class_, value) in got.enumerated() {
                #expect(abs(value - Double(probabilities[row * 2 + class_])) < 1e-5, "\(label) row \(row)")
            }
        }
    }

    func json(_ object: Any) throws -> ByteBuffer {
        ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: object))
    }

    @Test("KServe v1 / TF Serving: status, instances, columnar inputs, versions, named feature columns")
    func kserveV1() async throws {
        let service = try fixtureService(["gbc"])
        let (inputs, _, outputs) = try golden("gbc")
        let rows = inputs[0]
        try await withLiveServer(service) { client in
            try await client.execute(uri: "/v1/models/gbc", method: .get) { response in
                let body = try #require(JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
                #expect(body["ready"] as? Bool == true)
                #expect((body["model_version_status"] as? [[String: Any]])?.first?["state"] as? String == "AVAILABLE")
            }
            try await client.execute(uri: "/v1/models/gbc:predict", method: .post, body: json(["instances": rows])) {
                try expectPredictions($0, outputs, rows: 0..<64, "instances")
            }
            try await client.execute(
                uri: "/v1/models/gbc/versions/1:predict", method: .post,
                body: json(["inputs": Array(rows[0..<5])])
            ) {
                try expectPredictions($0, outputs, rows: 0..<5, "columnar")
            }
            // Rows keyed by feature name (from the model's feature_names metadata), in a shuffled key order.
            let named = rows[0..<3].map { row in Dictionary(uniqueKeysWithValues: zip(Self.features, row)) }
            try await client.execute(uri: "/v1/models/gbc:predict", method: .post, body: json(["instances": named])) {
                try expectPredictions($0, outputs, rows: 0..<3, "named")
            }
        }
    }

    @Test("MLflow / SageMaker: /ping, dataframe_split, dataframe_records, instances, inputs, CSV in and out")
    func mlflowSageMaker() async throws {
        let service = try fixtureService(["gbc"])
        let (inputs, _, outputs) = try golden("gbc")
        let rows = inputs[0]
        try await withLiveServer(service) { client in
            try await client.execute(uri: "/ping", method: .get) { #expect($0.status == .ok) }
            // Columns in another order than the model's: matched by name.
            let order = Self.features.reversed() as [String]
            let split: [String: Any] = [
                "dataframe_split": [
                    "columns": order, "data": rows[0..<8].map { row in order.map { row[Self.features.firstIndex(of: $0)!] } },
                ]
            ]
            try await client.execute(
                uri: "/invocations", method: .post, headers: [.contentType: "application/json"],
                body: json(split)
            ) { try expectPredictions($0, outputs, rows: 0..<8, "dataframe_split") }
            let records = rows[0..<4].map { Dictionary(uniqueKeysWithValues: zip(Self.features, $0)) }
            try await client.execute(uri: "/invocations", method: .post, body: json(["dataframe_records": records])) {
                try expectPredictions($0, outputs, rows: 0..<4, "dataframe_records")
            }
            try await client.execute(uri: "/invocations", method: .post, body: json(["instances": Array(rows[0..<2])])) {
                try expectPredictions($0, outputs, rows: 0..<2, "instances")
            }
            try await client.execute(uri: "/invocations", method: .post, body: json(["inputs": Array(rows[0..<2])])) {
                try expectPredictions($0, outputs, rows: 0..<2, "inputs")
            }
            let csv = rows[0..<6].map { $0.map { "\($0)" }.joined(separator: ",") }.joined(separator: "\n")
            try await client.execute(
                uri: "/invocations", method: .post, headers: [.contentType: "text/csv"],
                body: ByteBuffer(string: csv)
            ) { try expectPredictions($0, outputs, rows: 0..<6, "csv") }
            try await client.execute(
                uri: "/invocations", method: .post,
                headers: [.contentType: "text/csv", .accept: "text/csv"],
                body: ByteBuffer(string: csv)
            ) { response in
                #expect(response.headers[.contentType] == "text/csv")
                let lines = String(buffer: response.body).split(separator: "\n")
                #expect(lines.count == 6)
                let first = lines[0].split(separator: ",").map { Double($0)! }
                #expect(Int64(first[0]) == outputs[0].values(as: Int64.self)![0])
                #expect(abs(first[1] - Double(outputs[1].values(as: Float.self)![0])) < 1e-5)
            }
        }
    }

    @Test("a model with several inputs (numbers and a string) takes records, split frames and positional CSV")
    func severalInputs() async throws {
        let service = try fixtureService(["pipeline_categorical"])
        let (inputs, strings, outputs) = try golden("pipeline_categorical")
        let income = inputs[0].map { $0[0] }
        let age = inputs[1].map { $0[0] }
        let purpose = strings!.map { $0[0] }
        try await withLiveServer(service) { client in
            let records = (0..<5).map { ["income": income[$0], "age": age[$0], "purpose": purpose[$0]] as [String: Any] }
            try await client.execute(uri: "/invocations", method: .post, body: json(["dataframe_records": records])) {
                try expectPredictions($0, outputs, rows: 0..<5, "records")
            }
            let split: [String: Any] = [
                "dataframe_split": [
                    "columns": ["purpose", "age", "income"],
                    "data": (0..<5).map { [purpose[$0], age[$0], income[$0]] as [Any] },
                ]
            ]
            try await client.execute(uri: "/invocations", method: .post, body: json(split)) {
                try expectPredictions($0, outputs, rows: 0..<5, "split")
            }
            let csv = (0..<5).map { "\(income[$0]),\(age[$0]),\(purpose[$0])" }.joined(separator: "\n")
            try await client.execute(
                uri: "/invocations", method: .post, headers: [.contentType: "text/csv"],
                body: ByteBuffer(string: csv)
            ) { try expectPredictions($0, outputs, rows: 0..<5, "csv") }
        }
    }

    @Test("Vertex AI and Azure ML: their configured health and predict routes")
    func configuredRoutes() async throws {
        let service = try fixtureService(["gbc"])
        let (inputs, _, outputs) = try golden("gbc")
        let platform = PlatformRoutesConfiguration(
            healthRoutes: ["/v1/endpoints/7/deployedModels/9", "/"],
            predictRoutes: ["/v1/endpoints/7/deployedModels/9:predict", "/score"])
        try await withLiveServer(service, platform: platform) { client in
            for route in ["/v1/endpoints/7/deployedModels/9", "/"] {
                try await client.execute(uri: route, method: .get) { #expect($0.status == .ok, "\(route)") }
            }
            for route in ["/v1/endpoints/7/deployedModels/9:predict", "/score"] {
                let body: [String: Any] = ["instances": Array(inputs[0][0..<3]), "parameters": ["confidence": 0.5]]
                try await client.execute(uri: route, method: .post, body: json(body)) {
                    try expectPredictions($0, outputs, rows: 0..<3, route)
                }
            }
        }
    }

    @Test(
        "bad payloads get a 400 naming the problem",
        arguments: [
            ("/invocations", #"{"rows": []}"#, "expected one of: instances, inputs"),
            ("/invocations", #"{"instances": []}"#, "'instances' is empty"),
            ("/invocations", #"{"instances": [[1, 2, 3]]}"#, "[1, 3]"),
            ("/invocations", #"{"instances": [[1,2,3,4,5,6,7,8,9,10], [1,2]]}"#, "rows have different lengths"),
            ("/invocations", #"{"instances": [{"age": 1, "salary": 2}]}"#, "missing features: 'income'"),
            ("/invocations", #"{"instances": [{"age": 1, "salary": 2}]}"#, "unexpected keys: 'salary'"),
            ("/invocations", #"{"instances": [["a",2,3,4,5,6,7,8,9,10]]}"#, "is not a valid FP32"),
            ("/invocations", #"{"dataframe_split": {"columns": ["age"]}}"#, "needs 'columns'"),
            ("/invocations", #"{"dataframe_split": {"columns": ["age"], "data": [[1, 2]]}}"#, "list of 1 values"),
            ("/invocations", #"[1, 2]"#, "JSON object"),
            ("/invocations", #"{"instances": "#, "malformed JSON"),
            ("/v1/models/nope:predict", #"{"instances": [[1]]}"#, "unknown model 'nope'"),
            ("/v1/models/gbc:explain", #"{}"#, "no route"),
        ])
    func badPayloads(route: String, body: String, words: String) async throws {
        let service = try fixtureService(["gbc"])
        let (inputs, _, outputs) = try golden("gbc")
        try await withLiveServer(service) { client in
            try await client.execute(uri: route, method: .post, body: ByteBuffer(string: body)) { response in
                #expect(response.status == .badRequest || response.status == .notFound, "\(route) \(body)")
                #expect(String(buffer: response.body).contains(words), "\(String(buffer: response.body))")
            }
            try await client.execute(uri: "/invocations", method: .post, body: json(["instances": [inputs[0][0]]])) {
                try expectPredictions($0, outputs, rows: 0..<1, "after a bad payload")
            }
        }
    }

    @Test("with several models, /invocations needs --default-model; CSV lines must agree in width")
    func defaults() async throws {
        let service = try fixtureService(["gbc", "logreg"])
        try await withLiveServer(service) { client in
            try await client.execute(uri: "/invocations", method: .post, body: ByteBuffer(string: #"{"instances": [[1]]}"#)) {
                #expect($0.status == .badRequest)
                #expect(String(buffer: $0.body).contains("several models are loaded (gbc, logreg)"))
            }
        }
        try await withLiveServer(service, platform: .init(defaultModel: "logreg")) { client in
            try await client.execute(
                uri: "/invocations", method: .post, headers: [.contentType: "text/csv"],
                body: ByteBuffer(string: "1,2,3,4,5,6,7,8,9,10\n1,2,3")
            ) {
                #expect($0.status == .badRequest)
                #expect(String(buffer: $0.body).contains("CSV line 2 has 3 values"))
            }
        }
    }
}
