import Testing

@testable import TernCore

@Suite("Request context: ids, trace context, outcomes")
struct CallContextTests {
    @Test("a client's id is kept; a long one is cut to 128 bytes; control characters become '?'; none gets a new one")
    func requestIDs() {
        #expect(CallContext(wire: WireProtocol(rawValue: "v2_rest"), requestID: "loan-7").requestID == "loan-7")
        #expect(CallContext(wire: WireProtocol(rawValue: "v2_rest"), requestID: "loan-7").clientRequestID)
        #expect(
            CallContext(wire: WireProtocol(rawValue: "v2_rest"), requestID: String(repeating: "é", count: 100)).requestID
                == String(repeating: "é", count: 64))
        #expect(CallContext(wire: WireProtocol(rawValue: "v2_rest"), requestID: "a\nb\r\u{7F}c").requestID == "a?b??c")
        let made = CallContext(wire: WireProtocol(rawValue: "v2_grpc"), requestID: "")
        #expect(!made.clientRequestID)
        #expect(made.requestID.count >= 18 && made.requestID.dropFirst(16).first == "-")
        #expect(CallContext(wire: WireProtocol(rawValue: "v2_grpc")).requestID != CallContext(wire: WireProtocol(rawValue: "v2_grpc")).requestID)
        var adopted = CallContext(wire: WireProtocol(rawValue: "v2_rest"))
        adopted.adoptBodyID("body-1")
        #expect(adopted.requestID == "body-1")
        var header = CallContext(wire: WireProtocol(rawValue: "v2_rest"), requestID: "header-1")
        header.adoptBodyID("body-1")
        #expect(header.requestID == "header-1")
    }

    @Test("traceparent: version 00 parsed; malformed, all-zero and uppercase ids ignored")
    func traceparent() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let parsed = TraceParent(header: valid)
        #expect(parsed?.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(parsed?.parentID == "00f067aa0ba902b7")
        #expect(parsed?.sampled == true)
        #expect(parsed?.header == valid)
        for bad in [
            "", "garbage", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            #expect(TraceParent(header: bad) == nil, "\(bad)")
        }
        // A later version may carry more fields.
        #expect(TraceParent(header: "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x")?.sampled == false)
    }

    @Test("outcomes: the client's errors, the server's, and queue timeouts")
    func outcomes() {
        #expect(RequestOutcome(nil) == .success)
        #expect(RequestOutcome(TernError.invalidArgument("x")) == .clientError)
        #expect(RequestOutcome(TernError.notFound("x")) == .clientError)
        #expect(RequestOutcome(TernError(.payloadTooLarge, "x")) == .clientError)
        #expect(RequestOutcome(TernError.unavailable("x")) == .serverError)
        #expect(RequestOutcome(TernError(.resourceExhausted, "x")) == .serverError)
        #expect(RequestOutcome(TernError.internalError("x")) == .serverError)
        #expect(RequestOutcome(TernError(.timedOut, "x")) == .timeout)
        #expect(RequestOutcome(CancellationError()) == .serverError)
    }

    @Test("metric label positions match allCases")
    func positions() {
        for (index, outcome) in RequestOutcome.allCases.enumerated() { #expect(VersionMetrics.index(outcome) == index) }
    }
}
