import CGzip
import Foundation
import TernCore

/// Bytes read in order from a plain file, or inflated from a gzip one (`.gz`).
final class ByteSource {
    private let handle: FileHandle?
    private let gzip: gzFile?

    static func isGzip(_ path: String) -> Bool { path.hasSuffix(".gz") }

    /// Opens `path` at uncompressed byte `offset` (a gzip input inflates its way there).
    init(path: String, offset: Int64) throws(TernError) {
        if Self.isGzip(path) {
            guard let file = gzopen(path, "rb") else { throw .invalidArgument("cannot read '\(path)'") }
            gzbuffer(file, 1 << 17)
            handle = nil
            gzip = file
            if offset > 0, gzseek(file, Int(offset), SEEK_SET) != Int(offset) {
                gzclose(file)
                throw .invalidArgument("cannot read '\(path)' to byte \(offset): is it the same file?")
            }
        } else {
            guard let file = FileHandle(forReadingAtPath: path) else { throw .invalidArgument("cannot read '\(path)'") }
            handle = file
            gzip = nil
            do {
                try file.seek(toOffset: UInt64(offset))
            } catch {
                throw .invalidArgument("cannot read '\(path)': \(error)")
            }
        }
    }

    deinit {
        try? handle?.close()
        if let gzip { gzclose(gzip) }
    }

    func read(upTo count: Int) throws(TernError) -> [UInt8] {
        if let gzip {
            var buffer = [UInt8](repeating: 0, count: count)
            let read = buffer.withUnsafeMutableBytes { gzread(gzip, $0.baseAddress, UInt32(count)) }
            guard read >= 0 else { throw .invalidArgument("the gzip input is corrupt or cut short") }
            buffer.removeSubrange(Int(read)...)
            return buffer
        }
        do {
            return Array(try handle?.read(upToCount: count) ?? Data())
        } catch {
            throw .invalidArgument("cannot read the input: \(error)")
        }
    }
}

/// A run of whole lines of the input, in order: where it starts in the file and which line it starts at.
public struct LineChunk: Sendable {
    public var index: Int
    /// The byte offset of its first line, and of the byte after its last line.
    public var start: Int64
    public var end: Int64
    /// The 1-based line number of its first line in the file.
    public var firstLine: Int
    public var bytes: [UInt8]
    /// Where each line starts in `bytes` (and, last, `bytes.count`): lines without their newline.
    public var lineStarts: [Int]

    public var lineCount: Int { lineStarts.count - 1 }

    /// Line `i`'s bytes, without its newline (and a CR before it).
    public func line(_ i: Int) -> ArraySlice<UInt8> { bytes[lineRange(i)] }

    public func lineRange(_ i: Int) -> Range<Int> {
        var end = lineStarts[i + 1]
        if end > lineStarts[i], bytes[end - 1] == UInt8(ascii: "\n") { end -= 1 }
        if end > lineStarts[i], bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        return lineStarts[i]..<end
    }
}

/// Reads a file's lines in chunks of about `rowsPerChunk` lines, from a byte offset to another, reading
/// a block at a time (memory stays bounded whatever the file's size).
public final class LineChunkReader {
    private let source: ByteSource
    private let rowsPerChunk: Int
    private let end: Int64
    private var position: Int64
    private var line: Int
    private var pending: [UInt8] = []
    private var index = 0
    private static let block = 1 << 20

    /// Lines from the one at `start` (a line start) up to those starting before `end`; `firstLine` numbers
    /// the first one.
    public init(path: String, start: Int64, end: Int64, firstLine: Int, rowsPerChunk: Int) throws(TernError) {
        source = try ByteSource(path: path, offset: start)
        self.rowsPerChunk = rowsPerChunk
        self.end = end
        self.position = start
        self.line = firstLine
    }

    /// The next chunk; nil at the end of the range.
    public func next() throws(TernError) -> LineChunk? {
        var starts = [0]
        var scanned = 0
        reading: while true {
            var rangeEnds = false
            while starts.count <= rowsPerChunk {
                // A line that starts at or after `end` belongs to the next range.
                if position + Int64(starts.last!) >= end {
                    rangeEnds = true
                    break
                }
                guard let newline = pending[scanned...].firstIndex(of: UInt8(ascii: "\n")) else { break }
                scanned = newline + 1
                starts.append(scanned)
            }
            if starts.count > rowsPerChunk || rangeEnds { break reading }
            let data = try source.read(upTo: Self.block)
            if data.isEmpty {
                // The last line may have no newline.
                if starts.last! < pending.count, position + Int64(starts.last!) < end { starts.append(pending.count) }
                break reading
            }
            pending.append(contentsOf: data)
        }
        guard starts.count > 1 else { return nil }
        let consumed = starts.last!
        let bytes = Array(pending[0..<consumed])
        pending.removeFirst(consumed)
        let chunk = LineChunk(
            index: index, start: position, end: position + Int64(consumed), firstLine: line, bytes: bytes, lineStarts: starts)
        position += Int64(consumed)
        line += starts.count - 1
        index += 1
        return chunk
    }

