import Foundation
import Logging
import TernCore
import TernTestSupport
import Testing

@testable import TernServer

@Suite("tern serve, composed")
struct TernServerTests {
    @Test("loads the examples, serves them on a free port, and stops cleanly when cancelled")
    func lifecycle() async throws {
        var configuration = ServerConfiguration(modelsDirectory: Fixtures.examplesDirectory)
        configuration.host = "127.0.0.1"
        configuration.httpPort = 0
        configuration.grpcPort = 0  // tests in a suite run in parallel: never a fixed port
        configuration.runnerThreads = 2
        let server = TernServer(configuration: configuration, runtime: Fixtures.runtime, logger: Logger(label: "test"))
        let (ports, continuation) = AsyncStream.makeStream(of: (String, Int).self)
        let task = Task {
            try await server.run(
                signals: [], onHTTPReady: { continuation.yield(("http", $0)) },
                onGRPCReady: { continuation.yield(("grpc", $0)) })
        }
        var bound: [String: Int] = [:]
        for await (name, port) in ports {
            bound[name] = port
            if bound.count == 2 { break }
        }
        #expect(bound["http"]! > 0 && bound["grpc"]! > 0 && bound["http"] != bound["grpc"])
        // Loading happens beside the front-ends' start-up; wait for ready (a hang guard, not a speed check).
        for _ in 0..<3000 where !server.service.isReady { try await Task.sleep(for: .milliseconds(10)) }
        #expect(server.service.isReady)
        #expect(server.service.catalog.versions(of: "credit-risk") == [1, 2])
        let request = InferenceRequest(inputs: [
            try Tensor(name: "features", shape: [1, 10], values: [Float](repeating: 1, count: 10))
        ])
        let response = try await server.service.infer(CallContext(wire: .local)) {
            try server.service.resolve(model: "credit-risk", version: "1")
        } decode: { _ in
            request
        }
        #expect(response.outputs.map(\.name) == ["label", "probabilities"])
        task.cancel()
        _ = await task.result
    }

    @Test("a broken model folder stops the server with an error naming the file")
    func brokenRepository() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tern-broken-\(UUID())").path
        try FileManager.default.createDirectory(atPath: root + "/bad/1", withIntermediateDirectories: true)
        try Data("not onnx".utf8).write(to: URL(fileURLWithPath: root + "/bad/1/model.onnx"))
        defer { try? FileManager.default.removeItem(atPath: root) }
        var configuration = ServerConfiguration(modelsDirectory: root)
        configuration.host = "127.0.0.1"
        configuration.httpPort = 0
        configuration.grpcPort = nil
        let server = TernServer(configuration: configuration, runtime: Fixtures.runtime, logger: Logger(label: "test"))
        do {
            try await server.run(signals: [])
            Issue.record("served a broken model")
        } catch let error as TernError {
            #expect(error.message.contains(root + "/bad/1/model.onnx"))
        }
    }
}
