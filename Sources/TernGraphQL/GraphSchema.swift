import Foundation
import GraphQL
import Graphiti
import NIOCore
import TernBatch
import TernCodecs
import TernCore
import TernModels
import TernMonitoring
import TernRegistry
import TernStatistics

/// The owners GraphQL reads and runs: the same ones the REST routes call (nil: that part is absent on this
/// server, and its fields answer empty lists or null).
package struct GraphQLOwners: Sendable {
    package var service: InferenceService
    package var models: RegistryModels?
    package var drift: LiveDrift?
    package var feedback: LiveFeedback?
    package var alerts: AlertEvaluator?
    package var jobs: BatchJobs?

    package init(
        service: InferenceService, models: RegistryModels? = nil, drift: LiveDrift? = nil, feedback: LiveFeedback? = nil,
        alerts: AlertEvaluator? = nil, jobs: BatchJobs? = nil
    ) {
        self.service = service
        self.models = models
        self.drift = drift
        self.feedback = feedback
        self.alerts = alerts
        self.jobs = jobs
    }
}

/// One request's view: the owners and the caller, whose grants limit which models it sees.
struct GraphContext: Sendable {
    let owners: GraphQLOwners
    let caller: Caller?
    let call: CallContext

    func visible(_ model: String) -> Bool { caller?.mayUse(model: model) ?? true }

    func requireVisible(_ model: String) throws {
        if let caller, !caller.mayUse(model: model) { throw caller.refusal(model: model) }
    }
}

/// A model's fields that read an owner when asked: drift, quality, audit, alerts.
extension ModelOverview {
    struct WindowArguments: Codable, Sendable {
        var version: String?
        var window: Int?
    }

    func drift(context: GraphContext, arguments: WindowArguments) async throws -> DriftAnswer? {
        guard let drift = context.owners.drift else { return nil }
        let window = arguments.window ?? 1_000
        guard (1...10_000).contains(window) else { throw TernError.invalidArgument("window must be from 1 to 10000, not \(window)") }
        let served = try context.owners.service.catalog.resolveStable(name: name, version: arguments.version)
        return try await drift.drift(of: served, window: window)
    }

    func quality(context: GraphContext, arguments: NoArguments) async throws -> [VersionPerformance] {
        try await context.owners.feedback?.performance(of: name, since: nil, newest: nil) ?? []
    }

    struct LimitArguments: Codable, Sendable {
        var limit: Int?
    }

    func audit(context: GraphContext, arguments: LimitArguments) async throws -> [AuditEntry] {
        try await GraphResolver.audit(context: context, model: name, limit: arguments.limit)
    }

    func alerts(context: GraphContext, arguments: NoArguments) -> [AlertState] {
        GraphResolver.alerts(context).filter { $0.model == name }
    }
}

enum GraphResolver {
    static func models(_ context: GraphContext) async throws -> [ModelOverview] {
        try await ModelOverview.all(service: context.owners.service, models: context.owners.models, visible: context.visible)
    }

    static func alerts(_ context: GraphContext) -> [AlertState] {
        (context.owners.alerts?.snapshot ?? []).filter { context.visible($0.model) }
    }

    static func audit(context: GraphContext, model: String?, limit: Int?) async throws -> [AuditEntry] {
        guard let models = context.owners.models else { return [] }
        let limit = limit ?? 100
        guard (1...10_000).contains(limit) else {
            throw TernError.invalidArgument("limit must be from 1 to 10000, not \(limit)")
        }
        let entries = try await models.registry.auditLog(model: model)
        return entries.filter { context.visible($0.model) }.suffix(limit).reversed()
    }

    static func jobs(_ context: GraphContext) async throws -> [JobView] {
        guard let jobs = context.owners.jobs else { return [] }
        return try await jobs.list().compactMap { object in
            guard let id = object["id"] as? String, let model = object["model"] as? String, context.visible(model) else { return nil }
            return JobView(
                id: id, model: model, version: object["version"] as? Int, state: object["state"] as? String ?? "",
                rows: object["rows"] as? Int ?? 0, rejected: object["rejected"] as? Int ?? 0, error: object["error"] as? String,
                createdBy: object["created_by"] as? String, startedAt: object["started_at"] as? String,
                endedAt: object["ended_at"] as? String)
        }
    }

