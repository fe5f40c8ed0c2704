import Foundation
import TernCore
import Testing

@testable import TernHTTP

@Suite("Lambda events")
struct LambdaEventTests {
    @Test func httpAPIAndFunctionURLEventsBecomeRequests() throws {
        let event = #"""
            {"version": "2.0", "rawPath": "/v2/models/m/infer", "rawQueryString": "a=1&b=two",
             "headers": {"content-type": "application/json", "x-request-id": "r1"}, "body": "{\"inputs\": []}",
             "isBase64Encoded": false, "requestContext": {"http": {"method": "POST", "path": "/v2/models/m/infer"}}}
            """#
        let request = try LambdaRuntime.httpRequest(from: Data(event.utf8))
        #expect(request.method == "POST" && request.path == "/v2/models/m/infer?a=1&b=two")
        #expect(request.headers.map(\.0) == ["content-type", "x-request-id"])
        #expect(String(decoding: request.body, as: UTF8.self) == #"{"inputs": []}"#)
    }

    @Test func restAPIEventsWithBase64BodiesAndQueryParameters() throws {
        let body = Data(#"{"instances": [[1, 2]]}"#.utf8).base64EncodedString()
        let event =
            #"{"httpMethod": "POST", "path": "/v1/models/m:predict", "queryStringParameters": {"z": "1 2", "a": "x"},"#
            + #" "headers": {"Content-Type": "application/json"}, "body": "\#(body)", "isBase64Encoded": true}"#
        let request = try LambdaRuntime.httpRequest(from: Data(event.utf8))
        #expect(request.method == "POST" && request.path == "/v1/models/m:predict?a=x&z=1%202")
        #expect(String(decoding: request.body, as: UTF8.self) == #"{"instances": [[1, 2]]}"#)
    }

    @Test func otherEventsAreRefusedByName() {
        for event in [#"{"source": "aws.events"}"#, "[1]", #"{"httpMethod": "GET", "body": "@@", "isBase64Encoded": true}"#] {
            #expect(throws: LambdaEventError.self) { try LambdaRuntime.httpRequest(from: Data(event.utf8)) }
        }
    }
}
