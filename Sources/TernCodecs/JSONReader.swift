import TernCore

#if canImport(Glibc)
    import Glibc
#endif

/// A JSON scanner over bytes, for decoding request bodies without building a generic object tree.
///
/// Values are read in place: objects key by key, arrays element by element, numbers straight into the
/// type the caller wants. Any value can be skipped, and its byte range kept to be read later (a tensor's
/// `data` may come before its `datatype`). Errors name the byte offset.
///
/// - Important: The reader borrows `bytes`; use it only while that buffer is alive.
public struct JSONReader {
    public let bytes: UnsafeRawBufferPointer
    private(set) var index: Int
    public let end: Int

    public init(_ bytes: UnsafeRawBufferPointer, range: Range<Int>? = nil) {
        self.bytes = bytes
        self.index = range?.lowerBound ?? 0
        self.end = range?.upperBound ?? bytes.count
    }

    // MARK: - Errors

    public func error(_ message: String) -> TernError {
        .invalidArgument("malformed JSON at byte \(index): \(message)")
    }

    // MARK: - Structure

    public mutating func skipWhitespace() {
        while index < end {
            switch bytes[index] {
            case 0x20, 0x0A, 0x0D, 0x09: index += 1
            default: return
            }
        }
    }

    /// The next significant byte, or nil at the end.
    public mutating func peek() -> UInt8? {
        skipWhitespace()
        return index < end ? bytes[index] : nil
    }

    public mutating func expect(_ byte: UInt8, _ what: String) throws(TernError) {
        guard peek() == byte else {
            throw error(index < end ? "expected \(what), found '\(Self.describe(bytes[index]))'" : "expected \(what), found end of input")
        }
        index += 1
    }

    /// Checks that only whitespace remains.
    public mutating func expectEnd() throws(TernError) {
        if peek() != nil { throw error("unexpected data after the JSON value") }
    }

