import HTTPTypes
import Testing

@testable import TernHTTP

@Suite("Reading a request's header as HTTPFields' subscript reads it, without its joining")
struct HeaderValueTests {
    @Test("one field: its value; several of a name: joined as the subscript joins them; none: nil; any case")
    func valueReadsAsTheSubscript() throws {
        var fields = HTTPFields()
        fields.append(HTTPField(name: .contentLength, value: "39"))
        fields.append(HTTPField(name: .requestID, value: "first"))
        fields.append(HTTPField(name: try #require(HTTPField.Name("TraceParent")), value: "00-abc"))
        fields.append(HTTPField(name: .requestID, value: "second"))
        #expect(fields.value(.contentLength) == "39")
        #expect(fields.value(.requestID) == "first, second")
        #expect(fields.value(.requestID) == fields[.requestID])
        #expect(fields.value(try #require(HTTPField.Name("traceparent"))) == "00-abc")
        #expect(fields.value(.origin) == nil)
        #expect(HTTPFields().value(.contentLength) == nil)
    }
}
