import Crypto
import Foundation
import TernCore

/// `tern.sig`: an Ed25519 signature over the exact bytes of a bundle's `tern.json`, which records every other
/// file's SHA-256, so the signature covers the whole bundle. Not listed in the manifest (it signs it).
public struct BundleSignature: Codable, Sendable, Equatable {
    public var algorithm: String
    /// The first 16 hex digits of the SHA-256 of the raw public key.
    public var keyID: String
    /// The signing key's name, as its owner called it (informative: trust is by key, not by name).
    public var signer: String
    /// Base64.
    public var signature: String

    enum CodingKeys: String, CodingKey {
        case algorithm, signer, signature
        case keyID = "key_id"
    }

    static let algorithmName = "ed25519"
}

/// Ed25519 keys in the PEM forms OpenSSL reads and writes (`openssl genpkey -algorithm ed25519`): PKCS#8
/// private keys and SubjectPublicKeyInfo public keys, each a fixed DER prefix and the 32 raw bytes.
public enum SigningKeys {
    private static let privatePrefix: [UInt8] = [0x30, 0x2E, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]
    private static let publicPrefix: [UInt8] = [0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x03, 0x21, 0x00]

    /// A new key pair as PEM texts (private, public).
    public static func generate() -> (privatePEM: String, publicPEM: String) {
        let key = Curve25519.Signing.PrivateKey()
        return (pem("PRIVATE KEY", privatePrefix + key.rawRepresentation), pem("PUBLIC KEY", publicPrefix + key.publicKey.rawRepresentation))
    }

    public static func keyID(_ key: Curve25519.Signing.PublicKey) -> String {
        String(Digest.sha256(key.rawRepresentation).prefix(16))
    }

    /// A private key file (PEM, PKCS#8 Ed25519).
    public static func privateKey(file path: String) throws(TernError) -> Curve25519.Signing.PrivateKey {
        let raw = try der(file: path, label: "PRIVATE KEY", prefix: privatePrefix, what: "an Ed25519 private key")
        do {
            return try Curve25519.Signing.PrivateKey(rawRepresentation: raw)
        } catch {
            throw .invalidArgument("\(path) is not an Ed25519 private key")
        }
    }

    /// A public key file (PEM, SubjectPublicKeyInfo Ed25519).
    public static func publicKey(file path: String) throws(TernError) -> Curve25519.Signing.PublicKey {
        let raw = try der(file: path, label: "PUBLIC KEY", prefix: publicPrefix, what: "an Ed25519 public key")
        do {
            return try Curve25519.Signing.PublicKey(rawRepresentation: raw)
        } catch {
            throw .invalidArgument("\(path) is not an Ed25519 public key")
        }
    }

    private static func der(file path: String, label: String, prefix: [UInt8], what: String) throws(TernError) -> [UInt8] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw .invalidArgument("cannot read \(path) (\(what), PEM)")
        }
        let begin = "-----BEGIN \(label)-----", end = "-----END \(label)-----"
        guard let start = text.range(of: begin), let stop = text.range(of: end, range: start.upperBound..<text.endIndex),
            let der = Data(base64Encoded: text[start.upperBound..<stop.lowerBound].filter { !$0.isWhitespace }),
            der.count == prefix.count + 32, Array(der.prefix(prefix.count)) == prefix
        else {
            throw .invalidArgument("\(path) is not \(what) in PEM (\(begin) ... as openssl genpkey -algorithm ed25519 writes)")
        }
        return Array(der.suffix(32))
    }

    private static func pem(_ label: String, _ der: [UInt8]) -> String {
        let base64 = Data(der).base64EncodedString()
        return "-----BEGIN \(label)-----\n\(base64)\n-----END \(label)-----\n"
    }
}

/// The public keys a registry or server trusts (`--trusted-keys`: a PEM file, or a folder of `*.pub` /
/// `*.pem` files): bundles must be signed by one of them, at push and at load.
public struct TrustedKeys: Sendable {
    /// Key id -> (name, raw public key).
    public let keys: [String: (name: String, raw: Data)]

    public init(path: String) throws(TernError) {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw .invalidArgument("no trusted keys at \(path) (--trusted-keys: a public key file or a folder of them)")
        }
        let files =
            isFolder.boolValue
            ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".pub") || $0.hasSuffix(".pem") }.sorted()
                .map { "\(path)/\($0)" }
            : [path]
        var keys: [String: (name: String, raw: Data)] = [:]
        for file in files {
            let key = try SigningKeys.publicKey(file: file)
            let name = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
            keys[SigningKeys.keyID(key)] = (name, key.rawRepresentation)
        }
        guard !keys.isEmpty else { throw .invalidArgument("\(path) holds no public keys (*.pub or *.pem) (--trusted-keys)") }
        self.keys = keys
    }

    /// The name of the trusted key that signed `bundle`; refuses an unsigned bundle, one signed by a key not
    /// trusted, and one whose `tern.json` changed after signing.
    public func verify(_ bundle: ModelBundle) throws(TernError) -> String {
        guard let signature = bundle.signature, let manifest = bundle.manifestData else {
            throw .invalidArgument(
                "the bundle is not signed; this registry takes only bundles signed by a trusted key "
                    + "(tern pack --sign KEY; trusted: \(keys.values.map(\.name).sorted().joined(separator: ", ")))")
        }
        guard signature.algorithm == BundleSignature.algorithmName else {
            throw .invalidArgument("the bundle is signed with '\(Echo.clip(signature.algorithm))'; only ed25519 is accepted")
        }
        guard let trusted = keys[signature.keyID] else {
            throw .invalidArgument(
                "the bundle is signed by '\(Echo.clip(signature.signer))' (key \(Echo.clip(signature.keyID))), "
                    + "which is not a trusted key (--trusted-keys)")
        }
        guard let bytes = Data(base64Encoded: signature.signature), let key = try? Curve25519.Signing.PublicKey(rawRepresentation: trusted.raw),
            key.isValidSignature(bytes, for: manifest)
        else {
            throw .invalidArgument(
                "the bundle's signature does not match its \(BundleFile.manifest): the bundle was changed after "
                    + "'\(trusted.name)' signed it")
        }
        return trusted.name
    }
}

extension ModelBundle {
    /// Signs the bundle's manifest with `key` (named `signer`): its archive then carries `tern.sig`.
    public mutating func sign(with key: Curve25519.Signing.PrivateKey, signer: String) throws(TernError) {
        let manifest = try Self.encodeManifest(self.manifest)
        let signature: Data
        do {
            signature = try key.signature(for: manifest)
        } catch {
            throw .internalError("cannot sign the manifest: \(error)")
        }
        manifestData = manifest
        self.signature = BundleSignature(
            algorithm: BundleSignature.algorithmName, keyID: SigningKeys.keyID(key.publicKey), signer: signer,
            signature: signature.base64EncodedString())
    }
}