    /// Reads an object, calling `body` with each key; `body` must consume the key's value. A key given twice
    /// is refused: which of the two values counts is read differently by different parsers.
    public mutating func readObject(_ body: (inout JSONReader, String) throws(TernError) -> Void) throws(TernError) {
        try expect(UInt8(ascii: "{"), "'{'")
        if peek() == UInt8(ascii: "}") {
            index += 1
            return
        }
        // The first four keys in locals (no allocation: a request's objects have about four keys), the rest in
        // a set, so that a huge object costs no quadratic time.
        var k0: String?, k1: String?, k2: String?, k3: String?
        var manyKeys: Set<String>?
        var count = 0
        while true {
            guard peek() == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let keyStart = index
            let key = try readString()
            var repeated = key == k0 || key == k1 || key == k2 || key == k3
            switch count {
            case 0: k0 = key
            case 1: k1 = key
            case 2: k2 = key
            case 3: k3 = key
            default:
                if manyKeys == nil { manyKeys = [] }
                repeated = repeated || !manyKeys!.insert(key).inserted
            }
            count += 1
            if repeated {
                index = keyStart
                throw error("the key '\(Echo.clip(key))' appears twice in one object")
            }
            try expect(UInt8(ascii: ":"), "':'")
            try body(&self, key)
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                return
            default: throw error("expected ',' or '}' in object")
            }
        }
    }

    /// Reads an array, calling `body` once per element; `body` must consume the element.
    public mutating func readArray(_ body: (inout JSONReader) throws(TernError) -> Void) throws(TernError) {
        try expect(UInt8(ascii: "["), "'['")
        if peek() == UInt8(ascii: "]") {
            index += 1
            return
        }
        while true {
            try body(&self)
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                return
            default: throw error("expected ',' or ']' in array")
            }
        }
    }

    /// Skips one value and returns its byte range.
    @discardableResult
    public mutating func skipValue(depth: Int = 0) throws(TernError) -> Range<Int> {
        guard depth < 64 else { throw error("nesting deeper than 64 levels") }
        guard let byte = peek() else { throw error("expected a value, found end of input") }
        let start = index
        switch byte {
        case UInt8(ascii: "{"):
            try readObject { (reader: inout JSONReader, _: String) throws(TernError) in try reader.skipValue(depth: depth + 1) }
        case UInt8(ascii: "["):
            try readArray { (reader: inout JSONReader) throws(TernError) in try reader.skipValue(depth: depth + 1) }
        case UInt8(ascii: "\""):
            try skipString()
        case UInt8(ascii: "t"): try readLiteral("true")
        case UInt8(ascii: "f"): try readLiteral("false")
        case UInt8(ascii: "n"): try readLiteral("null")
        default:
            _ = try readNumberToken()
        }
        return start..<index
    }

    public mutating func readLiteral(_ literal: StaticString) throws(TernError) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= end else { throw error("expected \(literal)") }
        let matches = literal.withUTF8Buffer { expected in
            (0..<count).allSatisfy { bytes[index + $0] == expected[$0] }
        }
        guard matches else { throw error("expected \(literal)") }
        index += count
    }

    /// Reads `null` if it is next.
    public mutating func readNull() throws(TernError) -> Bool {
        guard peek() == UInt8(ascii: "n") else { return false }
        try readLiteral("null")
        return true
    }

    public mutating func readBool() throws(TernError) -> Bool {
        switch peek() {
        case UInt8(ascii: "t"):
            try readLiteral("true")
            return true
        case UInt8(ascii: "f"):
            try readLiteral("false")
            return false
        default: throw error("expected true or false")
        }
    }

    // MARK: - Strings

    private mutating func skipString() throws(TernError) {
        _ = try readStringBytes()
    }

    /// Reads a string; invalid UTF-8 inside it is an error.
    public mutating func readString() throws(TernError) -> String {
        let start = index
        let raw = try readStringBytes()
        guard let string = String(validating: raw, as: UTF8.self) else {
            index = start
            throw error("string is not valid UTF-8")
        }
        return string
    }

    /// Reads a string's bytes (UTF-8, escapes resolved). Raw bytes are checked to be valid UTF-8.
    public mutating func readStringBytes() throws(TernError) -> [UInt8] {
        try expect(UInt8(ascii: "\""), "a string")
        let start = index
        // Fast path: no escapes.
        while index < end {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let result = Array(UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
                index += 1
                try validateUTF8(result, at: start)
                return result
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 { break }
            index += 1
        }
        var result = Array(UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
        while index < end {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                try validateUTF8(result, at: start)
                return result
            case UInt8(ascii: "\\"):
                index += 1
                guard index < end else { throw error("unterminated escape") }
                let escaped = bytes[index]
                index += 1
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): result.append(escaped)
                case UInt8(ascii: "b"): result.append(0x08)
                case UInt8(ascii: "f"): result.append(0x0C)
                case UInt8(ascii: "n"): result.append(0x0A)
                case UInt8(ascii: "r"): result.append(0x0D)
                case UInt8(ascii: "t"): result.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try readHex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard index + 1 < end, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                            throw error("unpaired UTF-16 surrogate in string")
                        }
                        index += 2
                        let low = try readHex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("invalid UTF-16 surrogate pair") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw error("unpaired UTF-16 surrogate in string")
                    }
                    guard let unicode = Unicode.Scalar(scalar) else { throw error("invalid \\u escape") }
                    result.append(contentsOf: Array(String(Character(unicode)).utf8))
                default:
                    index -= 1
                    throw error("invalid escape '\\\(Self.describe(escaped))'")
                }
            default:
                guard byte >= 0x20 else { throw error("control character in string") }
                result.append(byte)
                index += 1
            }
        }
        throw error("unterminated string")
    }

    private mutating func readHex4() throws(TernError) -> UInt32 {
        guard index + 4 <= end else { throw error("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw error("invalid hex digit in \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    private func validateUTF8(_ bytes: [UInt8], at offset: Int) throws(TernError) {
        // ASCII needs no decoding; anything else must be valid UTF-8.
        if bytes.allSatisfy({ $0 < 0x80 }) { return }
        if String(validating: bytes, as: UTF8.self) == nil {
            throw .invalidArgument("malformed JSON at byte \(offset): string is not valid UTF-8")
        }
    }

    // MARK: - Numbers

    /// The byte range of the number token at the current position (JSON grammar, plus NaN/Infinity/-Infinity
    /// as Python's json module writes them).
    public mutating func readNumberToken() throws(TernError) -> Range<Int> {
        _ = peek()
        let start = index
        if index < end && bytes[index] == UInt8(ascii: "-") { index += 1 }
        if index < end && (bytes[index] == UInt8(ascii: "N") || bytes[index] == UInt8(ascii: "I")) {
            if bytes[index] == UInt8(ascii: "N") { try readLiteral("NaN") } else { try readLiteral("Infinity") }
            return start..<index
        }
        let digitsStart = index
        while index < end, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") { index += 1 }
        guard index > digitsStart else {
            index = start
            if index < end { throw error("expected a value, found '\(Self.describe(bytes[index]))'") }
            throw error("expected a value, found end of input")
        }
        if index < end && bytes[index] == UInt8(ascii: ".") {
            index += 1
            let fractionStart = index
            while index < end, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") { index += 1 }
            guard index > fractionStart else { throw error("expected digits after '.'") }
        }
        if index < end && (bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E")) {
            index += 1
            if index < end && (bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-")) { index += 1 }
            let exponentStart = index
            while index < end, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") { index += 1 }
            guard index > exponentStart else { throw error("expected digits in exponent") }
        }
        return start..<index
    }

    /// Reads a number as a Double. With `forFloat32`, the result only needs to round to the right Float
    /// (or Float16), which allows a faster path for long mantissas.
    public mutating func readDouble(forFloat32: Bool = false) throws(TernError) -> Double {
        guard let first = peek() else { throw error("expected a number, found end of input") }
        guard
            first == UInt8(ascii: "-") || first == UInt8(ascii: "N") || first == UInt8(ascii: "I")
                || (first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9"))
        else { throw error("expected a number, found '\(Self.describe(first))'") }
        if let (value, next) = Self.fastDouble(bytes, from: index, to: end, forFloat32: forFloat32) {
            index = next
            return value
        }
        // Not of the fast form: check the token's grammar (throwing on a malformed one), then strtod.
        return Self.correctlyRounded(bytes, try readNumberToken())
    }

    /// Exact powers of ten as doubles (10^0 ... 10^22).
    private static let powersOfTen: [Double] = (0...22).map { exponent in
        var value = 1.0
        for _ in 0..<exponent { value *= 10 }
        return value
    }

    /// Parses a number token (already checked by ``readNumberToken()``): ``fastDouble(_:from:to:forFloat32:)``
    /// when it takes the whole token, else strtod.
    public static func parseDouble(_ bytes: UnsafeRawBufferPointer, _ token: Range<Int>, forFloat32: Bool = false) -> Double {
        if let (value, end) = fastDouble(bytes, from: token.lowerBound, to: token.upperBound, forFloat32: forFloat32),
            end == token.upperBound
        {
            return value
        }
        return correctlyRounded(bytes, token)
    }

    /// A number token through the C library's correctly rounded `strtod` (NaN and the infinities included).
    private static func correctlyRounded(_ bytes: UnsafeRawBufferPointer, _ token: Range<Int>) -> Double {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: token.count + 1) { buffer in
            for offset in 0..<token.count { buffer[offset] = CChar(bitPattern: bytes[token.lowerBound + offset]) }
            buffer[token.count] = 0
            return strtod(buffer.baseAddress!, nil)
        }
    }

    /// The number `-?digits(.digits)?([eE][+-]?digits)?` starting at `start`, read in one pass, and where it
    /// ends; nil when it is not of that form or needs strtod.
    ///
    /// Fast path (Clinger): a mantissa of at most 19 digits and a decimal exponent within ±22 give
    /// `mantissa × 10^e` from one rounding of the mantissa and one exact-operand multiply or divide. That is
    /// correctly rounded when the mantissa fits 53 bits; for longer mantissas (Python writes float32 values
    /// with 17 digits) the double is within about one ulp, far closer than the half float32 ulp that decides
    /// the Float, so it is taken only with `forFloat32`.
    public static func fastDouble(
        _ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int, forFloat32: Bool
    ) -> (Double, Int)? {
        var position = start
        guard position < end else { return nil }
        let negative = bytes[position] == UInt8(ascii: "-")
        if negative { position += 1 }
        var mantissa: UInt64 = 0
        var digits = 0
        var exponent = 0
        let integerStart = position
        while position < end {
            let digit = bytes[position] &- UInt8(ascii: "0")
            guard digit <= 9 else { break }
            guard digits < 19 else { return nil }
            mantissa = mantissa &* 10 &+ UInt64(digit)
            if mantissa != 0 { digits += 1 }
            position += 1
        }
        guard position > integerStart else { return nil }
        if position < end, bytes[position] == UInt8(ascii: ".") {
            position += 1
            let fractionStart = position
            while position < end {
                let digit = bytes[position] &- UInt8(ascii: "0")
                guard digit <= 9 else { break }
                if digits < 19 {
                    mantissa = mantissa &* 10 &+ UInt64(digit)
                    if mantissa != 0 { digits += 1 }
                    exponent -= 1
                } else if digit != 0 {
                    return nil
                }
                position += 1
            }
            guard position > fractionStart else { return nil }
        }
        if position < end, bytes[position] | 0x20 == UInt8(ascii: "e") {
            position += 1
            var exponentNegative = false
            if position < end, bytes[position] == UInt8(ascii: "-") || bytes[position] == UInt8(ascii: "+") {
                exponentNegative = bytes[position] == UInt8(ascii: "-")
                position += 1
            }
            let exponentStart = position
            var value = 0
            while position < end {
                let digit = bytes[position] &- UInt8(ascii: "0")
                guard digit <= 9 else { break }
                value = min(value * 10 + Int(digit), 100_000)
                position += 1
            }
            guard position > exponentStart else { return nil }
            exponent += exponentNegative ? -value : value
        }
        guard exponent >= -22, exponent <= 22, mantissa <= (1 << 53) || forFloat32 else { return nil }
        var value = Double(mantissa)
        if exponent < 0 { value /= powersOfTen[-exponent] } else if exponent > 0 { value *= powersOfTen[exponent] }
        return (negative ? -value : value, position)
    }

    /// Reads an integer exactly. A token with a fraction or exponent is accepted only if it is integral.
    public mutating func readInteger() throws(TernError) -> (magnitude: UInt64, negative: Bool) {
        guard let first = peek() else { throw error("expected an integer, found end of input") }
        guard first == UInt8(ascii: "-") || (first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")) else {
            throw error("expected an integer, found '\(Self.describe(first))'")
        }
        let start = index
        let token = try readNumberToken()
        var position = token.lowerBound
        let negative = bytes[position] == UInt8(ascii: "-")
        if negative { position += 1 }
        var magnitude: UInt64 = 0
        var overflow = false
        while position < token.upperBound, bytes[position] >= UInt8(ascii: "0"), bytes[position] <= UInt8(ascii: "9") {
            let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(bytes[position] - UInt8(ascii: "0")))
            overflow = overflow || o1 || o2
            magnitude = sum
            position += 1
        }
        if position < token.upperBound {
            // A fraction or exponent: accept values such as 3.0 or 1e3 that are whole numbers.
            let value = Self.parseDouble(bytes, token)
            guard value.isFinite, value == value.rounded(), abs(value) < 1.8e19 else {
                index = start
                throw error("expected an integer, found \(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[token]), as: UTF8.self))")
            }
            return (UInt64(abs(value)), value < 0)
        }
        if overflow {
            index = start
            throw error("integer out of range")
        }
        return (magnitude, negative)
    }

    public static func describe(_ byte: UInt8) -> String {
        byte >= 0x20 && byte < 0x7F ? String(UnicodeScalar(byte)) : "\\x" + String(byte, radix: 16)
    }
}
