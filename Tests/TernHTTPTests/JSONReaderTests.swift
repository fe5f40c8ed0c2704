import Foundation
import NIOCore
import TernCore
import Testing

@testable import TernCodecs
@testable import TernHTTP

@Suite("JSON reader")
struct JSONReaderTests {
    func parse(_ text: String, forFloat32: Bool = false) -> Double {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { JSONReader.parseDouble($0, 0..<bytes.count, forFloat32: forFloat32) }
    }

    @Test("doubles parse exactly as strtod does: 100,000 random values and edge cases")
    func doubles() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<100_000 {
            let bits = UInt64.random(in: 0...UInt64.max, using: &generator)
            let value = Double(bitPattern: bits)
            guard value.isFinite else { continue }
            for text in [value.description, String(format: "%.17g", value), String(format: "%.6e", value)] {
                #expect(parse(text).bitPattern == strtod(text, nil).bitPattern, "\(text)")
            }
        }
        for text in [
            "0", "-0", "1", "0.1", "1e22", "1e23", "9007199254740993", "123456789012345678901234",
            "0.0000000000000000000000001", "1.5e-300", "2.2250738585072014e-308", "1.7976931348623157e308",
            "4.9e-324", "1e400", "-1e-400", "0.30000000000000004", "100000000000000000000000e-3",
        ] {
            #expect(parse(text).bitPattern == strtod(text, nil).bitPattern, "\(text)")
        }
        #expect(parse("NaN").isNaN)
        #expect(parse("Infinity") == .infinity && parse("-Infinity") == -.infinity)
    }

    @Test("float32 targets: 100,000 random floats written as Python writes them come back bit for bit")
    func floats() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<100_000 {
            let value = Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &generator))
            guard value.isFinite else { continue }
            for text in [String(format: "%.17g", Double(value)), value.description, Double(value).description] {
                #expect(Float(parse(text, forFloat32: true)).bitPattern == value.bitPattern, "\(text)")
            }
        }
        // Decimal text that is not a float32 value rounds as strtod-then-Float does.
        for text in ["0.1", "3.14159265358979323846", "16777217", "1e-45", "3.4028235e38", "-2.5e-7"] {
            #expect(Float(parse(text, forFloat32: true)) == Float(strtod(text, nil)), "\(text)")
        }
    }

    @Test("strings: escapes, surrogate pairs, and invalid UTF-8 or escapes are errors")
    func strings() throws {
        func read(_ bytes: [UInt8]) throws(TernError) -> String {
            var failure: TernError?
            let result = bytes.withUnsafeBytes { raw -> String? in
                var reader = JSONReader(raw)
                do throws(TernError) { return try reader.readString() } catch {
                    failure = error
                    return nil
                }
            }
            if let failure { throw failure }
            return result!
        }
        #expect(try read(Array(#""a\"b\\c\/d\n\t\u00e9\ud83d\ude00""#.utf8)) == "a\"b\\c/d\n\té😀")
        #expect(try read(Array("\"héllo ✓\"".utf8)) == "héllo ✓")
        for bad in [
            Array("\"\\ud83d\"".utf8), Array("\"\\x\"".utf8), [0x22, 0xFF, 0x22], [0x22, 0xC3, 0x22],
            Array("\"abc".utf8), [0x22, 0x01, 0x22],
        ] {
            #expect(throws: TernError.self) { try read(bad) }
        }
    }
}

@Suite("V2 request decoding")
struct V2RequestDecoderTests {
    func decode(_ json: String) throws(TernError) -> InferenceRequest {
        var body = ByteBuffer()
        body.writeString(json)
        return try V2RequestDecoder.decode(body: body, headerLength: nil).0
    }

    /// One input with its keys in `order`.
    func input(_ order: [String], data: String = "[[1.5, -2, 3e-3], [4, 5.25, 6]]", shape: String = "[2, 3]") -> String {
        let fields = ["name": "\"x\"", "datatype": "\"FP32\"", "shape": shape, "data": data]
        return "{\"inputs\": [{" + order.map { "\"\($0)\": \(fields[$0]!)" }.joined(separator: ", ") + "}]}"
    }

    @Test("numbers the one-pass parser leaves to strtod (long mantissas, large exponents, NaN) decode as strtod reads them")
    func strtodFallback() throws {
        let texts = ["0.30000000000000004", "9007199254740993", "1e300", "-2.5e-310", "123456789012345678901234", "NaN"]
        let json =
            "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP64\", \"shape\": [\(texts.count)], "
            + "\"data\": [\(texts.joined(separator: ", "))]}]}"
        let values = try #require(try decode(json).inputs[0].values(as: Double.self))
        for (value, text) in zip(values, texts) {
            #expect(value.bitPattern == strtod(text, nil).bitPattern || (value.isNaN && text == "NaN"), "\(text)")
        }
        for bad in ["1e", "1.", "-", "1.5e+"] {
            #expect(throws: TernError.self, "\(bad)") {
                try decode("{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP64\", \"shape\": [1], \"data\": [\(bad)]}]}")
            }
        }
    }

    @Test("data decodes the same whether it comes after name, datatype and shape (read in one pass) or before them")
    func keyOrder() throws {
        let orders = [
            ["name", "datatype", "shape", "data"], ["data", "name", "datatype", "shape"],
            ["name", "data", "shape", "datatype"], ["shape", "datatype", "name", "data"],
        ]
        for order in orders {
            let tensor = try decode(input(order)).inputs[0]
            #expect(tensor.shape == [2, 3])
            #expect(tensor.values(as: Float.self) == [1.5, -2, 0.003, 4, 5.25, 6], "\(order)")
        }
        // Bad data is refused with the same message on both paths.
        for (data, shape, message) in [
            ("[1, 2]", "[2, 3]", "needs 6 elements but 'data' holds 2"),
            ("[1, 2, 3, 4, 5, 6, 7]", "[2, 3]", "more than the 6 elements"),
            ("[1, \"a\", 3, 4, 5, 6]", "[2, 3]", "input 'x'"),
        ] {
            for order in [orders[0], orders[1]] {
                #expect {
                    try decode(input(order, data: data, shape: shape))
                } throws: { error in
                    (error as? TernError)?.message.contains(message) == true
                }
            }
        }
    }

    @Test("a key given twice in one object is refused, in small and large objects")
    func duplicateKeys() throws {
        for count in [2, 40] {
            let keys = (0..<count).map { "\"k\($0)\": \($0)" } + ["\"k0\": 9"]
            let bytes = Array(("{" + keys.joined(separator: ", ") + "}").utf8)
            #expect {
                try bytes.withUnsafeBytes { raw in
                    var reader = JSONReader(raw, range: 0..<raw.count)
                    try reader.readObject { (r: inout JSONReader, _: String) throws(TernError) in _ = try r.skipValue() }
                }
            } throws: { "\($0)".contains("the key 'k0' appears twice") }
        }
    }
}
