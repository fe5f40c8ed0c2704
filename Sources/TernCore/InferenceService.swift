import CoreMetrics
import Synchronization

/// The loaded models by name and version, with the aliases that name versions. Lookups are lock-protected
/// reads, cheap on the request path; a registry swaps versions and aliases in one step with ``update(_:)``.
public final class ModelCatalog: Sendable {
    /// Everything the catalog holds, replaced as a whole so a request never sees half a change.
    public struct State: Sendable {
        public var models: [String: [Int: ServedModel]] = [:]
        /// Model -> alias -> version.
        public var aliases: [String: [String: Int]] = [:]
        /// The version a request without one gets; the newest loaded one when absent.
        public var defaults: [String: Int] = [:]
        /// Model -> how requests that name no version are shared among its versions.
        public var traffic: [String: TrafficPolicy] = [:]

        public init() {}
    }

    private let state = Mutex(State())
    /// Whether any traffic policy has a fallback: without one, requests skip the fallback lookup.
    private let fallbacksConfigured = Atomic<Bool>(false)
    private let shadowsConfigured = Atomic<Bool>(false)
    /// Where each version's metric handles are made, once, as it joins the catalog.
    public let metricsFactory: any MetricsFactory
    /// The protocols the server serves: each version's request counters are made for these.
    public let protocols: [WireProtocol]

    public init(metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance, protocols: [WireProtocol] = []) {
        self.metricsFactory = metricsFactory
        self.protocols = protocols
    }

    /// Adds (or replaces) a loaded version.
    public func add(_ served: ServedModel) {
        attachMetrics(served)
        state.withLock { $0.models[served.name, default: [:]][served.version] = served }
    }

    private func attachMetrics(_ served: ServedModel) {
        served.statistics.attach(VersionMetrics(model: served.name, version: served.version, factory: metricsFactory, protocols: protocols))
    }

    /// Removes a version; returns it if it was there.
    @discardableResult
    public func remove(name: String, version: Int) -> ServedModel? {
        state.withLock { state in
            let removed = state.models[name]?.removeValue(forKey: version)
            if state.models[name]?.isEmpty == true { state.models[name] = nil }
            return removed
        }
    }

    /// Changes versions, aliases and defaults atomically; returns what `body` returns.
    public func update<T>(_ body: (inout State) -> T) -> T {
        state.withLock { state in
            let result = body(&state)
            for versions in state.models.values { for served in versions.values { attachMetrics(served) } }
            fallbacksConfigured.store(state.traffic.values.contains { $0.fallback != nil }, ordering: .relaxed)
            shadowsConfigured.store(state.traffic.values.contains { !$0.shadows.isEmpty }, ordering: .relaxed)
            return result
        }
    }

    /// A copy of the whole state.
    public var current: State { state.withLock { $0 } }

    /// Reads the state under its lock (no copy, no change).
    public func read<T>(_ body: (State) -> T) -> T {
        state.withLock { body($0) }
    }

    /// Whether any traffic policy has shadow versions: without one, answered requests skip the shadow lookup.
    public var hasShadows: Bool { shadowsConfigured.load(ordering: .relaxed) }

    /// The model's fallback (its traffic policy's) with the fallback version when it is loaded; nil, at the
    /// cost of one atomic load, when no policy has one.
    public func fallback(for name: String) -> (FallbackPolicy, ServedModel?)? {
        guard fallbacksConfigured.load(ordering: .relaxed) else { return nil }
        return state.withLock { state in
            guard let policy = state.traffic[name]?.fallback else { return nil }
            return (policy, policy.version.flatMap { state.models[name]?[$0] })
        }
    }

    /// Names of the models with at least one loaded version, sorted.
    public var modelNames: [String] { state.withLock { $0.models.keys.sorted() } }

    /// Loaded versions of a model, ascending; empty if the model is unknown.
    public func versions(of name: String) -> [Int] {
        state.withLock { $0.models[name].map { $0.keys.sorted() } ?? [] }
    }

