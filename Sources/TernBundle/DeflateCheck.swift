import CZipCheck
import Foundation
import TernCore

/// Checks every deflated entry of a zip file with zlib before ZIPFoundation inflates it: its stream must end
/// within the compressed size the central directory gives and inflate to no more than the size it declares.
///
/// ZIPFoundation 0.9.20 feeds zlib a whole buffer's length whatever the last read returned and loops forever
/// once reads at the end of the file return nothing; a stream that does not end within the file (found by
/// FuzzBundle) hung it. Reading the central directory here is independent of ZIPFoundation's.
enum DeflateCheck {
    struct Entry {
        var name: String
        var method: UInt16
        var compressed: UInt64
        var uncompressed: UInt64
        var localHeader: UInt64
    }

    /// - Parameter limits: each entry's declared size is held to them before anything is inflated.
    static func check(file path: String, limits: BundleLimits) throws(TernError) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw .invalidArgument("cannot read the bundle file") }
        defer { close(fd) }
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0 else { throw corrupt("the archive is empty") }
        let all = try entries(fd, size: UInt64(size))
        for entry in all { try limits.check(name: Echo.clip(entry.name), bytes: entry.uncompressed, compressed: entry.compressed) }
        // ZIPFoundation inflates every entry that is not stored, whatever method number it carries.
        if let odd = all.first(where: { $0.method != 0 && $0.method != 8 }) {
            throw corrupt("entry '\(Echo.clip(odd.name))' uses compression method \(odd.method); bundles are stored or deflated")
        }
        for entry in all where entry.method == 8 {
            let header = try read(fd, at: entry.localHeader, count: 30)
            guard header.u32(0) == 0x0403_4B50 else { throw corrupt("entry '\(Echo.clip(entry.name))' has no local header where the directory says") }
            let dataOffset = entry.localHeader + 30 + UInt64(header.u16(26)) + UInt64(header.u16(28))
            guard dataOffset <= UInt64(size), entry.compressed <= UInt64(size) - dataOffset else {
                throw corrupt("entry '\(Echo.clip(entry.name))' runs past the end of the archive")
            }
            switch tern_deflate_stream_check(fd, Int64(dataOffset), entry.compressed, entry.uncompressed) {
            case 0: continue
            case 1: throw corrupt("entry '\(Echo.clip(entry.name))': its compressed data ends before its stream does")
            case 3: throw corrupt("entry '\(Echo.clip(entry.name))' inflates past the \(entry.uncompressed) bytes it declares")
            case -1: throw .invalidArgument("cannot read the bundle file")
            default: throw corrupt("entry '\(Echo.clip(entry.name))': its compressed data is not a valid deflate stream")
            }
        }
    }

    private static func corrupt(_ why: String) -> TernError {
        .invalidArgument("not a Tern bundle: the archive is corrupt: \(why)")
    }

    /// The central directory's entries (ZIP64 sizes and offsets included).
    static func entries(_ fd: Int32, size: UInt64) throws(TernError) -> [Entry] {
        let window = min(size, UInt64(22 + 65_535))
        let tail = try read(fd, at: size - window, count: Int(window))
        guard let end = stride(from: tail.count - 22, through: 0, by: -1).first(where: { tail.u32($0) == 0x0605_4B50 }) else {
            throw corrupt("no end of central directory record")
        }
        var count = UInt64(tail.u16(end + 10))
        var directorySize = UInt64(tail.u32(end + 12))
        var directoryOffset = UInt64(tail.u32(end + 16))
        if count == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
            // The ZIP64 end record, found through its locator just before the end record.
            let locatorAt = size - window + UInt64(end)
            guard locatorAt >= 20 else { throw corrupt("ZIP64 locator missing") }
            let locator = try read(fd, at: locatorAt - 20, count: 20)
            guard locator.u32(0) == 0x0706_4B50 else { throw corrupt("ZIP64 locator missing") }
            let record = try read(fd, at: locator.u64(8), count: 56)
            guard record.u32(0) == 0x0606_4B50 else { throw corrupt("ZIP64 end record missing") }
            count = record.u64(32)
            directorySize = record.u64(40)
            directoryOffset = record.u64(48)
        }
        guard directoryOffset <= size, directorySize <= size - directoryOffset, count <= directorySize / 46 + 1 else {
            throw corrupt("the central directory lies outside the archive")
        }
        // A bundle holds a handful of files: a directory of more than 64 entries or 1 MiB is not one.
        guard count <= 64, directorySize <= 1 << 20 else {
            throw corrupt("the central directory lists \(count) entries in \(directorySize) bytes; a bundle holds a few files")
        }
        let directory = try read(fd, at: directoryOffset, count: Int(directorySize))
        var entries: [Entry] = []
        var at = 0
        for _ in 0..<count {
            guard at + 46 <= directory.count, directory.u32(at) == 0x0201_4B50 else { throw corrupt("a central directory entry is malformed") }
            let nameLength = Int(directory.u16(at + 28)), extraLength = Int(directory.u16(at + 30)), commentLength = Int(directory.u16(at + 32))
            guard at + 46 + nameLength + extraLength + commentLength <= directory.count else {
                throw corrupt("a central directory entry is malformed")
            }
            var entry = Entry(
                name: String(decoding: directory[(at + 46)..<(at + 46 + nameLength)], as: UTF8.self),
                method: directory.u16(at + 10), compressed: UInt64(directory.u32(at + 20)),
                uncompressed: UInt64(directory.u32(at + 24)), localHeader: UInt64(directory.u32(at + 42)))
            // ZIP64 extra field (0x0001): the values whose 32-bit fields are all ones, in this order.
            var extra = at + 46 + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = directory.u16(extra), length = Int(directory.u16(extra + 2))
                if id == 0x0001 {
                    var field = extra + 4
                    for keyPath in [\Entry.uncompressed, \Entry.compressed, \Entry.localHeader] where entry[keyPath: keyPath] == 0xFFFF_FFFF {
                        guard field + 8 <= extra + 4 + length, field + 8 <= extraEnd else { throw corrupt("a ZIP64 extra field is short") }
                        entry[keyPath: keyPath] = directory.u64(field)
                        field += 8
                    }
                }
                extra += 4 + length
            }
            entries.append(entry)
            at += 46 + nameLength + extraLength + commentLength
        }
        return entries
    }

    private static func read(_ fd: Int32, at offset: UInt64, count: Int) throws(TernError) -> [UInt8] {
        guard count >= 0, count <= 1 << 30 else { throw corrupt("a record is too large") }
        var bytes = [UInt8](repeating: 0, count: count)
        let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        guard got == count else { throw corrupt("a record runs past the end of the archive") }
        return bytes
    }
}

extension Array where Element == UInt8 {
    fileprivate func u16(_ at: Int) -> UInt16 { UInt16(self[at]) | UInt16(self[at + 1]) << 8 }
    fileprivate func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) | UInt32(u16(at + 2)) << 16 }
    fileprivate func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) | UInt64(u32(at + 4)) << 32 }
}
