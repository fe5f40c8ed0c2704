import Foundation
import SQLKit
import TernCore

/// Where bundle archives are kept, by SHA-256: a folder (which several replicas may share) or the
/// registry's own database (one place to back up).
public enum ArtifactLocation: Sendable, Equatable {
    case folder(String)
    case database
}

/// Content-addressed bundle storage in a folder: `<root>/<sha[0..<2]>/<sha>.tern`, written to a temporary
/// file, flushed and renamed, so a crash never leaves a partial artifact under its final name.
struct FolderArtifacts: Sendable {
    let root: String

    func path(_ sha256: String) -> String { "\(root)/\(sha256.prefix(2))/\(sha256).tern" }

    func put(_ data: Data, sha256: String) throws(TernError) {
        let final = path(sha256)
        if FileManager.default.fileExists(atPath: final) {
            // Freshened: an unreferenced archive being pushed again must not look old to a garbage collection.
            try? FileManager.default.setAttributes([.modificationDate: Date()], ofItemAtPath: final)
            return
        }
        let folder = (final as NSString).deletingLastPathComponent
        let temporary = "\(folder)/.\(sha256).\(UUID().uuidString).partial"
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: temporary, contents: nil) else {
                throw TernError.internalError("cannot create \(temporary)")
            }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: temporary))
            try handle.write(contentsOf: data)
            try handle.synchronize()
            try handle.close()
            guard rename(temporary, final) == 0 else {
                throw TernError.internalError("cannot rename \(temporary) to \(final): errno \(errno)")
            }
        } catch let error as TernError {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw .internalError("cannot store the artifact in \(folder): \(error)")
        }
    }

    func get(_ sha256: String) throws(TernError) -> Data {
        guard let data = FileManager.default.contents(atPath: path(sha256)) else {
            throw .internalError("artifact \(sha256) is missing from \(root)")
        }
        return data
    }

    func remove(_ sha256: String) {
        try? FileManager.default.removeItem(atPath: path(sha256))
    }
}
