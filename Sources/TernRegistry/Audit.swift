import Foundation
import TernBundle

/// One change to the registry, chained to the one before by its hash.
public struct AuditEntry: Codable, Sendable, Equatable {
    public var seq: Int
    public var at: String
    public var actor: String
    /// `push`, `alias`, `unalias`, `archive`, `delete`, `load`, `unload`.
    public var action: String
    public var model: String
    public var version: Int?
    /// JSON of the state before and after, where the change has one.
    public var before: String?
    public var after: String?
    public var prevHash: String
    public var hash: String

    enum CodingKeys: String, CodingKey {
        case seq, at, actor, action, model, version, before, after, hash
        case prevHash = "prev_hash"
    }

    /// The hash before the first entry.
    public static let genesis = String(repeating: "0", count: 64)

    /// SHA-256 over the previous hash and every field, each length-prefixed so no two rows hash alike.
    public static func hash(
        prevHash: String, seq: Int, at: String, actor: String, action: String, model: String, version: Int?,
        before: String?, after: String?
    ) -> String {
        let fields = [
            prevHash, String(seq), at, actor, action, model, version.map(String.init) ?? "-",
            before ?? "-", after ?? "-",
        ]
        let text = fields.map { "\($0.utf8.count):\($0)" }.joined(separator: "|")
        return Digest.sha256(Data(text.utf8))
    }

    var computedHash: String {
        Self.hash(
            prevHash: prevHash, seq: seq, at: at, actor: actor, action: action, model: model,
            version: version, before: before, after: after)
    }
}

/// What `tern audit verify` found.
public struct AuditVerification: Codable, Sendable, Equatable {
    public var ok: Bool
    public var entries: Int
    /// The first problem found, naming the row.
    public var problem: String?

    /// Walks the chain: each row's hash must be its own, its `prev_hash` the row before's, its seq the next
    /// number, and the last row must be the head the registry recorded (so deleting the newest rows shows).
    static func verify(_ entries: [AuditEntry], headSeq: Int, headHash: String) -> AuditVerification {
        var previous = AuditEntry.genesis
        for (index, entry) in entries.enumerated() {
            let expectedSeq = index + 1
            if entry.seq != expectedSeq {
                return .init(
                    ok: false, entries: entries.count,
                    problem: "entry \(expectedSeq) is missing (found \(entry.seq) in its place): rows were deleted")
            }
            if entry.prevHash != previous {
                return .init(
                    ok: false, entries: entries.count,
                    problem: "entry \(entry.seq) does not follow entry \(entry.seq - 1): the chain is broken")
            }
            if entry.computedHash != entry.hash {
                return .init(
                    ok: false, entries: entries.count,
                    problem: "entry \(entry.seq) (\(entry.action) \(entry.model)) was edited: its hash does not match its contents")
            }
            previous = entry.hash
        }
        if entries.count != headSeq || previous != headHash {
            return .init(
                ok: false, entries: entries.count,
                problem: "the registry recorded \(headSeq) entries but \(entries.count) remain: the newest were deleted")
        }
        return .init(ok: true, entries: entries.count, problem: nil)
    }
}