    /// The versions a statistics request names: every loaded version (no name), every loaded version of a
    /// model (no version), or the one a version or alias names; sorted by name, then version.
    public func selection(name: String?, version: String?) throws(TernError) -> [ServedModel] {
        guard let name, !name.isEmpty else {
            return state.withLock { state in
                state.models.keys.sorted().flatMap { model in state.models[model]!.keys.sorted().map { state.models[model]![$0]! } }
            }
        }
        if let version, !version.isEmpty { return [try resolve(name: name, version: version)] }
        if name.contains("@") { return [try resolve(name: name, version: nil)] }
        let found: Result<[ServedModel], TernError> = state.withLock { state in
            guard let versions = state.models[name], !versions.isEmpty else { return .failure(Self.unknownModel(name, in: state)) }
            return .success(versions.keys.sorted().map { versions[$0]! })
        }
        return try found.get()
    }

    /// `visible`: the models the caller may use (only those are named).
    private static func unknownModel(_ name: String, in state: State, visible: ((String) -> Bool)? = nil) -> TernError {
        let loaded = state.models.filter { !$0.value.isEmpty && visible?($0.key) != false }.keys.sorted()
        return .notFound(
            "unknown model '\(Echo.clip(name))'; "
                + (loaded.isEmpty ? "no model is loaded" : "loaded models: " + loaded.joined(separator: ", ")))
    }

    /// Finds a model version. `name` may carry a version or alias after `@` (`credit-risk@production`,
    /// `credit-risk@2`); `version` may be a number or an alias. Without either, the model's default
    /// version (its `production` alias in a registry), else the newest loaded one.
    ///
    /// - Throws: ``TernError`` `notFound` naming the model and, for an unknown version or alias, the known ones.
    public func resolve(name: String, version: String?, header: (String) -> String? = { _ in nil }) throws(TernError) -> ServedModel {
        try pick(name: name, version: version, header: header).served
    }

    /// As ``resolve(name:version:header:)``, but without a version it is the model's stable version (its
    /// default, else its newest), never a traffic policy's pick: what monitoring reads (alert rules, drift),
    /// so that a canary taking a share of the requests does not make each evaluation read another version.
    public func resolveStable(name: String, version: String?) throws(TernError) -> ServedModel {
        if let version, !version.isEmpty { return try resolve(name: name, version: version) }
        let found: ServedModel? = state.withLock { state in
            guard let versions = state.models[name], !versions.isEmpty, !name.contains("@") else { return nil }
            if let preferred = state.defaults[name], let served = versions[preferred] { return served }
            return versions[versions.keys.max()!]
        }
        if let found { return found }
        return try resolve(name: name, version: nil)
    }

    /// As ``resolve(name:version:header:)``, with the input whose values pick the version again once the
    /// request is read (when a traffic policy sticky on an input picked it).
    func pick(
        name: String, version: String?, header: (String) -> String?, visible: ((String) -> Bool)? = nil
    ) throws(TernError) -> (served: ServedModel, stickyInput: String?) {
        var name = name
        var version = version
        if let at = name.firstIndex(of: "@") {
            let reference = String(name[name.index(after: at)...])
            name = String(name[..<at])
            if let version, !version.isEmpty, version != reference {
                throw .invalidArgument("'\(Echo.clip(name + "@" + reference))' and version '\(Echo.clip(version))' name different versions; give one")
            }
            version = reference
        }
        let found: Result<(served: ServedModel, stickyInput: String?), TernError> = state.withLock { state in
            guard let versions = state.models[name], !versions.isEmpty else {
                return .failure(Self.unknownModel(name, in: state, visible: visible))
            }
            guard let version, !version.isEmpty else {
                // A traffic policy shares the requests that name no version (sticky on a header when it says so).
                if let policy = state.traffic[name], let picked = policy.pick(key: policy.stickyHeader.flatMap(header)),
                    let served = versions[picked]
                {
                    return .success((served, policy.stickyInput))
                }
                if let preferred = state.defaults[name], let served = versions[preferred] { return .success((served, nil)) }
                return .success((versions[versions.keys.max()!]!, nil))
            }
            if let number = Int(version) {
                guard let served = versions[number] else {
                    let loaded = versions.keys.sorted().map(String.init).joined(separator: ", ")
                    return .failure(.notFound("model '\(name)' has no loaded version '\(Echo.clip(version))'; loaded versions: \(loaded)"))
                }
                return .success((served, nil))
            }
            let aliases = state.aliases[name] ?? [:]
            guard let number = aliases[version] else {
                let known = aliases.keys.sorted().joined(separator: ", ")
                return .failure(.notFound("model '\(name)' has no alias '\(Echo.clip(version))'" + (known.isEmpty ? "" : "; aliases: \(known)")))
            }
            guard let served = versions[number] else {
                return .failure(.unavailable("model '\(name)' alias '\(version)' names version \(number), which is not loaded"))
            }
            return .success((served, nil))
        }
        return try found.get()
    }
}

