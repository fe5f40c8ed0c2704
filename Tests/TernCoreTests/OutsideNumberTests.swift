import TernCore
import Testing

/// Numbers from outside: every value that once trapped a conversion is a 400 naming its field.
@Suite("Outside numbers: range-checked conversions")
struct OutsideNumberTests {
    @Test(
        "durations as text",
        arguments: [
            ("250ms", 0.25), ("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86_400), ("90", 90), ("0.5s", 0.5), ("1e3s", 1000),
        ])
    func durations(text: String, seconds: Double) throws {
        #expect(OutsideNumber.seconds(try OutsideNumber.duration(text: text, "interval")) == seconds)
    }

    @Test("durations that are refused", arguments: ["1e300s", "infm", "inf", "nan", "-5s", "", "s", "5x", "0x10s", "1e20", "+∞s", "5 m"])
    func refusedDurations(text: String) {
        #expect(throws: TernError.self) { try OutsideNumber.duration(text: text, "interval") }
        do {
            _ = try OutsideNumber.duration(text: text, "interval")
        } catch {
            #expect(error.code == .invalidArgument && error.message.hasPrefix("interval"))
        }
    }

    @Test("durations from YAML values: numbers and text alike")
    func values() throws {
        #expect(try OutsideNumber.duration(30, "for") == .seconds(30))
        #expect(try OutsideNumber.duration(1.5, "for") == .milliseconds(1500))
        #expect(try OutsideNumber.duration("2m", "for") == .seconds(120))
        #expect(throws: TernError.self) { try OutsideNumber.duration(1e300, "for") }
        #expect(throws: TernError.self) { try OutsideNumber.duration(Double.nan, "for") }
        #expect(throws: TernError.self) { try OutsideNumber.duration(true, "for") }
    }

    @Test(
        "integers within a range",
        arguments: [
            (1e19, false), (-1e19, false), (Double.nan, false), (Double.infinity, false), (1.7e12, true), (0, true), (-1, false),
            (32_503_680_000_000, true), (32_503_680_000_001, false), (1.5, true),
        ])
    func integers(value: Double, accepted: Bool) throws {
        let range = OutsideNumber.epochMilliseconds
        if accepted {
            #expect(try OutsideNumber.integer(value, "time", in: range) == Int64(value.rounded(.towardZero)))
        } else {
            #expect(throws: TernError.self) { try OutsideNumber.integer(value, "time", in: range) }
        }
    }

    @Test("Int64's own bounds are safe: the largest Double below 2^63 and 2^63 itself")
    func int64Edges() {
        #expect(throws: TernError.self) { try OutsideNumber.integer(9.223372036854775807e18, "n", in: Int64.min...Int64.max) }
        #expect((try? OutsideNumber.integer(-9.223372036854775808e18, "n", in: Int64.min...Int64.max)) == Int64.min)
    }

    @Test("finite numbers within a range")
    func finite() throws {
        #expect(try OutsideNumber.finite(90, "weight", in: 0...1_000_000) == 90)
        for bad in [1e308, -1, .nan, .infinity] {
            #expect(throws: TernError.self) { try OutsideNumber.finite(bad, "weight", in: 0...1_000_000) }
        }
    }

    @Test("whole numbers written as text (query parameters) within a range")
    func integerText() throws {
        #expect(try OutsideNumber.integer(text: "10000", "window", in: 1...10_000) == 10_000)
        #expect(try OutsideNumber.integer(text: " 7 ", "limit", in: 1...10_000) == 7)
        for bad in ["0", "10001", "1.5", "1e3", "", "abc", "99999999999999999999", "-1"] {
            #expect(throws: TernError.self) { try OutsideNumber.integer(text: bad, "window", in: 1...10_000) }
        }
    }
}
