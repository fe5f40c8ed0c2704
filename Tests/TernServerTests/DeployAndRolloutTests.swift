import Foundation
import TernCore
import TernRegistry
import Testing

@testable import TernServer

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
        let event = #"{"httpMethod": "POST", "path": "/v1/models/m:predict", "queryStringParameters": {"z": "1 2", "a": "x"},"#
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

@Suite("Rollout tallies")
struct RolloutTallyTests {
    @Test func p99IsTheBucketBoundOfTheNinetyNinthPercentile() {
        var tally = RolloutWatch.Tally()
        // 99 fast requests in the first bucket (under 11 µs), one slow one far above.
        tally.succeeded = 100
        tally.buckets[0] = 99
        tally.buckets[100] = 1
        #expect(abs(tally.p99Milliseconds! - 0.01 * 1.1) < 1e-12)
        tally.buckets[0] = 98
        tally.buckets[100] = 2
        #expect(abs(tally.p99Milliseconds! - 0.01 * pow(1.1, 101)) < 1e-9)
        #expect(RolloutWatch.Tally().p99Milliseconds == nil)
    }

    @Test func aStepsNumbersAreTheDifferenceSinceItBegan() {
        var before = RolloutWatch.Tally()
        before.succeeded = 10
        before.failed = 1
        var now = before
        now.succeeded = 110
        now.failed = 6
        now.skipped = 2
        let step = now - before
        #expect(step.requests == 105 && step.failed == 5 && step.skipped == 2)
        #expect(abs(step.errorRate - 5.0 / 105.0) < 1e-12)
    }
}

@Suite("Sticky inputs")
struct StickyInputTests {
    @Test func theSameBytesPickTheSameVersionAndBothVersionsGetSome() throws {
        let policy = TrafficPolicy(weights: [1: 50, 2: 50], stickyInput: "customer")
        try policy.validate(versions: [1, 2])
        var picked: Set<Int> = []
        for customer in 0..<64 {
            let bytes = Array(String(customer).utf8)
            let first = policy.pick(keyBytes: bytes)
            #expect(policy.pick(keyBytes: bytes) == first)
            picked.insert(first!)
        }
        #expect(picked == [1, 2])
        #expect(throws: TernError.self) {
            try TrafficPolicy(weights: [1: 1], stickyHeader: "x", stickyInput: "y").validate(versions: [1])
        }
    }
}