/// The one entry of inference, whatever the protocol: every front-end (v2 REST, v2 gRPC, KServe v1, the
/// platform routes) turns its bytes into an ``InferenceCall`` (the request, the version it names and its
/// ``CallContext``) and hands it to ``infer(_:inline:completion:)``. Validation, running, statistics,
/// metrics and the observers (logs, traces, the prediction log) happen here once, for every protocol; the
/// front-end encodes the answer or the error.
public final class InferenceService: Sendable {
    public let catalog: ModelCatalog
    private let ready = Mutex(false)
    private let repositoryControl = Mutex<(any ModelRepositoryControl)?>(nil)
    private let observerList = AtomicLazyReference<ObserverList>()
    private let unresolved: UnresolvedMetrics

    /// The registry behind the model repository extension; nil for a model folder.
    public var repository: (any ModelRepositoryControl)? {
        get { repositoryControl.withLock { $0 } }
        set { repositoryControl.withLock { $0 = newValue } }
    }

    /// Whether each request's batch times are recorded for the observers (traces); off, nothing is.
    public let timesRuns: Bool

    private let responseExplainer = Mutex<(any ResponseExplainer)?>(nil)

    /// What answers `explain: true` on an infer request; nil, such requests are refused.
    public var explainer: (any ResponseExplainer)? {
        get { responseExplainer.withLock { $0 } }
        set { responseExplainer.withLock { $0 = newValue } }
    }

    public init(catalog: ModelCatalog = ModelCatalog(), timesRuns: Bool = false) {
        self.catalog = catalog
        self.timesRuns = timesRuns
        self.unresolved = UnresolvedMetrics(factory: catalog.metricsFactory, protocols: catalog.protocols)
    }

    /// Whether the server has finished loading its models and accepts inference.
    public var isReady: Bool {
        get { ready.withLock { $0 } }
        set { ready.withLock { $0 = newValue } }
    }

    /// Sets who watches every request (once, before serving; a second call is ignored and returns false).
    @discardableResult
    public func observe(with observers: [any InferenceObserver]) -> Bool {
        let list = ObserverList(observers)
        return observerList.storeIfNil(list) === list
    }

    /// Finds the model version a request is for: the first step of every inference, so that an unknown model
    /// is reported before its body is read.
    ///
    /// - Throws: ``TernError``: `unavailable` before the server is ready, `notFound` for an unknown model or version.
    public func resolve(
        model name: String, version: String?, context: CallContext? = nil, header: (String) -> String? = { _ in nil }
    ) throws(TernError) -> ServedModel {
        guard isReady else { throw TernError.unavailable("the server is not ready: models are still loading") }
        let caller = context?.caller
        let (served, sticky) = try catalog.pick(
            name: name, version: version, header: header, visible: caller?.models == nil ? nil : { caller?.mayUse(model: $0) ?? true })
        context?.stickyInput = sticky
        return served
    }

    /// For a version a policy sticky on an input picked: the version that input's values (as decoded) pick
    /// (the same version when they pick it, or when the one they pick is not loaded).
    private func repick(_ served: ServedModel, input name: String, inputs: [Tensor]) -> ServedModel {
        guard let input = inputs.first(where: { $0.name == name }) else { return served }
        var key: [UInt8] = []
        switch input.contents {
        case .raw(let bytes): key = bytes
        case .strings(let elements):
            for element in elements {
                key += element
                key.append(0)
            }
        }
        return catalog.read { state -> ServedModel in
            guard let policy = state.traffic[served.name], let picked = policy.pick(keyBytes: key),
                let chosen = state.models[served.name]?[picked]
            else { return served }
            return chosen
        }
    }

