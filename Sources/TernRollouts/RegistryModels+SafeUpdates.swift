import TernCore
import TernModels
import TernMonitoring
import TernRegistry

/// The served registry's safe updates: every alias move and rollout goes through the model's validation
/// gate (``ValidationGate``), then the served models follow the registry.
extension RegistryModels {
    /// Moves an alias once the model's validation gate lets it (with `force`, anyway: audited as forced).
    public func setAlias(model: String, alias: String, version: Int, actor: String, force: Bool = false) async throws {
        try await gate.moveAlias(model: model, alias: alias, version: version, force: force, actor: actor)
        try await refresh(force: true)
    }

    /// The model's validation gate, run with this server's runtime.
    public nonisolated var gate: ValidationGate {
        ValidationGate(
            registry: registry, runtime: runtime, pool: pool, sessionOptions: sessionOptions, scratch: cacheFolder,
            dataRoot: .some(gateRoot))
    }

    /// Starts a rollout through the gate (``ValidationGate/startRollout(_:actor:skipGate:)``) and serves its first
    /// step; `started` runs once it is recorded, before its shares are served (the watch counts from there).
    public func startRollout(
        _ proposed: Rollout, actor: String, skipGate: Bool, started: @Sendable (Rollout) -> Void = { _ in }
    ) async throws -> Rollout {
        let rollout = try await gate.startRollout(proposed, actor: actor, skipGate: skipGate)
        started(rollout)
        try await refresh(force: true)
        return rollout
    }

    /// Pauses, resumes, aborts or promotes a rollout (promotion through the gate) and serves the result.
    public func updateRollout(model: String, _ action: RolloutAction, actor: String, force: Bool = false) async throws -> Rollout {
        let rollout = try await gate.updateRollout(model: model, action, actor: actor, force: force)
        try await refresh(force: true)
        return rollout
    }
}
