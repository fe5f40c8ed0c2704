import Foundation
import Logging
import PostgresKit
import SQLKit
import TernBundle
import TernCore
import Testing

@testable import TernRegistry

/// The registry's databases under test: SQLite always; PostgreSQL when `TERN_TEST_POSTGRES_URL` names a
/// server (scripts/test.sh starts one), each test in a database of its own.
enum TestDatabases {
    static let postgresURL = ProcessInfo.processInfo.environment["TERN_TEST_POSTGRES_URL"]

    static var kinds: [String] { postgresURL == nil ? ["sqlite"] : ["sqlite", "postgres"] }

    static func fresh(_ kind: String, artifactsInDatabase: Bool = false) async throws -> (Registry, String) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tern-registry-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let artifacts: ArtifactLocation = artifactsInDatabase ? .database : .folder(folder + "/artifacts")
        if kind == "sqlite" {
            return (try await Registry.open(database: .sqlite(path: folder + "/registry.sqlite"), artifacts: artifacts), folder)
        }
        let url = try await createDatabase()
        return (try await Registry.open(database: .postgres(url: url), artifacts: artifacts), folder)
    }

    /// Creates an empty database on the test server and returns its URL.
    static func createDatabase() async throws -> String {
        let base = try #require(postgresURL)
        let name = "tern_\(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16))"
        let admin = try await RegistryDatabase.open(.postgres(url: base), logger: Logger(label: "test"))
        try await admin.sql.raw("CREATE DATABASE \(unsafeRaw: name)").run()
        await admin.close()
        var components = URLComponents(string: base)!
        components.path = "/" + name
        return components.string!
    }
}

private let signature = ModelSignature(
    inputs: [TensorSpec(name: "x", datatype: .fp32, shape: [-1, 2])],
    outputs: [TensorSpec(name: "y", datatype: .fp32, shape: [-1])])

private func bundle(_ name: String = "m", version: Int? = nil, model: String = "model bytes") throws -> (Data, ModelBundle) {
    let bundle = ModelBundle(
        manifest: BundleManifest(name: name, version: version, producer: "test", signature: signature),
        files: [BundleFile.model: Data(model.utf8)])
    let archive = try bundle.archive()
    return (archive, try ModelBundle(archive: archive))
}