    /// Validates the call's request against the version's signature, runs it, and reports through
    /// `completion` (called once: on a runner thread when the model runs, at once when the call failed
    /// before, on `inline`'s thread when it ran there). A call whose model or request already failed is
    /// counted and observed like any other.
    ///
    /// With `inline` (a front-end on an event loop), a batched model's request is queued for that thread to
    /// run (``InlineRunner``).
    public func infer(
        _ call: InferenceCall, inline: (any InlineRunner)? = nil,
        completion: @escaping @Sendable (Result<InferenceResponse, any Error>) -> Void
    ) {
        let context = call.context
        guard let picked = call.served, let request = call.request else {
            end(context, call.served, [], .failure(call.failure ?? TernError.internalError("a call with neither request nor failure")), completion)
            return
        }
        // A policy sticky on an input picks again by that input's values, now that the request is read.
        let served = context.stickyInput.map { repick(picked, input: $0, inputs: request.inputs) } ?? picked
        if let caller = context.caller, !caller.mayUse(model: served.name) {
            end(context, served, [], .failure(caller.refusal(model: served.name)), completion)
            return
        }
        let explainer: (any ResponseExplainer)?
        // With `explain: true`, outputs asked for by name may include the explanation's (`explain_…`).
        var modelRequest = request, explanationOutputs: [String] = []
        switch request.parameters["explain"] {
        case nil, .bool(false)?:
            explainer = nil
        case .bool(true)?:
            guard let configured = self.explainer else {
                end(context, served, [], .failure(TernError.invalidArgument("this server does not explain predictions")), completion)
                return
            }
            explainer = configured
            explanationOutputs = request.outputs.filter { $0.hasPrefix("explain_") && served.model.signature.output(named: $0) == nil }
            modelRequest.outputs.removeAll { explanationOutputs.contains($0) }
        default:
            end(context, served, [], .failure(TernError.invalidArgument("parameter explain must be true or false")), completion)
            return
        }
        let named = explanationOutputs
        let inputs: [Tensor], outputs: [String]
        do {
            (inputs, outputs) = try RequestValidator.validate(
                modelRequest, against: served.model.signature, maxBatchSize: served.config.maxBatchSize,
                allowNonFinite: served.config.allowNonFinite)
        } catch {
            end(context, served, [], .failure(error), completion)
            return
        }
        let run = PreparedRun(request: request, inputs: inputs, outputs: outputs, explainer: explainer, explanationOutputs: named)
        let timing = timesRuns ? RunTiming() : nil
        let accepted = timesRuns ? ContinuousClock.now : context.received
        if let (policy, fallbackVersion) = catalog.fallback(for: served.name), policy.version != served.version || policy.defaultOutputs != nil {
            // A version is not its own fallback: its failure gets the default answer.
            inferGuarded(
                context, served, run, policy: policy, fallback: fallbackVersion === served ? nil : fallbackVersion,
                inline: inline, timing: timing,
                accepted: accepted, completion: completion)
            return
        }
        served.statistics.versionMetrics?.started()
        execute(served, run, inline: inline, timing: timing) { result in
            self.end(context, served, inputs, result.map { run.response(served, outputs: $0) }, completion, accepted: accepted, timing: timing)
        }
    }