    /// The predict mutation: the tensors written as a v2 JSON body and read by the v2 decoder, so that every
    /// check and every answer is v2 REST's.
    static func predict(_ context: GraphContext, _ arguments: PredictArguments) async throws -> PredictionView {
        var writer = JSONWriter()
        writer.byte(UInt8(ascii: "{"))
        if let id = arguments.id {
            writer.raw("\"id\":")
            writer.string(id)
            writer.byte(UInt8(ascii: ","))
        }
        writer.raw("\"inputs\":[")
        for (index, input) in arguments.inputs.enumerated() {
            if index > 0 { writer.byte(UInt8(ascii: ",")) }
            guard let datatype = DataType(rawValue: input.datatype.uppercased()) else {
                throw TernError.invalidArgument("input '\(Echo.clip(input.name))': unknown datatype '\(Echo.clip(input.datatype))'")
            }
            guard input.shape.allSatisfy({ $0 >= 0 }) else {
                throw TernError.invalidArgument("input '\(Echo.clip(input.name))': a shape's dimensions are not negative")
            }
            writer.tensorHeader(name: input.name, datatype: datatype, shape: input.shape)
            writer.raw(",\"data\":[")
            switch (datatype, input.data, input.strings) {
            case (.bytes, _, let strings?):
                for (at, text) in strings.enumerated() {
                    if at > 0 { writer.byte(UInt8(ascii: ",")) }
                    writer.string(text)
                }
            case (.bytes, _, nil):
                throw TernError.invalidArgument("input '\(Echo.clip(input.name))' is BYTES: give its values in strings")
            case (_, let numbers?, nil):
                for (at, number) in numbers.enumerated() {
                    if at > 0 { writer.byte(UInt8(ascii: ",")) }
                    if datatype == .bool {
                        writer.bool(number != 0)
                    } else if datatype.isInteger, number.rounded() == number, abs(number) < 9.2e18 {
                        writer.integer(Int64(number))
                    } else {
                        writer.float(number)
                    }
                }
            default:
                throw TernError.invalidArgument("input '\(Echo.clip(input.name))': give its values in data (numbers), not strings")
            }
            writer.raw("]}")
        }
        writer.byte(UInt8(ascii: "]"))
        if let outputs = arguments.outputs {
            writer.raw(",\"outputs\":[")
            for (index, name) in outputs.enumerated() {
                if index > 0 { writer.byte(UInt8(ascii: ",")) }
                writer.raw("{\"name\":")
                writer.string(name)
                writer.byte(UInt8(ascii: "}"))
            }
            writer.byte(UInt8(ascii: "]"))
        }
        writer.byte(UInt8(ascii: "}"))
        let body = writer.buffer
        let service = context.owners.service
        let call = context.call
        let response = try await service.infer(call) {
            try service.resolve(model: arguments.model, version: arguments.version, context: call)
        } decode: { _ in
            try V2RequestDecoder.decode(body: body, headerLength: nil).0
        }
        return PredictionView(
            modelName: response.modelName, modelVersion: response.modelVersion, id: response.id,
            outputs: response.outputs.map(TensorView.init))
    }

    struct PredictArguments: Codable, Sendable {
        var model: String
        var version: String?
        var id: String?
        var inputs: [TensorInput]
        var outputs: [String]?
    }
}

extension DataType {
    fileprivate var isInteger: Bool {
        switch self {
        case .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64: true
        default: false
        }
    }
}

/// The resolvers' errors as a client reads them: TernError's message and its code in `extensions.code`
/// (`INVALID_ARGUMENT`, `NOT_FOUND`, ...); any other error of a resolver is a fault, whose details stay in
/// the server's log. GraphQL's own errors (syntax, schema) are left as they are.
enum GraphErrors {
    static func code(_ code: TernError.Code) -> String {
        code.description.uppercased().replacingOccurrences(of: " ", with: "_")
    }

    static func clientFacing(_ result: GraphQLResult) -> GraphQLResult {
        var result = result
        result.errors = result.errors.map { error in
            guard let original = error.originalError else { return error }
            let tern = original as? TernError ?? TernError(.internalError, "\(original)")
            let message = tern.code == .internalError ? TernError.faultMessageForClients : tern.message
            return GraphQLError(
                message: message, locations: error.locations, path: error.path, extensions: ["code": .string(code(tern.code))])
        }
        return result
    }
}

/// The schema: every type GraphQL shows and the root fields.
struct TernGraphAPI: API {
    struct Root: Sendable {}

