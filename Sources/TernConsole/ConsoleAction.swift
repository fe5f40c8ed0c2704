import TernCore
import TernModels
import TernRegistry
import TernRollouts

/// What an admin may do from the console, each the twin of an API call (and audited as it is): move an
/// alias, archive a version, pause, resume, promote or abort a rollout.
struct ConsoleAction: Sendable {
    enum Kind: Sendable, Equatable {
        case alias(name: String, version: Int)
        case archive(version: Int)
        case rollout(String)
    }

    let kind: Kind

    static let rolloutActions = ["pause", "resume", "promote", "abort"]

    init(fields: [String: String]) throws {
        func version() throws -> Int {
            guard let text = fields["version"], let number = Int(text), (1...ModelVersionNumber.maximum).contains(number) else {
                throw TernError.invalidArgument("give the version as a number")
            }
            return number
        }
        switch fields["action"] ?? "" {
        case "alias":
            let name = (fields["alias"] ?? "").trimmingCharacters(in: .whitespaces)
            try Registry.checkAlias(name)  // the registry's own rule, before the confirmation shows it
            kind = .alias(name: name, version: try version())
        case "archive":
            kind = .archive(version: try version())
        case "rollout":
            let step = fields["step"] ?? ""
            guard Self.rolloutActions.contains(step) else {
                throw TernError.invalidArgument("a rollout action is one of \(Self.rolloutActions.joined(separator: ", "))")
            }
            kind = .rollout(step)
        default:
            throw TernError.invalidArgument("no console action '\(Echo.clip(fields["action"] ?? ""))'; actions: alias, archive, rollout")
        }
    }

    /// The action in words, for the confirmation and the page after it.
    func summary(_ model: String) -> String {
        switch kind {
        case .alias(let name, let version): "point \(model)'s alias \(name) at v\(version)"
        case .archive(let version): "archive \(model) v\(version)"
        case .rollout(let step): "\(step) \(model)'s rollout"
        }
    }

    /// The fields that say it again in the confirming form.
    var fields: [(name: String, value: String)] {
        switch kind {
        case .alias(let name, let version): [("action", "alias"), ("alias", name), ("version", String(version))]
        case .archive(let version): [("action", "archive"), ("version", String(version))]
        case .rollout(let step): [("action", "rollout"), ("step", step)]
        }
    }

    func perform(on model: String, _ owners: ConsoleOwners, actor: String) async throws {
        guard let models = owners.models else {
            throw TernError.notFound("this server serves a model folder, not a registry: nothing to change")
        }
        switch kind {
        case .alias(let name, let version):
            try await models.setAlias(model: model, alias: name, version: version, actor: actor)
        case .archive(let version):
            try await models.archiveVersion(model: model, version: version, actor: actor)
        case .rollout(let step):
            _ = try await models.updateRollout(model: model, try RolloutAction(name: step), actor: actor, force: false)
        }
    }
}