    /// Runs a validated request on a version (queued on its batcher, or on its own), adding the explanation
    /// when asked: what `completion` gets is the outputs or why there are none.
    private func execute(
        _ served: ServedModel, _ run: PreparedRun, inline: (any InlineRunner)?, timing: RunTiming?,
        completion answer: @escaping @Sendable (Result<[Tensor], any Error>) -> Void
    ) {
        let (request, inputs, outputs, named) = (run.request, run.inputs, run.outputs, run.explanationOutputs)
        // With `explain: true`, the explanation's tensors join the outputs (computed in a task, off the runner
        // and event-loop threads); observers such as the prediction log see them with the prediction.
        let finish: @Sendable (Result<[Tensor], any Error>) -> Void =
            if let explainer = run.explainer {
                { result in
                    guard case .success(let outputs) = result else { return answer(result) }
                    Task {
                        do {
                            var explanation = try await explainer.explain(served, request: request, inputs: inputs)
                            // Outputs asked for by name: the explanation's named among them, else all of it.
                            if !named.isEmpty {
                                let unknown = named.filter { name in !explanation.contains { $0.name == name } }
                                if let name = unknown.first {
                                    throw TernError.invalidArgument(
                                        "unknown output '\(Echo.clip(name))'; the explanation's outputs are: "
                                            + explanation.map(\.name).joined(separator: ", "))
                                }
                                explanation.removeAll { !named.contains($0.name) }
                            }
                            answer(.success(outputs + explanation))
                        } catch {
                            answer(.failure(error))
                        }
                    }
                }
            } else {
                answer
            }
        if let inline, let batcher = served.inlineBatcher {
            batcher.runDeferred(inputs: inputs, outputs: outputs, timeout: request.timeout, timing: timing, completion: finish)
            inline.needsDrain(batcher)
        } else if let timing, let batcher = served.model as? DynamicBatcher {
            batcher.run(inputs: inputs, outputs: outputs, timeout: request.timeout, timing: timing, completion: finish)
        } else if let model = served.callbackModel {
            model.run(inputs: inputs, outputs: outputs, timeout: request.timeout, completion: finish)
        } else {
            let model = served.model
            let timeout = request.timeout
            Task {
                do {
                    finish(.success(try await model.run(inputs: inputs, outputs: outputs, timeout: timeout)))
                } catch {
                    finish(.failure(error))
                }
            }
        }
    }

    /// A request to a version that has a fallback: the version is called unless its circuit is open; when it
    /// fails, or has not answered within the fallback's timeout, the fallback version (else the default
    /// answer) answers instead, marked `fallback: true` with the reason. The failed version's failure is
    /// counted as its own (statistics, metrics, its circuit) before the fallback answers.
    private func inferGuarded(
        _ context: CallContext, _ served: ServedModel, _ run: PreparedRun, policy: FallbackPolicy, fallback: ServedModel?,
        inline: (any InlineRunner)?, timing: RunTiming?, accepted: ContinuousClock.Instant,
        completion: @escaping @Sendable (Result<InferenceResponse, any Error>) -> Void
    ) {
        let breaker = served.breaker
        let fallBack: @Sendable (FallbackNote.Kind, String, any Error) -> Void = { kind, reason, failure in
            Counter(
                label: "tern_fallback_total", dimensions: [("model", served.name), ("version", String(served.version)), ("reason", kind.rawValue)],
                factory: self.catalog.metricsFactory
            ).increment()
            self.answerFallback(
                context, note: FallbackNote(from: served, kind: kind, reason: reason), failure: failure, run,
                policy: policy, fallback: fallback, accepted: accepted, completion: completion)
        }
        let openFor = Duration.milliseconds(Int(policy.openSeconds * 1000))
        guard breaker.decide(openFor: openFor) != .skip else {
            fallBack(.circuitOpen, "v\(served.version)'s circuit is open", TernError.unavailable("v\(served.version)'s circuit is open"))
            return
        }
        // The gauge's handle is looked up only when the circuit opens or closes, not per request.
        let factory = catalog.metricsFactory
        let circuit: @Sendable (Int) -> Void = { open in
            Gauge(
                label: "tern_circuit_open", dimensions: [("model", served.name), ("version", String(served.version))],
                factory: factory
            ).record(open)
        }
        let failed: @Sendable () -> Void = {
            if breaker.failed(threshold: policy.failuresToOpen) { circuit(1) }
        }
        let claim = FallbackClaim()
        served.statistics.versionMetrics?.started()
        execute(served, run, inline: inline, timing: timing) { result in
            claim.timer.withLock { $0?.cancel() }
            switch result {
            case .success(let outputs):
                if breaker.succeeded() { circuit(0) }
                guard claim.take() else { return }  // answered for after the timeout: this answer is dropped
                self.end(
                    context, served, run.inputs, .success(run.response(served, outputs: outputs)), completion, accepted: accepted, timing: timing)
            case .failure(let error):
                failed()
                guard claim.take() else { return }
                self.recordFailure(served, context, run, error)
                fallBack(.error, "v\(served.version) failed: \((error as? TernError)?.message ?? "\(error)")", error)
            }
        }
        if let milliseconds = policy.timeoutMilliseconds {
            let task = Task {
                try await Task.sleep(for: .milliseconds(milliseconds))
                guard claim.take() else { return }
                failed()
                let error = TernError(.timedOut, "v\(served.version) did not answer within \(milliseconds) ms")
                self.recordFailure(served, context, run, error)
                fallBack(.timeout, "v\(served.version) did not answer within \(milliseconds) ms", error)
            }
            claim.timer.withLock { $0 = task }
            if claim.isTaken { task.cancel() }
        }
    }