    let resolver = Root()
    let schema: Schema<Root, GraphContext>

    init() throws {
        schema = try Schema<Root, GraphContext> {
            Type(ServerView.self, as: "Server") {
                Field("name", at: \.name)
                Field("version", at: \.version)
                Field("ready", at: \.ready)
            }
            Type(TensorSpecView.self, as: "TensorSpec") {
                Field("name", at: \.name)
                Field("datatype", at: \.datatype)
                Field("shape", at: \.shape)
            }
            Type(AliasView.self, as: "Alias") {
                Field("name", at: \.name)
                Field("version", at: \.version)
            }
            Type(MetricView.self, as: "Metric") {
                Field("name", at: \.name)
                Field("value", at: \.value)
            }
            Type(TrafficWeightView.self, as: "TrafficWeight") {
                Field("version", at: \.version)
                Field("weight", at: \.weight)
            }
            Type(VersionView.self, as: "Version") {
                Field("number", at: \.number)
                Field("state", at: \.state).description("The registry's state (active, archived), or served for a model folder's")
                Field("loaded", at: \.loaded).description("Whether this server holds the version in memory and answers with it")
                Field("platform", at: \.platform)
                Field("inputs", at: \.inputs)
                Field("outputs", at: \.outputs)
                Field("aliases", at: \.aliases)
                Field("sha256", at: \.sha256)
                Field("bytes", at: \.bytes)
                Field("createdAt", at: \.createdAt)
                Field("createdBy", at: \.createdBy)
                Field("description", at: \.description)
                Field("task", at: \.task)
                Field("featureNames", at: \.featureNames)
                Field("classLabels", at: \.classLabels)
                Field("validation", at: \.validation).description("What the bundle measured on its holdout when it was packed")
            }
            Type(FeatureDrift.self, as: "FeatureDrift") {
                Field("feature", at: \.feature)
                Field("kind", at: \.kind.rawValue)
                Field("referenceCount", at: \.referenceCount)
                Field("liveCount", at: \.liveCount)
                Field("referenceMissingRate", at: \.referenceMissingRate)
                Field("liveMissingRate", at: \.liveMissingRate)
                Field("psi", at: \.psi)
                Field("jensenShannon", at: \.jensenShannon)
                Field("ksStatistic", at: \.ksStatistic)
                Field("ksPValue", at: \.ksPValue)
                Field("wasserstein", at: \.wasserstein)
                Field("chiSquared", at: \.chiSquared)
                Field("chiSquaredPValue", at: \.chiSquaredPValue)
                Field("newCategories", at: \.newCategories)
                Field("drifted", at: \.drifted)
                Field("reasons", at: \.reasons)
                Field("insufficientData", at: \.insufficientData)
            }
            Type(DriftAnswer.self, as: "Drift") {
                Field("version", at: \.version)
                Field("referenceRows", at: \.referenceRows)
                Field("predictions", at: \.predictions)
                Field("rows", at: \.rows)
                Field("from", at: \.from)
                Field("to", at: \.to)
                Field("drifted", at: \.drifted)
                Field("features", at: \.features)
            }
            Type(VersionPerformance.self, as: "Quality") {
                Field("version", at: \.version)
                Field("predictions", at: \.predictions)
                Field("rows", at: \.rows)
                Field("mismatched", at: \.mismatched)
                Field("labelDelaySecondsMedian", at: \.labelDelaySecondsMedian)
                Field("live", at: \.liveMetrics)
                Field("validation", at: \.validationMetrics)
            }
            Type(AlertState.self, as: "Alert") {
                Field("rule", at: \.rule)
                Field("model", at: \.model)
                Field("metric", at: \.metric)
                Field("severity", at: \.severity)
                Field("state", at: \.state)
                Field("value", at: \.value)
                Field("threshold", at: \.threshold)
                Field("since", at: \.since)
                Field("lastResolved", at: \.lastResolved)
            }
            Type(AuditEntry.self, as: "AuditEntry") {
                Field("seq", at: \.seq)
                Field("at", at: \.at)
                Field("actor", at: \.actor)
                Field("action", at: \.action)
                Field("model", at: \.model)
                Field("version", at: \.version)
                Field("before", at: \.before)
                Field("after", at: \.after)
                Field("hash", at: \.hash)
            }
            Type(JobView.self, as: "Job") {
                Field("id", at: \.id)
                Field("model", at: \.model)
                Field("version", at: \.version)
                Field("state", at: \.state)
                Field("rows", at: \.rows)
                Field("rejected", at: \.rejected)
                Field("error", at: \.error)
                Field("createdBy", at: \.createdBy)
                Field("startedAt", at: \.startedAt)
                Field("endedAt", at: \.endedAt)
            }
            Type(ModelOverview.self, as: "Model") {
                Field("name", at: \.name)
                Field("defaultVersion", at: \.defaultVersion)
                Field("aliases", at: \.aliases)
                Field("versions", at: \.versions)
                Field("traffic", at: \.traffic)
                Field("shadows", at: \.shadows)
                Field("drift", at: ModelOverview.drift) {
                    Argument("version", at: \.version).description("A number or alias (default: the stable version, not a canary)")
                    Argument("window", at: \.window).description("How many of the newest predictions to compare (1-10000, default 1000)")
                }
                Field("quality", at: ModelOverview.quality).description("Live quality from feedback, per version, beside the bundle's")
                Field("audit", at: ModelOverview.audit) {
                    Argument("limit", at: \.limit)
                }
                Field("alerts", at: ModelOverview.alerts)
            }
            Type(TensorView.self, as: "Tensor") {
                Field("name", at: \.name)
                Field("datatype", at: \.datatype)
                Field("shape", at: \.shape)
                Field("data", at: \.data).description("Numbers (booleans as 1 and 0; NaN and infinities as null)")
                Field("strings", at: \.strings).description("BYTES elements as text")
            }
            Type(PredictionView.self, as: "Prediction") {
                Field("modelName", at: \.modelName)
                Field("modelVersion", at: \.modelVersion)
                Field("id", at: \.id)
                Field("outputs", at: \.outputs)
            }
            Input(TensorInput.self) {
                InputField("name", at: \.name)
                InputField("datatype", at: \.datatype).description("A v2 datatype: FP32, INT64, BOOL, BYTES, ...")
                InputField("shape", at: \.shape)
                InputField("data", at: \.data).description("The elements, row-major, for every datatype but BYTES")
                InputField("strings", at: \.strings).description("The elements of a BYTES input")
            }
            Query {
                Field("server", at: Root.server)
                Field("models", at: Root.models)
                Field("model", at: Root.model) {
                    Argument("name", at: \.name)
                }
                Field("alerts", at: Root.alerts)
                Field("audit", at: Root.audit) {
                    Argument("model", at: \.model)
                    Argument("limit", at: \.limit).description("The newest entries, newest first (1-10000, default 100)")
                }
                Field("jobs", at: Root.jobs)
            }
            Mutation {
                Field("predict", at: Root.predict) {
                    Argument("model", at: \.model)
                    Argument("version", at: \.version)
                    Argument("id", at: \.id)
                    Argument("inputs", at: \.inputs)
                    Argument("outputs", at: \.outputs)
                }
                .description("Runs the model as POST /v2/models/{model}/infer does (scope infer)")
            }
        }
    }
}