    /// The byte offset of the first line that starts at or after `offset` (0 stays 0).
    public static func lineStart(path: String, atOrAfter offset: Int64) throws(TernError) -> Int64 {
        guard offset > 0 else { return 0 }
        guard let handle = FileHandle(forReadingAtPath: path) else { throw .invalidArgument("cannot read '\(path)'") }
        defer { try? handle.close() }
        do {
            // The line containing byte offset-1 ends at its newline; the next line starts after it.
            try handle.seek(toOffset: UInt64(offset - 1))
            var at = offset - 1
            while let data = try handle.read(upToCount: 65_536), !data.isEmpty {
                if let newline = data.firstIndex(of: UInt8(ascii: "\n")) { return at + Int64(newline - data.startIndex) + 1 }
                at += Int64(data.count)
            }
            return at
        } catch {
            throw .invalidArgument("cannot read '\(path)': \(error)")
        }
    }
}

/// A field of a line: bytes of the chunk, without reference counting.
typealias Field = Slice<UnsafeBufferPointer<UInt8>>

/// One CSV line's fields (RFC 4180 quoting within a line: "a,b" and "" inside quotes).
enum CSVFields {
    static func split(_ line: Field, into fields: inout [Field]) {
        fields.removeAll(keepingCapacity: true)
        let base = line.base
        var i = line.startIndex, start = i
        let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ",")
        var quoted = false
        while i < line.endIndex {
            let byte = base[i]
            if byte == comma {
                if !quoted {
                    fields.append(base[start..<i])
                    start = i + 1
                }
            } else if byte == quote {
                quoted.toggle()
            }
            i += 1
        }
        fields.append(base[start..<line.endIndex])
    }

    /// A field's text, unquoted.
    static func text(_ field: Field) -> String {
        var field = field
        if field.count >= 2, field.first == UInt8(ascii: "\""), field.last == UInt8(ascii: "\"") {
            field = field.dropFirst().dropLast()
            return String(decoding: field, as: UTF8.self).replacingOccurrences(of: "\"\"", with: "\"")
        }
        return String(decoding: field, as: UTF8.self)
    }

    private static let powersOfTen: [Double] = (0...22).map { (0..<$0).reduce(1.0) { value, _ in value * 10 } }

    /// A numeric field: nil when it is not a finite number (empty or NaN are missing values: NaN).
    /// Plain decimals of up to 19 significant digits and a power of ten within 10^±22 are converted
    /// directly, exactly (one correctly rounded multiplication or division of two exact doubles); anything
    /// else goes through strtod.
    static func number(_ field: Field) -> Double? {
        let base = field.base
        var i = field.startIndex, end = field.endIndex
        while i < end, base[i] == UInt8(ascii: " ") || base[i] == UInt8(ascii: "\"") { i += 1 }
        while end > i, base[end - 1] == UInt8(ascii: " ") || base[end - 1] == UInt8(ascii: "\"") { end -= 1 }
        if i == end { return .nan }
        let trimmed = base[i..<end]
        var negative = false
        if base[i] == UInt8(ascii: "-") {
            negative = true
            i += 1
        } else if base[i] == UInt8(ascii: "+") {
            i += 1
        }
        var mantissa: UInt64 = 0, significant = 0, scale = 0, digits = 0
        while i < end, base[i] &- 48 < 10 {
            if mantissa > 0 || base[i] != 48 { significant += 1 }
            mantissa = mantissa &* 10 &+ UInt64(base[i] &- 48)
            digits += 1
            i += 1
        }
        if i < end, base[i] == UInt8(ascii: ".") {
            i += 1
            while i < end, base[i] &- 48 < 10 {
                if mantissa > 0 || base[i] != 48 { significant += 1 }
                mantissa = mantissa &* 10 &+ UInt64(base[i] &- 48)
                scale -= 1
                digits += 1
                i += 1
            }
        }
        if digits > 0, i < end, base[i] | 0x20 == UInt8(ascii: "e") {
            var j = i + 1, exponentNegative = false, exponent = 0, exponentDigits = 0
            if j < end, base[j] == UInt8(ascii: "-") || base[j] == UInt8(ascii: "+") {
                exponentNegative = base[j] == UInt8(ascii: "-")
                j += 1
            }
            while j < end, base[j] &- 48 < 10, exponent < 100_000 {
                exponent = exponent * 10 + Int(base[j] &- 48)
                exponentDigits += 1
                j += 1
            }
            if exponentDigits > 0 {
                scale += exponentNegative ? -exponent : exponent
                i = j
            }
        }
        if i == end, digits > 0, significant <= 19, mantissa <= 1 << 53, abs(scale) <= 22 {
            let magnitude = scale < 0 ? Double(mantissa) / powersOfTen[-scale] : Double(mantissa) * powersOfTen[scale]
            return negative ? -magnitude : magnitude
        }
        return slowNumber(trimmed)
    }

    private static func slowNumber(_ field: Field) -> Double? {
        guard field.count < 64 else { return nil }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: field.count + 1) { buffer -> Double? in
            var i = 0
            for byte in field {
                buffer[i] = CChar(bitPattern: byte)
                i += 1
            }
            buffer[i] = 0
            var endPointer: UnsafeMutablePointer<CChar>?
            let value = strtod(buffer.baseAddress!, &endPointer)
            guard endPointer == buffer.baseAddress! + i else { return nil }
            if value.isNaN { return .nan }
            return value.isFinite ? value : nil
        }
    }
}