    /// Counts a version's failure that a fallback answers for: in its statistics and metrics, not observed
    /// as a request of its own (the answered request's event names it in its `fallback`).
    private func recordFailure(_ served: ServedModel, _ context: CallContext, _ run: PreparedRun, _ error: any Error) {
        let duration = context.received.duration(to: .now)
        let rows = served.rowsInFirstDimension ? (run.inputs.first?.shape.first ?? 1) : 1
        served.statistics.recordRequest(succeeded: false, duration: duration, rows: rows)
        served.statistics.versionMetrics?.ended(context.wire, RequestOutcome(error), duration: duration, rows: rows)
    }

    /// Answers from the fallback version, else (or when it fails too) the default answer, else the failure.
    private func answerFallback(
        _ context: CallContext, note: FallbackNote, failure: any Error, _ run: PreparedRun,
        policy: FallbackPolicy, fallback: ServedModel?, accepted: ContinuousClock.Instant,
        completion: @escaping @Sendable (Result<InferenceResponse, any Error>) -> Void
    ) {
        let (failed, reason) = (note.from, note.reason)
        let marks: [String: ParameterValue] = [
            "fallback": .bool(true), "fallback_reason": .string(reason),
            "fallback_from": .string(String(failed.version)),
        ]
        let byDefault: @Sendable (any Error) -> Void = { error in
            let rows = run.inputs.first?.shape.first ?? 1
            let result: Result<InferenceResponse, any Error>
            do {
                if let outputs = try policy.defaultAnswer(outputs: failed.model.signature.outputs, rows: rows, requested: run.outputs) {
                    var response = run.response(failed, outputs: outputs)
                    response.parameters = marks
                    response.parameters["fallback_source"] = .string("default")
                    result = .success(response)
                } else {
                    result = .failure(error)
                }
            } catch {
                result = .failure(error)
            }
            self.end(context, failed, run.inputs, result, completion, fallback: note, countsVersion: false)
        }
        guard let fallback else { return byDefault(failure) }
        fallback.statistics.versionMetrics?.started()
        execute(fallback, run, inline: nil, timing: nil) { result in
            switch result {
            case .success(let outputs):
                var response = run.response(fallback, outputs: outputs)
                response.parameters = marks
                self.end(context, fallback, run.inputs, .success(response), completion, accepted: accepted, fallback: note)
            case .failure(let error):
                self.recordFailure(fallback, context, run, error)
                byDefault(failure)
            }
        }
    }

    /// As ``infer(_:inline:completion:)``, for front-ends in Swift tasks.
    public func infer(_ call: InferenceCall) async throws -> InferenceResponse {
        try await withCheckedThrowingContinuation { continuation in
            infer(call) { continuation.resume(with: $0) }
        }
    }

    /// Runs a decoded request on a version already found: the CLI's runs in its own process.
    public func infer(
        _ served: ServedModel, request: InferenceRequest, context: CallContext = CallContext(wire: .local)
    ) async throws -> InferenceResponse {
        try await infer(InferenceCall(context: context, served: served, request: request))
    }

