import Foundation
import Hummingbird
import NIOCore
import Synchronization
import TernBundle
import TernCore
import TernExplain
import TernHTTP
import TernONNX

/// Explanations of served versions: each version's structure read once from its ONNX file, its
/// background from its bundle's reference sample (with a registry), computed off the event loops.
final class Explanations: Sendable {
    /// What an explanation of one version needs, prepared once.
    struct Prepared: Sendable {
        var structure: ModelStructure
        var featureNames: [String]?
        var background: [[Double]]
        var outputs: [String]
    }

    let service: InferenceService
    let models: RegistryModels?
    private let prepared = Mutex<[String: Prepared]>([:])
    /// Background rows used at most (the reference sample's first ones).
    static let defaultBackgroundRows = 200

    init(service: InferenceService, models: RegistryModels?) {
        self.service = service
        self.models = models
    }

    func prepare(_ served: ServedModel) async throws -> Prepared {
        let key = "\(served.name)\u{0}\(served.version)"
        if let ready = prepared.withLock({ $0[key] }) { return ready }
        guard let onnx = served.model as? ONNXModel ?? (served.model as? DynamicBatcher)?.model as? ONNXModel else {
            throw TernError.invalidArgument("\(served.name) v\(served.version) is not an ONNX model Tern can read")
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: onnx.path))
        } catch {
            throw TernError.internalError("cannot read \(served.name)'s model file: \(error)")
        }
        var structure = try ModelStructure.read(onnx: data)
        let names = served.featureNames ?? ModelStructure.featureNames(onnx: data)
        var background: [[Double]] = []
        if let models, let profile = try? ModelBundle(archive: try await models.registry.archive(served.name, served.version))
            .decoded(ReferenceProfile.self, file: BundleFile.profile) {
            let sample = profile.sample
            background = try FeatureRows.rows(
                columns: sample.columns, values: Array(sample.rows.prefix(Self.defaultBackgroundRows)), featureNames: names,
                width: structure.featureCount, what: "\(served.name) v\(served.version)'s reference sample")
        }
        // Path-dependent TreeSHAP needs covers: counted on the background once here, not on every request.
        if case .trees(let trees) = structure, trees.covers == nil, !background.isEmpty {
            structure = .trees(trees.withCovers(from: background))
        }
        let ready = Prepared(structure: structure, featureNames: names, background: background, outputs: ExplanationJSON.outputNames(structure))
        prepared.withLock { $0[key] = ready }
        return ready
    }

    static func encode(_ object: [String: Any]) throws -> ByteBuffer {
        ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
    }

    /// Explains a v2 request's rows.
    func explain(_ served: ServedModel, _ request: InferenceRequest) async throws -> [String: Any] {
        let ready = try await prepare(served)
        guard request.inputs.count == 1, let input = request.inputs.first else {
            throw TernError.invalidArgument("an explain request has one input of [rows, \(ready.structure.featureCount)] features")
        }
        let rows = try FeatureRows.rows(tensor: input, width: ready.structure.featureCount)
        var method: Attributions.Method?
        if case .string(let text)? = request.parameters["method"] {
            guard let chosen = Attributions.Method(rawValue: text) else {
                throw TernError.invalidArgument("parameter method must be interventional, path_dependent or linear, got '\(Echo.clip(text))'")
            }
            method = chosen
        }
        if ready.background.isEmpty, method != .pathDependent || !ready.structure.hasCovers {
            throw TernError.invalidArgument("\(served.name) v\(served.version) has no background data to explain against: "
                + "push a bundle packed with --reference TRAINING.csv (its reference sample is the background)")
        }
        let attributions = try Explainer.explain(ready.structure, rows: rows, background: ready.background, method: method)
        var object = ExplanationJSON.object(attributions, featureNames: ready.featureNames, outputNames: ready.outputs)
        object["model_name"] = served.name
        object["model_version"] = String(served.version)
        object["background_rows"] = ready.background.count
        if let id = request.id { object["id"] = id }
        return object
    }
}

/// `POST /v2/models/{m}[/versions/{v}]/explain` and KServe v1's `:explain`: translation only.
struct ExplainRoutes {
    let explanations: Explanations
    let http: HTTPFrontEndConfiguration

    func register(on router: ScopedRouter) {
        for path in ["/v2/models/{model}/explain", "/v2/models/{model}/versions/{version}/explain"] {
            router.post(path, .infer) { request, context in
                let served = try explanations.service.catalog.resolve(
                    name: try context.parameters.require("model"), version: context.parameters.get("version"))
                if let caller = CurrentCaller.value, !caller.mayUse(model: served.name) { throw caller.refusal(model: served.name) }
                let body = try await HTTPFrontEndConfiguration.collectBody(request, upTo: http.maxRequestBytes, flag: "--max-request-size")
                let decoded = try V2JSON.decodeRequest(Array(buffer: body))
                return try json(try await explanations.explain(served, decoded))
            }
        }
    }

    private func json(_ object: [String: Any]) throws -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: try Explanations.encode(object)))
    }
}
