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
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            var entries = files
            entries[BundleFile.manifest] = try encoder.encode(manifest)
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

    /// Reads and checks an archive: a zip holding `tern.json` and exactly the files it lists, each with its
    /// recorded size and SHA-256.
    ///
    /// - Throws: ``TernError`` `invalidArgument` saying what is wrong: not a zip (or truncated), no or bad
    ///   manifest, a missing, unexpected or altered file.
    public init(archive bytes: Data, maxFileBytes: Int = 4 << 30) throws(TernError) {
        let archive: Archive
        do {
            archive = try Archive(data: bytes, accessMode: .read)
        } catch {
            throw .invalidArgument("not a Tern bundle: the data is not a complete zip archive (\(bytes.count) bytes)")
        }
        var contents: [String: Data] = [:]
        for entry in archive {
            let name = entry.path
            guard name == BundleFile.manifest || BundleFile.known.contains(name) else {
                throw .invalidArgument("bundle holds an unexpected file '\(name)'; allowed: "
                    + ([BundleFile.manifest] + BundleFile.known.sorted()).joined(separator: ", "))
            }
            guard entry.type == .file, entry.uncompressedSize <= maxFileBytes else {
                throw .invalidArgument("bundle entry '\(name)' is not a regular file of at most \(maxFileBytes) bytes")
            }
            var data = Data()
            do {
                _ = try archive.extract(entry, skipCRC32: false) { data.append($0) }
            } catch {
                throw .invalidArgument("bundle entry '\(name)' is corrupt: \(error)")
            }
            contents[name] = data
        }
        guard let manifestData = contents.removeValue(forKey: BundleFile.manifest) else {
            throw .invalidArgument("not a Tern bundle: no \(BundleFile.manifest) in the archive")
        }
        let manifest: BundleManifest
        do {
            manifest = try JSONDecoder().decode(BundleManifest.self, from: manifestData)
        } catch {
            throw .invalidArgument("\(BundleFile.manifest) is not a valid manifest: \(Self.describe(error))")
        }
        try manifest.validate()
        for (name, entry) in manifest.files.sorted(by: { $0.key < $1.key }) {
            guard let data = contents[name] else {
                throw .invalidArgument("bundle is missing \(name), which \(BundleFile.manifest) lists")
            }
            let digest = Digest.sha256(data)
            guard digest == entry.sha256, data.count == entry.bytes else {
                throw .invalidArgument("checksum mismatch for \(name): \(BundleFile.manifest) records sha256 "
                    + "\(entry.sha256) (\(entry.bytes) bytes), the file has \(digest) (\(data.count) bytes)")
            }
        }
        if let extra = contents.keys.sorted().first(where: { manifest.files[$0] == nil }) {
            throw .invalidArgument("bundle holds \(extra), which \(BundleFile.manifest) does not list")
        }
        self.manifest = manifest
        self.files = contents
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

/// Hex SHA-256 digests.
public enum Digest {
    public static func sha256(_ data: some DataProtocol) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }
}