    /// Builds the call (resolving the model, then decoding the request for it) and runs it: what a
    /// front-end in a Swift task calls. What either step throws is the call's failure, observed as such.
    public func infer(
        _ context: CallContext, resolve: () throws -> ServedModel,
        decode: (ServedModel) async throws -> InferenceRequest
    ) async throws -> InferenceResponse {
        let served: ServedModel
        do {
            served = try resolve()
        } catch {
            return try await infer(InferenceCall(context: context, failure: error))
        }
        let request: InferenceRequest
        do {
            request = try await decode(served)
        } catch {
            return try await infer(InferenceCall(context: context, failure: error, served: served))
        }
        if timesRuns { context.decoded = .now }
        context.adoptBodyID(request.id)
        return try await infer(InferenceCall(context: context, served: served, request: request))
    }

    /// Work on a version other than a plain run (the explain routes): the version found and the request
    /// decoded as for ``infer(_:resolve:decode:)`` (readiness, the traffic policy's pick, the caller's grant),
    /// then counted in the metrics and shown to the observers like any request, with the tensors `work`
    /// answers (the prediction log records them). The statistics extension counts inferences only.
    public func perform<Answer: Sendable>(
        _ context: CallContext, resolve: () throws -> ServedModel, decode: (ServedModel) async throws -> InferenceRequest,
        work: (ServedModel, InferenceRequest) async throws -> (answer: Answer, outputs: [Tensor])
    ) async throws -> Answer {
        var served: ServedModel?
        do {
            let found = try resolve()
            served = found
            if let caller = context.caller, !caller.mayUse(model: found.name) { throw caller.refusal(model: found.name) }
            let request = try await decode(found)
            context.adoptBodyID(request.id)
            let (answer, outputs) = try await work(found, request)
            let response = InferenceResponse(modelName: found.name, modelVersion: String(found.version), id: request.id, outputs: outputs)
            end(context, found, request.inputs, .success(response), { _ in })
            return answer
        } catch {
            end(context, served, [], .failure(error), { _ in })
            throw error
        }
    }

    /// Counts and records a request's end, completes it, then shows it to the observers (the answer on its way).
    private func end(
        _ context: CallContext, _ served: ServedModel?, _ inputs: [Tensor],
        _ result: Result<InferenceResponse, any Error>,
        _ completion: @Sendable (Result<InferenceResponse, any Error>) -> Void,
        accepted: ContinuousClock.Instant? = nil, timing: RunTiming? = nil,
        fallback: FallbackNote? = nil, countsVersion: Bool = true
    ) {
        let answered = ContinuousClock.now
        context.caller?.slot?.release()  // the request's place among its caller's requests in flight
        let ran = accepted != nil
        let duration = context.received.duration(to: answered)
        let error: (any Error)? = if case .failure(let error) = result { error } else { nil }
        let outcome = RequestOutcome(error)
        if !countsVersion {
            // A default answer for a failed version: its failure is counted already.
        } else if let served {
            let rows = served.rowsInFirstDimension ? (inputs.first?.shape.first ?? 1) : 1
            if ran {
                // A refused request is the client's and is not in the statistics extension's counts.
                served.statistics.recordRequest(succeeded: error == nil, duration: duration, rows: rows)
                if served.countsOwnExecutions {
                    served.statistics.recordExecution(duration: duration, requests: 1, rows: rows)
                }
            }
            if let metrics = served.statistics.versionMetrics {
                if !ran { metrics.started() }
                metrics.ended(context.wire, outcome, duration: duration, rows: rows)
            }
        } else {
            unresolved.ended(context.wire, outcome)
        }
        guard let observers = observerList.load(), !observers.isEmpty else {
            completion(result)
            return
        }
        var event = InferenceEvent(
            context: context, served: served, outcome: outcome, error: error, duration: duration,
            inputs: inputs, outputs: (try? result.get())?.outputs ?? [], accepted: accepted, timing: timing,
            answered: answered, completed: answered)
        event.fallback = fallback
        for observer in observers.beforeAnswer { observer.requestEnded(event) }
        completion(result)
        guard !observers.afterAnswer.isEmpty else { return }
        event.completed = .now
        for observer in observers.afterAnswer { observer.requestEnded(event) }
    }
}

