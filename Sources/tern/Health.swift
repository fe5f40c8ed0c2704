import ArgumentParser
import AsyncHTTPClient
import Foundation

/// `tern health`: whether a server is ready, for container health checks (the image has no curl).
struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Exit 0 when a Tern server is ready (GET /v2/health/ready answers 200), 1 otherwise.",
        discussion: "Used by the container image's HEALTHCHECK. Example: tern health --server http://127.0.0.1:8000")

    @Option(
        name: [.customLong("server"), .customLong("url")],
        help: "The server (default: http://127.0.0.1:$PORT, else port 8000); --url is its old spelling.")
    var url: String?
    @Option(help: "Seconds to wait for the answer.") var timeout: Double = 3

    func run() async throws {
        let port = ProcessInfo.processInfo.environment["PORT"].flatMap(Int.init) ?? 8000
        let base = url ?? "http://127.0.0.1:\(port)"
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { _ = client.shutdown() }
        do {
            let response = try await client.execute(
                HTTPClientRequest(url: base + "/v2/health/ready"), timeout: .milliseconds(Int64(timeout * 1000)))
            _ = try? await response.body.collect(upTo: 1 << 16)
            guard response.status.code == 200 else {
                print("not ready: \(base) answered \(response.status.code)")
                throw ExitCode(1)
            }
            print("ready")
        } catch let error as ExitCode {
            throw error
        } catch {
            print("not ready: \(base): \(error)")
            throw ExitCode(1)
        }
    }
}
