import Crypto
import Foundation
import TernCore

/// Encryption at rest of the prediction log's payloads (each record's inputs and outputs): AES-256-GCM with
/// a random nonce per value, stored as `enc:v1:<key id>:<base64 of nonce, ciphertext and tag>`.
///
/// Keys come from a file of lines `<key id> <base64 of 32 bytes>` (`openssl rand -base64 32`); the first line
/// encrypts, every line decrypts, so a key is rotated by putting a new line first and dropping the old one
/// once no record needs it. Values written without encryption are read as they are.
public struct PayloadCipher: Sendable {
    /// The id of the key new values are sealed with.
    public let currentID: String
    private let keys: [String: Data]

    public static let prefix = "enc:v1:"

    /// Reads a key file; each problem is named with the file and line.
    public init(file path: String) throws(TernError) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw .invalidArgument("cannot read the prediction log key file \(path) (--prediction-log-key)")
        }
        // As ssh does with private keys: a key file other users may read is refused.
        if let mode = (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int, mode & 0o077 != 0 {
            throw .invalidArgument(
                "the prediction log key file \(path) may be read by other users (mode \(String(mode & 0o777, radix: 8))): "
                    + "chmod 600 \(path)")
        }
        var keys: [String: Data] = [:]
        var first: String?
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let parts = trimmed.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 2, let key = Data(base64Encoded: String(parts[1])), key.count == 32,
                parts[0].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." })
            else {
                throw .invalidArgument(
                    "\(path) line \(number + 1): expected '<key id> <base64 of 32 random bytes>' "
                        + "(make one with: echo \"k1 $(openssl rand -base64 32)\")")
            }
            let id = String(parts[0])
            guard keys[id] == nil else { throw .invalidArgument("\(path) line \(number + 1): key id '\(id)' appears twice") }
            keys[id] = key
            first = first ?? id
        }
        guard let first else { throw .invalidArgument("\(path) holds no key (--prediction-log-key)") }
        self.currentID = first
        self.keys = keys
    }

    /// `text` sealed with the current key, as `enc:v1:<key id>:<base64>` (a JSON Lines file's values).
    public func seal(_ text: String) throws(TernError) -> String {
        Self.prefix + currentID + ":" + Data(try seal(bytes: Array(text.utf8))).base64EncodedString()
    }

    /// The plaintext of a sealed value (a value not sealed is returned as it is; one stored as a JSON string,
    /// as JSON Lines files hold it, too).
    public func open(_ stored: String) throws(TernError) -> String {
        var text = Substring(stored)
        if text.hasPrefix("\"" + Self.prefix), text.hasSuffix("\"") { text = text.dropFirst().dropLast() }
        guard text.hasPrefix(Self.prefix) else { return stored }
        let rest = text.dropFirst(Self.prefix.count)
        guard let colon = rest.firstIndex(of: ":") else { throw .internalError("a prediction log record is sealed in an unknown form") }
        let id = String(rest[..<colon])
        guard let combined = Data(base64Encoded: String(rest[rest.index(after: colon)...])) else {
            throw .internalError("a prediction log record encrypted with key '\(Echo.clip(id))' is not base64 (altered)")
        }
        return String(decoding: try open(bytes: Array(combined), keyID: id), as: UTF8.self)
    }

    /// `bytes` sealed with the current key (AES-GCM with a random nonce: the nonce, ciphertext and tag); the
    /// key id is the caller's to keep beside them.
    public func seal(bytes: [UInt8]) throws(TernError) -> [UInt8] {
        do {
            let box = try AES.GCM.seal(bytes, using: SymmetricKey(data: keys[currentID]!))
            guard let combined = box.combined else { throw TernError.internalError("AES-GCM gave no combined form") }
            return Array(combined)
        } catch let error as TernError {
            throw error
        } catch {
            throw .internalError("cannot encrypt the prediction log: \(error)")
        }
    }

    /// What ``seal(bytes:)`` sealed with the key `keyID`.
    public func open(bytes: [UInt8], keyID id: String) throws(TernError) -> [UInt8] {
        guard let key = keys[id] else {
            throw TernError(
                .unavailable,
                "prediction log records are encrypted with key '\(Echo.clip(id))', which the key file does not hold (--prediction-log-key)")
        }
        do {
            return Array(try AES.GCM.open(try AES.GCM.SealedBox(combined: bytes), using: SymmetricKey(data: key)))
        } catch {
            throw TernError(
                .internalError,
                "prediction log data encrypted with key '\(Echo.clip(id))' does not decrypt (altered, or another key under that id)")
        }
    }

    /// Whether `stored` was sealed (by any key).
    public static func isSealed(_ stored: String) -> Bool {
        stored.hasPrefix(prefix) || stored.hasPrefix("\"" + prefix)
    }

    /// Records with their inputs and outputs sealed (`quoted`: as JSON strings, for JSON Lines files).
    public static func seal(_ records: [PredictionRecord], with cipher: PayloadCipher?, quoted: Bool = false) throws(TernError)
        -> [PredictionRecord]
    {
        guard let cipher else { return records }
        var sealed = records
        let quote = quoted ? "\"" : ""
        for index in sealed.indices {
            sealed[index].inputs = quote + (try cipher.seal(sealed[index].inputs)) + quote
            sealed[index].outputs = quote + (try cipher.seal(sealed[index].outputs)) + quote
        }
        return sealed
    }

    /// A record as read, its inputs and outputs opened; without a cipher, a sealed record is refused saying
    /// the key file is needed.
    public static func open(_ record: PredictionRecord, with cipher: PayloadCipher?) throws(TernError) -> PredictionRecord {
        guard let cipher else {
            if isSealed(record.inputs) {
                throw TernError(.unavailable, "the prediction log's records are encrypted: give the key file (--prediction-log-key)")
            }
            return record
        }
        var opened = record
        opened.inputs = try cipher.open(record.inputs)
        opened.outputs = try cipher.open(record.outputs)
        return opened
    }
}
