import Foundation
import SQLKit
import TernCore

/// What a garbage collection found: artifacts no version references (a push killed between writing its
/// archive and registering it, or a deletion that could not remove its file) and half-written files.
public struct GarbageReport: Codable, Sendable, Equatable {
    /// The SHA-256 of each unreferenced archive removed (or, in a dry run, to be removed).
    public var artifacts: [String]
    /// Half-written files (`.partial`) removed.
    public var partials: Int
    /// Bytes freed.
    public var bytes: Int
}

extension Registry {
    /// Removes archives no version references, and half-written files, older than `minimumAge` (younger ones
    /// may belong to a push in progress elsewhere: its archive is written before its version is registered).
    /// Archives kept in the database go in the same transaction that finds them unreferenced.
    public func collectGarbage(minimumAge: Duration = .seconds(3600), dryRun: Bool = false) async throws(TernError) -> GarbageReport {
        var report = GarbageReport(artifacts: [], partials: 0, bytes: 0)
        switch artifactLocation {
        case .database:
            report = try await write {
                let rows = try await self.sql.raw(
                    """
                    SELECT sha256, LENGTH(data) AS bytes FROM tern_artifacts
                    WHERE sha256 NOT IN (SELECT sha256 FROM tern_versions) ORDER BY sha256
                    """
                ).all()
                var found = GarbageReport(artifacts: [], partials: 0, bytes: 0)
                for row in rows {
                    found.artifacts.append(try row.decode(column: "sha256", as: String.self))
                    found.bytes += try row.decode(column: "bytes", as: Int.self)
                }
                if !dryRun, !found.artifacts.isEmpty {
                    try await self.sql.raw("DELETE FROM tern_artifacts WHERE sha256 NOT IN (SELECT sha256 FROM tern_versions)").run()
                }
                return found
            }
        case .folder(let root):
            let referenced = Set(
                try await run {
                    try await self.sql.raw("SELECT DISTINCT sha256 FROM tern_versions").all().map { try $0.decode(column: "sha256", as: String.self) }
                })
            let cutoff = Date().addingTimeInterval(-Double(minimumAge.components.seconds))
            let files = FileManager.default
            for folder in (try? files.contentsOfDirectory(atPath: root)) ?? [] where folder.count == 2 {
                for name in (try? files.contentsOfDirectory(atPath: "\(root)/\(folder)")) ?? [] {
                    let path = "\(root)/\(folder)/\(name)"
                    guard let attributes = try? files.attributesOfItem(atPath: path),
                        let modified = attributes[.modificationDate] as? Date, modified < cutoff
                    else { continue }
                    let size = (attributes[.size] as? Int) ?? 0
                    if name.hasPrefix("."), name.hasSuffix(".partial") {
                        report.partials += 1
                    } else if name.hasSuffix(".tern"), !referenced.contains(String(name.dropLast(5))) {
                        report.artifacts.append(String(name.dropLast(5)))
                    } else {
                        continue
                    }
                    report.bytes += size
                    if !dryRun { try? files.removeItem(atPath: path) }
                }
            }
            report.artifacts.sort()
        }
        if !dryRun, !report.artifacts.isEmpty || report.partials > 0 {
            let detail = #"{"artifacts":\#(report.artifacts.count),"partials":\#(report.partials),"bytes":\#(report.bytes)}"#
            try await record(action: "gc", model: "*", version: nil, actor: "tern", detail: detail)
        }
        return report
    }
}
