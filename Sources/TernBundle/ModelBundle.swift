import Crypto
import Foundation
import TernCore
import ZIPFoundation

/// A bundle in memory: its manifest and files, each checked against the manifest's digest.
///
/// On disk a bundle is one zip archive (`.tern`) holding `tern.json` and the files it lists.
public struct ModelBundle: Sendable {
    public var manifest: BundleManifest
    /// File name -> contents, manifest excluded.
    public var files: [String: Data]
    /// The manifest's bytes as read from (or signed for) the archive: what a signature covers.
    public var manifestData: Data?
    /// `tern.sig`, when the bundle is signed (``TrustedKeys/verify(_:)`` checks it).
    public var signature: BundleSignature?

    /// Builds a bundle, recording every file's digest in the manifest.
    public init(manifest: BundleManifest, files: [String: Data]) {
        var manifest = manifest
        manifest.files = files.mapValues { BundleManifest.FileEntry(sha256: Digest.sha256($0), bytes: $0.count) }
        self.manifest = manifest
        self.files = files
    }

    public var model: Data { files[BundleFile.model]! }

    public func decoded<T: Decodable>(_ type: T.Type, file: String) throws(TernError) -> T? {
        guard let data = files[file] else { return nil }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw .invalidArgument("bundle file \(file) cannot be read: \(error)")
        }
    }

    /// The zip archive.
    public func archive() throws(TernError) -> Data {
        do {
            let archive = try Archive(data: Data(), accessMode: .create)
            var entries = files
            entries[BundleFile.manifest] = try manifestData ?? Self.encodeManifest(manifest)
            if let signature {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                entries[BundleFile.signature] = try encoder.encode(signature)
            }
            for name in entries.keys.sorted() {
                let data = entries[name]!
                try archive.addEntry(
                    with: name, type: .file, uncompressedSize: Int64(data.count),
                    compressionMethod: name == BundleFile.model ? .none : .deflate,
                    provider: { position, size in data.subdata(in: Int(position)..<Int(position) + size) })
            }
            guard let bytes = archive.data else { throw TernError.internalError("the zip archive has no data") }
            return bytes
        } catch let error as TernError {
            throw error
        } catch {
            throw .internalError("cannot write the bundle archive: \(error)")
        }
    }

    /// The manifest as archives hold it.
    static func encodeManifest(_ manifest: BundleManifest) throws(TernError) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            return try encoder.encode(manifest)
        } catch {
            throw .internalError("cannot encode the manifest: \(error)")
        }
    }

    /// Reads and checks an archive: a zip holding `tern.json` and exactly the files it lists, each with its
    /// recorded size and SHA-256.
    ///
    /// - Throws: ``TernError`` `invalidArgument` saying what is wrong: not a zip (or truncated), no or bad
    ///   manifest, a missing, unexpected, duplicate, oversized or altered file.
    ///
    /// The bytes are read through a temporary file: ZIPFoundation's in-memory archive traps (a range with
    /// its bounds reversed) on an entry that points past the end of the data, which the fuzzer found; its
    /// file-backed archive reads such an entry short and the checks refuse it.
    public init(archive bytes: Data, limits: BundleLimits = .init()) throws(TernError) {
        guard Self.hasEndRecord(bytes.suffix(Self.endRecordWindow)) else {
            throw .invalidArgument("not a Tern bundle: the data is not a complete zip archive (\(bytes.count) bytes)")
        }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tern-bundle-\(UUID().uuidString).zip").path
        guard FileManager.default.createFile(atPath: path, contents: bytes, attributes: [.posixPermissions: 0o600]) else {
            throw .unavailable("cannot write a temporary file to read the bundle from (\(FileManager.default.temporaryDirectory.path))")
        }
        defer { try? FileManager.default.removeItem(atPath: path) }
        try self.init(archiveFile: path, limits: limits)
    }

    /// Reads and checks an archive file (as ``init(archive:limits:)``), without holding the archive in memory.
    public init(archiveFile path: String, limits: BundleLimits = .init()) throws(TernError) {
        let archive: Archive
        do {
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            let size = try handle.seekToEnd()
            try handle.seek(toOffset: size - min(size, UInt64(Self.endRecordWindow)))
            guard Self.hasEndRecord(try handle.readToEnd() ?? Data()) else { throw TernError.invalidArgument("") }
        } catch {
            throw .invalidArgument("not a Tern bundle: the data is not a complete zip archive")
        }
        try DeflateCheck.check(file: path, limits: limits)
        do {
            archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read)
        } catch {
            throw .invalidArgument("not a Tern bundle: the data is not a complete zip archive")
        }
        // Large entries inflate to files beside the archive and are mapped, not held on the heap.
        try self.init(reading: archive, limits: limits, spool: URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }

    /// A zip ends with its end-of-central-directory record (22 bytes, then a comment of at most 65,535).
    static let endRecordWindow = 22 + 65_535

    /// Whether `tail` holds the end record's signature. ZIPFoundation looks for it byte by byte from the end
    /// of the whole archive, with a seek and a read each: 64 MB of junk cost half a minute of CPU. Junk without
    /// the record in the last 64 KiB is refused here instead.
    static func hasEndRecord(_ tail: Data) -> Bool {
        let signature: [UInt8] = [0x50, 0x4B, 0x05, 0x06]
        return tail.withUnsafeBytes { raw in
            guard raw.count >= 22 else { return false }
            for start in stride(from: raw.count - 22, through: 0, by: -1)
            where raw[start] == signature[0] && raw[start + 1] == signature[1] && raw[start + 2] == signature[2]
                && raw[start + 3] == signature[3]
            {
                return true
            }
            return false
        }
    }

    /// Nothing is inflated before its size is known to be allowed: the central directory's entries are
    /// checked first (names, duplicates, sizes per kind of file, compression ratio), then the manifest is
    /// read, then each file, whose inflated bytes may not pass the size the manifest records.
    private init(reading archive: Archive, limits: BundleLimits, spool: String? = nil) throws(TernError) {
        var entries: [String: Entry] = [:]
        var total: UInt64 = 0
        for entry in archive {
            let name = entry.path
            guard name == BundleFile.manifest || name == BundleFile.signature || BundleFile.known.contains(name) else {
                throw .invalidArgument(
                    "bundle holds an unexpected file '\(Echo.clip(name))'; allowed: "
                        + ([BundleFile.manifest, BundleFile.signature] + BundleFile.known.sorted()).joined(separator: ", "))
            }
            guard entries[name] == nil else { throw .invalidArgument("bundle holds \(name) twice") }
            guard entry.type == .file else { throw .invalidArgument("bundle entry '\(name)' is not a regular file") }
            try limits.check(name: name, bytes: entry.uncompressedSize, compressed: entry.compressedSize)
            total += entry.uncompressedSize
            guard total <= UInt64(limits.totalBytes) else {
                throw .invalidArgument("bundle inflates to more than \(limits.totalBytes) bytes in all")
            }
            entries[name] = entry
        }
        guard let manifestEntry = entries.removeValue(forKey: BundleFile.manifest) else {
            throw .invalidArgument("not a Tern bundle: no \(BundleFile.manifest) in the archive")
        }
        let manifestData = try Self.inflate(archive, manifestEntry, upTo: limits.limit(for: BundleFile.manifest)).data
        let manifest: BundleManifest
        do {
            manifest = try JSONDecoder().decode(BundleManifest.self, from: manifestData)
        } catch {
            throw .invalidArgument("\(BundleFile.manifest) is not a valid manifest: \(Self.describe(error))")
        }
        try manifest.validate()
        var signature: BundleSignature?
        if let signatureEntry = entries.removeValue(forKey: BundleFile.signature) {
            let data = try Self.inflate(archive, signatureEntry, upTo: 64 << 10).data
            do {
                signature = try JSONDecoder().decode(BundleSignature.self, from: data)
            } catch {
                throw .invalidArgument("\(BundleFile.signature) is not a valid signature: \(Self.describe(error))")
            }
        }
        if let extra = entries.keys.sorted().first(where: { manifest.files[$0] == nil }) {
            throw .invalidArgument("bundle holds \(extra), which \(BundleFile.manifest) does not list")
        }
        var contents: [String: Data] = [:]
        for (name, recorded) in manifest.files.sorted(by: { $0.key < $1.key }) {
            guard let entry = entries[name] else {
                throw .invalidArgument("bundle is missing \(name), which \(BundleFile.manifest) lists")
            }
            guard Int(entry.uncompressedSize) == recorded.bytes else {
                throw .invalidArgument(
                    "size mismatch for \(name): \(BundleFile.manifest) records \(recorded.bytes) bytes, "
                        + "the archive \(entry.uncompressedSize)")
            }
            let (data, digest) =
                if let spool, recorded.bytes > Self.spoolThreshold {
                    try Self.inflate(archive, entry, upTo: recorded.bytes, spool: spool)
                } else {
                    try Self.inflate(archive, entry, upTo: recorded.bytes)
                }
            guard digest == recorded.sha256, data.count == recorded.bytes else {
                throw .invalidArgument(
                    "checksum mismatch for \(name): \(BundleFile.manifest) records sha256 "
                        + "\(recorded.sha256) (\(recorded.bytes) bytes), the file has \(digest) (\(data.count) bytes)")
            }
            contents[name] = data
        }
        self.manifest = manifest
        self.files = contents
        self.manifestData = manifestData
        self.signature = signature
    }

    /// Entries larger than this inflate to a file and are mapped (``init(archiveFile:limits:)``).
    static let spoolThreshold = 1 << 20

    /// One entry inflated into a file in `folder`, hashed as it is written, then mapped (the file is removed
    /// at once; the mapping keeps its pages, which the kernel may drop and read again: no heap grows with it).
    private static func inflate(_ archive: Archive, _ entry: Entry, upTo limit: Int, spool folder: String) throws(TernError)
        -> (data: Data, sha256: String)
    {
        struct TooLarge: Error {}
        let path = folder + "/.inflate-\(UUID().uuidString)"
        guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]),
            let handle = FileHandle(forWritingAtPath: path)
        else {
            return try inflate(archive, entry, upTo: limit)
        }
        defer { try? FileManager.default.removeItem(atPath: path) }
        var written = 0
        var hash = SHA256()
        do {
            defer { try? handle.close() }
            _ = try archive.extract(entry, skipCRC32: false) { chunk in
                guard written + chunk.count <= limit else { throw TooLarge() }
                try handle.write(contentsOf: chunk)
                written += chunk.count
                hash.update(data: chunk)
            }
        } catch is TooLarge {
            throw .invalidArgument("bundle entry '\(entry.path)' inflates past \(limit) bytes, more than it declares")
        } catch {
            throw .invalidArgument("bundle entry '\(entry.path)' is corrupt: \(error)")
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw .internalError("cannot read back an inflated bundle entry: \(error)")
        }
        return (data, hash.finalize().map { String(format: "%02x", $0) }.joined())
    }

    /// One entry's bytes and SHA-256, refused as soon as they pass `limit` (a zip may understate a size).
    private static func inflate(_ archive: Archive, _ entry: Entry, upTo limit: Int) throws(TernError) -> (data: Data, sha256: String) {
        struct TooLarge: Error {}
        var data = Data()
        var hash = SHA256()
        do {
            _ = try archive.extract(entry, skipCRC32: false) { chunk in
                guard data.count + chunk.count <= limit else { throw TooLarge() }
                data.append(chunk)
                hash.update(data: chunk)
            }
        } catch is TooLarge {
            throw .invalidArgument("bundle entry '\(entry.path)' inflates past \(limit) bytes, more than it declares")
        } catch {
            throw .invalidArgument("bundle entry '\(entry.path)' is corrupt: \(error)")
        }
        return (data, hash.finalize().map { String(format: "%02x", $0) }.joined())
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "missing key '\(key.stringValue)'"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "wrong type at '\(context.codingPath.map(\.stringValue).joined(separator: "."))'"
        case DecodingError.dataCorrupted(let context): context.debugDescription
        default: "\(error)"
        }
    }
}