@Suite struct RegistryTests {
    @Test(arguments: TestDatabases.kinds) func lifecycleAndAudit(kind: String) async throws {
        let (registry, _) = try await TestDatabases.fresh(kind)
        let (a1, b1) = try bundle(version: 1, model: "one")
        let v1 = try await registry.push(archive: a1, bundle: b1, actor: "ana")
        #expect(v1.version == 1 && v1.state == "active" && v1.createdBy == "ana")
        let (a2, b2) = try bundle(model: "two")
        #expect(try await registry.push(archive: a2, bundle: b2, actor: "ana").version == 2)
        #expect(try await registry.archive("m", 2) == a2)

        // Duplicate version: refused, nothing changes; the same archive again is that version, unchanged.
        let before = try await registry.snapshot()
        let (other, otherBundle) = try bundle(version: 1, model: "other")
        await #expect { try await registry.push(archive: other, bundle: otherBundle, actor: "ana") } throws: {
            ($0 as? TernError)?.code == .conflict && "\($0)".contains("already has version 1")
        }
        let again = try await registry.register(archive: a1, bundle: b1, actor: "ana")
        #expect(again.record.version == 1 && !again.created)
        #expect(try await registry.register(archive: a1, bundle: b1, version: 1, actor: "ana").record.version == 1)
        // Alias to a missing version, a numeric alias: refused.
        await #expect { try await registry.setAlias(model: "m", alias: "production", version: 9, actor: "ana") } throws: {
            ($0 as? TernError)?.code == .notFound
        }
        await #expect { try await registry.setAlias(model: "m", alias: "7", version: 1, actor: "ana") } throws: {
            ($0 as? TernError)?.code == .invalidArgument
        }
        #expect(try await registry.snapshot() == before)

        try await registry.setAlias(model: "m", alias: "production", version: 1, actor: "ana")
        #expect(try await registry.model("m").defaultVersion == 1)
        // Deleting or archiving an aliased version: refused.
        await #expect { try await registry.deleteVersion(model: "m", version: 1, actor: "bo") } throws: {
            ($0 as? TernError)?.code == .conflict && "\($0)".contains("alias 'production' points at it")
        }
        await #expect { try await registry.archiveVersion(model: "m", version: 1, actor: "bo") } throws: {
            ($0 as? TernError)?.code == .conflict
        }
        try await registry.setAlias(model: "m", alias: "production", version: 2, actor: "bo")
        try await registry.archiveVersion(model: "m", version: 1, actor: "bo")
        await #expect { try await registry.setAlias(model: "m", alias: "canary", version: 1, actor: "bo") } throws: {
            ($0 as? TernError)?.code == .conflict && "\($0)".contains("archived")
        }
        try await registry.deleteVersion(model: "m", version: 1, actor: "bo")
        await #expect { try await registry.version("m", 1) } throws: { ($0 as? TernError)?.code == .notFound }
        try await registry.removeAlias(model: "m", alias: "production", actor: "bo")
        #expect(try await registry.model("m").defaultVersion == 2)

        let log = try await registry.auditLog()
        #expect(log.map(\.action) == ["push", "push", "alias", "alias", "archive", "delete", "unalias"])
        #expect(log[3].before == #"{"alias":"production","version":1}"# && log[3].after == #"{"alias":"production","version":2}"#)
        #expect(log[3].actor == "bo")
        #expect(try await registry.verifyAudit().ok)
        #expect(try await registry.headSeq() == 7)

        // An edited row, then a deleted newest row: both caught.
        let sql = await registry.database.sql
        try await sql.raw("UPDATE tern_audit SET actor = 'mallory' WHERE seq = 3").run()
        let edited = try await registry.verifyAudit()
        #expect(!edited.ok && edited.problem!.contains("entry 3 (alias m) was edited"))
        try await sql.raw("UPDATE tern_audit SET actor = 'ana' WHERE seq = 3").run()
        #expect(try await registry.verifyAudit().ok)
        try await sql.raw("DELETE FROM tern_audit WHERE seq = 7").run()
        #expect(try await registry.verifyAudit().problem?.contains("newest were deleted") == true)
        try await sql.raw("DELETE FROM tern_audit WHERE seq = 4").run()
        #expect(try await registry.verifyAudit().problem?.contains("entry 4 is missing") == true)
        await registry.close()
    }

    @Test(arguments: TestDatabases.kinds) func artifactsInTheDatabase(kind: String) async throws {
        let (registry, folder) = try await TestDatabases.fresh(kind, artifactsInDatabase: true)
        let (archive, read) = try bundle(model: String(repeating: "w", count: 100_000))
        try await registry.push(archive: archive, bundle: read, actor: "ci")
        #expect(try await registry.archive("m", 1) == archive)
        #expect(!FileManager.default.fileExists(atPath: folder + "/artifacts"))
        try await registry.deleteVersion(model: "m", version: 1, actor: "ci")
        let left = try await registry.database.sql.raw("SELECT COUNT(*) AS n FROM tern_artifacts").first()!.decode(column: "n", as: Int.self)
        #expect(left == 0)
        await registry.close()
    }

    @Test(arguments: TestDatabases.kinds) func reopeningKeepsStateAndSchema(kind: String) async throws {
        let (registry, folder) = try await TestDatabases.fresh(kind)
        let (archive, read) = try bundle()
        try await registry.push(archive: archive, bundle: read, actor: "ci")
        let location = await registry.location
        await registry.close()
        let again = try await Registry.open(database: location, artifacts: .folder(folder + "/artifacts"))
        #expect(try await again.models().map(\.name) == ["m"])
        let steps = try await again.database.sql.raw("SELECT COUNT(*) AS n FROM tern_migrations").first()!.decode(column: "n", as: Int.self)
        #expect(steps == Migrations.latest)
        await again.close()
    }

    /// The actor is reentrant: operations awaiting the database must not share its connection's transaction.
    @Test(arguments: TestDatabases.kinds) func concurrentOperationsInOneProcess(kind: String) async throws {
        let (registry, _) = try await TestDatabases.fresh(kind)
        let (archive, read) = try bundle()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for version in 1...12 {
                group.addTask {
                    try await registry.push(archive: archive, bundle: read, version: version, actor: "t\(version)")
                    try await registry.setAlias(model: "m", alias: "a\(version % 3)", version: version, actor: "t")
                    _ = try await registry.snapshot()
                }
            }
            try await group.waitForAll()
        }
        #expect(try await registry.model("m").versions.map(\.version) == Array(1...12))
        let verification = try await registry.verifyAudit()
        #expect(verification.ok && verification.entries == 24)
        await registry.close()
    }

    @Test func databaseArgumentParses() throws {
        #expect(try RegistryLocation("postgres://u:secret@h:5432/db") == .postgres(url: "postgres://u:secret@h:5432/db"))
        #expect(try RegistryLocation("data/registry.sqlite") == .sqlite(path: "data/registry.sqlite"))
        #expect(!RegistryLocation.postgres(url: "postgres://u:secret@h/db").description.contains("secret"))
        #expect(throws: TernError.self) { try RegistryLocation("mysql://h/db") }
    }
}

/// Audit details are JSON whatever a name holds: a signer's name comes from a key file.
@Test func auditDetailsEscapeEveryCharacterJSONNeedsEscaped() throws {
    for name in ["plain", "quote\"d", "back\\slash", "line\nbreak\ttab\u{01}", "ünïcode ✓", "a/b"] {
        let literal = Registry.jsonString(name)
        let parsed = try JSONSerialization.jsonObject(with: Data(#"{"signer":\#(literal)}"#.utf8)) as? [String: String]
        #expect(parsed?["signer"] == name)
    }
}
