import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// Runs Tern as an AWS Lambda function (a container image): when `AWS_LAMBDA_RUNTIME_API` is set, each
/// invocation is taken from the Runtime API (`/2018-06-01/runtime/invocation/next`), its API Gateway (REST
/// v1 or HTTP v2) or function URL event is sent to this server's own HTTP port on loopback (so every route
/// answers as it does over HTTP), and the answer is posted back as the event's response. An event that is
/// not an HTTP event is answered through the Runtime API's error route.
public struct LambdaRuntime: Sendable {
    let api: String
    let localPort: Int
    let logger: Logger
    let ready: @Sendable () -> Bool

    /// `ready`: whether the server answers (models loaded, every front-end listening); no invocation is
    /// taken before, as Lambda's init phase ends only when the function can answer.
    public init(api: String, localPort: Int, logger: Logger, ready: @escaping @Sendable () -> Bool = { true }) {
        self.api = api
        self.localPort = localPort
        self.logger = logger
        self.ready = ready
    }

    /// Takes and answers invocations until the task is cancelled.
    public func run() async {
        // The init phase: the HTTP port listens before the models finish loading.
        while !ready() {
            guard (try? await Task.sleep(for: .milliseconds(5))) != nil else { return }
        }
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { _ = client.shutdown() }
        let base = "http://\(api)/2018-06-01/runtime"
        while !Task.isCancelled {
            let id: String
            let event: ByteBuffer
            do {
                // The next invocation: this call blocks until there is one (no timeout).
                let response = try await client.execute(HTTPClientRequest(url: base + "/invocation/next"), timeout: .hours(24))
                guard let requestID = response.headers.first(name: "Lambda-Runtime-Aws-Request-Id") else {
                    logger.error("the Lambda Runtime API answered without a request id", metadata: ["status": "\(response.status.code)"])
                    try await Task.sleep(for: .milliseconds(100))
                    continue
                }
                id = requestID
                event = try await response.body.collect(upTo: 16 << 20)
            } catch {
                if Task.isCancelled { return }
                logger.error("cannot reach the Lambda Runtime API", metadata: ["api": "\(api)", "error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
                continue
            }
            do {
                let answer = try await invoke(event, client: client)
                try await post(client, base + "/invocation/\(id)/response", answer)
            } catch {
                let message = (error as? LambdaEventError)?.message ?? "\(error)"
                logger.warning("Lambda invocation failed", metadata: ["request": "\(id)", "error": "\(message)"])
                let body = (try? JSONSerialization.data(withJSONObject: ["errorMessage": message, "errorType": "TernInvocationError"])) ?? Data()
                try? await post(client, base + "/invocation/\(id)/error", body, errorType: "TernInvocationError")
            }
        }
    }

    private func post(_ client: HTTPClient, _ url: String, _ body: Data, errorType: String? = nil) async throws {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let errorType { request.headers.add(name: "Lambda-Runtime-Function-Error-Type", value: errorType) }
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await client.execute(request, timeout: .seconds(30))
        _ = try await response.body.collect(upTo: 1 << 20)
    }

    /// One event: sent to the local HTTP port, answered in API Gateway's proxy response form.
    func invoke(_ event: ByteBuffer, client: HTTPClient) async throws -> Data {
        let request = try Self.httpRequest(from: Data(buffer: event))
        var local = HTTPClientRequest(url: "http://127.0.0.1:\(localPort)" + request.path)
        local.method = HTTPMethod(rawValue: request.method)
        for (name, value) in request.headers where !["host", "content-length", "connection"].contains(name.lowercased()) {
            local.headers.add(name: name, value: value)
        }
        if !request.body.isEmpty { local.body = .bytes(ByteBuffer(bytes: request.body)) }
        let response = try await client.execute(local, timeout: .seconds(900))
        let body = try await response.body.collect(upTo: 64 << 20)
        var headers: [String: String] = [:]
        for header in response.headers where header.name.lowercased() != "content-length" { headers[header.name] = header.value }
        let bytes = Data(buffer: body)
        let contentType = response.headers.first(name: "Content-Type") ?? ""
        let text = contentType.hasPrefix("application/json") || contentType.hasPrefix("text/") ? String(data: bytes, encoding: .utf8) : nil
        let answer: [String: Any] = [
            "statusCode": Int(response.status.code), "headers": headers,
            "body": text ?? bytes.base64EncodedString(), "isBase64Encoded": text == nil,
        ]
        return try JSONSerialization.data(withJSONObject: answer, options: [.sortedKeys])
    }

    struct HTTPEvent: Equatable {
        var method: String
        var path: String
        var headers: [(String, String)]
        var body: Data

        static func == (a: HTTPEvent, b: HTTPEvent) -> Bool {
            a.method == b.method && a.path == b.path && a.body == b.body && a.headers.map { "\($0.0):\($0.1)" } == b.headers.map { "\($0.0):\($0.1)" }
        }
    }

    /// The HTTP request an API Gateway v1 (REST), v2 (HTTP API) or function URL event carries.
    static func httpRequest(from event: Data) throws(LambdaEventError) -> HTTPEvent {
        guard let object = (try? JSONSerialization.jsonObject(with: event)) as? [String: Any] else {
            throw LambdaEventError(message: "the event is not a JSON object")
        }
        let method: String, path: String
        var query = ""
        if let context = object["requestContext"] as? [String: Any], let http = context["http"] as? [String: Any],
            let verb = http["method"] as? String
        {
            // v2 (HTTP API) and function URLs.
            method = verb
            path = (object["rawPath"] as? String) ?? (http["path"] as? String) ?? "/"
            query = (object["rawQueryString"] as? String) ?? ""
        } else if let verb = object["httpMethod"] as? String {
            // v1 (REST API).
            method = verb
            path = (object["path"] as? String) ?? "/"
            if let parameters = object["queryStringParameters"] as? [String: String] {
                var components = URLComponents()
                components.queryItems = parameters.sorted { $0.key < $1.key }.map { URLQueryItem(name: $0.key, value: $0.value) }
                query = components.percentEncodedQuery ?? ""
            }
        } else {
            throw LambdaEventError(message: "not an HTTP event (API Gateway v1/v2 or a function URL): no httpMethod or requestContext.http.method")
        }
        var headers: [(String, String)] = []
        if let given = object["headers"] as? [String: String] {
            headers = given.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        }
        var body = Data()
        if let text = object["body"] as? String {
            if object["isBase64Encoded"] as? Bool == true {
                guard let decoded = Data(base64Encoded: text) else { throw LambdaEventError(message: "the event's body is not valid base64") }
                body = decoded
            } else {
                body = Data(text.utf8)
            }
        }
        return HTTPEvent(method: method, path: path + (query.isEmpty ? "" : "?" + query), headers: headers, body: body)
    }
}

struct LambdaEventError: Error {
    var message: String
}