/// How large each file of a bundle may be, and how far it may inflate: checked before anything is inflated.
public struct BundleLimits: Sendable {
    /// `model.onnx` (stored as it is, or deflated).
    public var modelBytes: Int
    /// `profile.json`: per-feature statistics and a bounded sample of the reference data; `holdout.csv` too.
    public var profileBytes: Int
    /// `tern.json`, `metrics.json`, `MODEL_CARD.md`, `config.yaml`.
    public var smallFileBytes: Int
    /// Inflated size over compressed size, for entries over 1 MiB: real models and profiles stay far below it.
    public var maxCompressionRatio: Int
    /// Every entry together, inflated.
    public var totalBytes: Int = (4 << 30) + (512 << 20)

    public init(modelBytes: Int = 4 << 30, profileBytes: Int = 256 << 20, smallFileBytes: Int = 16 << 20, maxCompressionRatio: Int = 100) {
        self.modelBytes = modelBytes
        self.profileBytes = profileBytes
        self.smallFileBytes = smallFileBytes
        self.maxCompressionRatio = maxCompressionRatio
    }

    func limit(for name: String) -> Int {
        switch name {
        case BundleFile.model: modelBytes
        case BundleFile.profile, BundleFile.holdout: profileBytes
        default: smallFileBytes
        }
    }

    func check(name: String, bytes: UInt64, compressed: UInt64) throws(TernError) {
        let limit = limit(for: name)
        guard bytes <= UInt64(limit) else {
            throw .invalidArgument("bundle entry '\(name)' is \(bytes) bytes; the limit for it is \(limit)")
        }
        if bytes > 1 << 20, bytes / max(compressed, 1) > UInt64(maxCompressionRatio) {
            throw .invalidArgument(
                "bundle entry '\(name)' inflates \(bytes / max(compressed, 1)) times (\(compressed) to "
                    + "\(bytes) bytes); the limit is \(maxCompressionRatio) times")
        }
    }
}

/// Hex SHA-256 digests.
public enum Digest {
    public static func sha256(_ data: some DataProtocol) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }
}
