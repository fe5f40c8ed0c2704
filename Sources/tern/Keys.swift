import ArgumentParser
import Foundation
import TernBundle
import TernCore
import TernRegistry

/// `tern keys create|list|revoke`: the API keys a server accepts, kept in the registry (only a salted hash).
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Create, list and revoke the API keys servers accept.",
        discussion: """
            Keys live in the registry (--data, --database, or a server's API with --server and an admin key). A server \
            whose registry holds a key refuses requests without one; each key has scopes (infer, read, admin, metrics) \
            and may be limited to some models. Clients send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY' \
            (gRPC: the same metadata). A revoked key is refused by every server within its --poll-interval. \
            See docs/security.md.
            """,
        subcommands: [Create.self, List.self, Revoke.self, CreateSigning.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a key and print it (the only time it is shown).")

        @Argument(help: "The key's name, as the audit trail and logs show it (key:NAME).")
        var name: String

        @Option(help: ArgumentHelp("What the key may do: infer, read, admin (implies read), metrics; comma-separated.", valueName: "scopes"))
        var scopes: String

        @Option(help: ArgumentHelp("Limit the key to these models (comma-separated; default: all).", valueName: "names"))
        var grant: String?

        /// The old spelling of --grant (--models names the model folder everywhere else).
        @Option(name: .customLong("models"), help: .hidden)
        var oldGrant: String?

        @Option(help: ArgumentHelp("When the key stops working: an age (90d, 12h) or an RFC 3339 time; default: never.", valueName: "when"))
        var expires: String?

        @Flag(help: "Print the key and its record as JSON.")
        var json = false

        @OptionGroup var registry: RegistryOptions
        @OptionGroup var changes: ChangeOptions

        func run() async throws {
            let scopes: Set<Scope>
            do {
                scopes = try Scope.parseList(self.scopes)
            } catch {
                throw ValidationError(error.message)
            }
            if oldGrant != nil {
                FileHandle.standardError.write(
                    Data("tern keys create: --models is now --grant (--models will stop working in the next release)\n".utf8))
            }
            if grant != nil, oldGrant != nil { throw ValidationError("give --grant once (--models is its old spelling)") }
            let models = (grant ?? oldGrant).map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
            try await withRegistry(registry, changes: changes) { client in
                let (record, key) = try await client.createKey(name: name, scopes: scopes, models: models, expires: expires)
                if json {
                    struct Created: Encodable {
                        var key: String
                        var record: APIKeyRecord
                    }
                    try printJSON(Created(key: key, record: record))
                } else {
                    print(key)
                    FileHandle.standardError.write(
                        Data(
                            ("key '\(record.name)' created (scopes \(record.scopes.map(\.rawValue).joined(separator: ",")); "
                                + "models \(record.models?.joined(separator: ",") ?? "all"); expires \(record.expiresAt ?? "never")). "
                                + "Store it now: it is not shown again.\n").utf8))
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List the keys (never their secrets).")

        @Flag(help: "Print JSON.")
        var json = false

        @OptionGroup var registry: RegistryOptions

        func run() async throws {
            try await withRegistry(registry) { client in
                let keys = try await client.keys()
                if json { return try printJSON(keys) }
                let now = Date()
                var rows = [["NAME", "ID", "SCOPES", "MODELS", "CREATED", "EXPIRES", "STATE"]]
                for key in keys {
                    let state = key.revokedAt != nil ? "revoked" : (key.expiry.map { $0 <= now } == true ? "expired" : "active")
                    rows.append([
                        key.name, key.id, key.scopes.map(\.rawValue).joined(separator: ","), key.models?.joined(separator: ",") ?? "all",
                        key.createdAt, key.expiresAt ?? "never", state,
                    ])
                }
                printTable(rows)
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "revoke", abstract: "Revoke a key: servers refuse it within their poll interval.")

        @Argument(help: "The key's name.")
        var name: String

        @Flag(help: "Revoke it even when it is the last active key with the admin scope.")
        var force = false

        @OptionGroup var registry: RegistryOptions
        @OptionGroup var changes: ChangeOptions

        func run() async throws {
            try await withRegistry(registry, changes: changes) { client in
                let key = try await client.revokeKey(name: name, force: force)
                print("key '\(key.name)' revoked at \(key.revokedAt ?? "?")")
            }
        }
    }

    struct CreateSigning: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create-signing",
            abstract: "Create an Ed25519 key pair for signing bundles: NAME.key (keep it secret) and NAME.pub (give it to registries).",
            discussion:
                "Sign with tern pack --sign NAME.key; make registries and servers take only signed bundles with --trusted-keys NAME.pub (or a folder of .pub files)."
        )

        @Argument(help: "The key's name: the signer recorded with each signature.")
        var name: String

        @Option(
            name: [.short, .customLong("output"), .customLong("out")],
            help: ArgumentHelp("The folder to write the two files to (--out is its old spelling).", valueName: "dir"))
        var out: String = "."

        func run() async throws {
            do {
                try APIKeySecret.checkName(name)
            } catch {
                throw ValidationError(error.message)
            }
            let (privatePEM, publicPEM) = SigningKeys.generate()
            let privatePath = "\(out)/\(name).key", publicPath = "\(out)/\(name).pub"
            for path in [privatePath, publicPath] where FileManager.default.fileExists(atPath: path) {
                fail(TernError.conflict("\(path) exists; choose another name or folder (keys are never overwritten)"))
            }
            do {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                guard FileManager.default.createFile(atPath: privatePath, contents: Data(privatePEM.utf8), attributes: [.posixPermissions: 0o600])
                else {
                    throw TernError.internalError("cannot write \(privatePath)")
                }
                try Data(publicPEM.utf8).write(to: URL(fileURLWithPath: publicPath))
            } catch {
                fail(error)
            }
            print("wrote \(privatePath) (private: keep it secret) and \(publicPath) (public: give it to registries as --trusted-keys)")
        }
    }
}