/// One inference request as a front-end hands it to the core: its context, and either the version it names
/// with its decoded request, or why one of them failed.
public struct InferenceCall: Sendable {
    public var context: CallContext
    /// The version the request names; nil when none was found.
    public var served: ServedModel?
    /// The decoded request; nil when it failed.
    public var request: InferenceRequest?
    /// Why the model or the request failed.
    public var failure: (any Error)?

    public init(context: CallContext, served: ServedModel, request: InferenceRequest) {
        self.context = context
        self.served = served
        self.request = request
    }

    /// A call that failed before it could run: no model found (`served` nil), or its request not decoded.
    public init(context: CallContext, failure: any Error, served: ServedModel? = nil) {
        self.context = context
        self.served = served
        self.failure = failure
    }
}

private final class ObserverList: Sendable {
    let beforeAnswer: [any InferenceObserver]
    let afterAnswer: [any InferenceObserver]
    var isEmpty: Bool { beforeAnswer.isEmpty && afterAnswer.isEmpty }

    init(_ observers: [any InferenceObserver]) {
        beforeAnswer = observers.filter { !$0.observesAfterAnswer }
        afterAnswer = observers.filter(\.observesAfterAnswer)
    }
}

/// One version as the protocol's model repository extension lists it.
public struct RepositoryEntry: Sendable, Equatable {
    public var name: String
    public var version: String
    /// `READY` or `UNAVAILABLE`.
    public var state: String
    /// Why a version is unavailable; empty when ready.
    public var reason: String

    public init(name: String, version: String, state: String, reason: String) {
        self.name = name
        self.version = version
        self.state = state
        self.reason = reason
    }
}

/// What the model repository extension (index, load, unload) acts on: a registry's models. Front-ends
/// translate their wire formats to these calls.
public protocol ModelRepositoryControl: Sendable {
    func index(readyOnly: Bool) async throws -> [RepositoryEntry]
    /// Loads a model's default version, or `version`, and keeps it loaded.
    func load(model: String, version: Int?, actor: String) async throws
    /// Unloads `version`, or every version of the model; running requests finish first.
    func unload(model: String, version: Int?, actor: String) async throws
}

extension InferenceService {
    /// The repository extension of a server without a registry: the loaded models, which cannot be
    /// loaded or unloaded one by one.
    public func repositoryIndex(readyOnly: Bool) async throws -> [RepositoryEntry] {
        if let repository { return try await repository.index(readyOnly: readyOnly) }
        return catalog.modelNames.flatMap { name in
            catalog.versions(of: name).map { RepositoryEntry(name: name, version: String($0), state: "READY", reason: "") }
        }
    }

    public func repositoryLoad(model: String, version: Int?, actor: String) async throws {
        guard let repository else { throw Self.noRepository }
        try await repository.load(model: model, version: version, actor: actor)
    }

    public func repositoryUnload(model: String, version: Int?, actor: String) async throws {
        guard let repository else { throw Self.noRepository }
        try await repository.unload(model: model, version: version, actor: actor)
    }

    static var noRepository: TernError {
        .invalidArgument(
            "this server serves a model folder, loaded whole at start; loading and unloading models "
                + "needs a registry (tern serve --data or --database)")
    }
}

/// A validated request ready to run: what a version and its fallback both run.
struct PreparedRun: Sendable {
    let request: InferenceRequest
    let inputs: [Tensor]
    let outputs: [String]
    let explainer: (any ResponseExplainer)?
    let explanationOutputs: [String]

    func response(_ served: ServedModel, outputs: [Tensor]) -> InferenceResponse {
        InferenceResponse(modelName: served.name, modelVersion: String(served.version), id: request.id, outputs: outputs)
    }
}

/// Who answers a guarded request: the version or its fallback, whichever claims it first.
private final class FallbackClaim: Sendable {
    private let taken = Atomic<Bool>(false)
    let timer = Mutex<Task<Void, any Error>?>(nil)

    func take() -> Bool { !taken.exchange(true, ordering: .acquiringAndReleasing) }
    var isTaken: Bool { taken.load(ordering: .acquiring) }
}