extension TernGraphAPI.Root {
    struct NameArguments: Codable, Sendable {
        var name: String
    }

    struct AuditArguments: Codable, Sendable {
        var model: String?
        var limit: Int?
    }

    func server(context: GraphContext, arguments: NoArguments) -> ServerView {
        ServerView(name: TernVersion.name, version: TernVersion.version, ready: context.owners.service.isReady)
    }

    func models(context: GraphContext, arguments: NoArguments) async throws -> [ModelOverview] {
        try await GraphResolver.models(context)
    }

    func model(context: GraphContext, arguments: NameArguments) async throws -> ModelOverview? {
        try context.requireVisible(arguments.name)
        return try await GraphResolver.models(context).first { $0.name == arguments.name }
    }

    func alerts(context: GraphContext, arguments: NoArguments) -> [AlertState] {
        GraphResolver.alerts(context)
    }

    func audit(context: GraphContext, arguments: AuditArguments) async throws -> [AuditEntry] {
        if let model = arguments.model { try context.requireVisible(model) }
        return try await GraphResolver.audit(context: context, model: arguments.model, limit: arguments.limit)
    }

    func jobs(context: GraphContext, arguments: NoArguments) async throws -> [JobView] {
        try await GraphResolver.jobs(context)
    }

    func predict(context: GraphContext, arguments: GraphResolver.PredictArguments) async throws -> PredictionView {
        try await GraphResolver.predict(context, arguments)
    }
}
