import Testing

@testable import TernCore

/// YAML from others' files: what Yams's constructor traps on is an error here.
@Suite("Safe YAML")
struct SafeYAMLTests {
    static let laughs =
        (["a: &a [x, x, x, x, x, x, x, x, x, x]"]
        + (1..<7).map { level in
            let name = String(UnicodeScalar(UInt8(97 + level))), previous = String(UnicodeScalar(UInt8(96 + level)))
            return "\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 10).joined(separator: ", ") + "]"
        }).joined(separator: "\n")

    @Test(
        "keys that are not plain values, and billion laughs, are refused",
        arguments: [
            #"{"weights":, {"0": 1e308, "2": 1e308}}"#, "{[a]: 1}", "{{a: 1}: 2}", laughs,
        ])
    func refused(text: String) {
        #expect(throws: TernError.self) { try SafeYAML.load(text, source: "test.yaml") }
    }

    @Test("ordinary documents read as Yams reads them")
    func ordinary() throws {
        let value = try #require(try SafeYAML.load("a: 1\nb: [x, 2.5, true]\nc: {d: null}\n", source: "t") as? [String: Any])
        #expect(value["a"] as? Int == 1)
        let list = try #require(value["b"] as? [Any])
        #expect(list[0] as? String == "x" && list[1] as? Double == 2.5 && list[2] as? Bool == true)
        #expect((value["c"] as? [String: Any])?.keys.sorted() == ["d"])
        #expect(try SafeYAML.load("", source: "t") == nil)
        #expect((try SafeYAML.load("a: &x [1]\nb: *x", source: "t") as? [String: Any])?["b"] as? [Int] == [1])
    }
}
