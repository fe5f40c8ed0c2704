import GRPCCore
import TernCore

/// The Open Inference Protocol v2 gRPC service (`inference.GRPCInferenceService`): a thin translation between
/// the protocol's messages and ``InferenceService``.
struct InferenceGRPCService: Inference_GRPCInferenceService.SimpleServiceProtocol {
    let service: InferenceService

    func serverLive(request: Inference_ServerLiveRequest, context: ServerContext) async throws
        -> Inference_ServerLiveResponse
    {
        var response = Inference_ServerLiveResponse()
        response.live = true
        return response
    }

    func serverReady(request: Inference_ServerReadyRequest, context: ServerContext) async throws
        -> Inference_ServerReadyResponse
    {
        var response = Inference_ServerReadyResponse()
        response.ready = service.isReady
        return response
    }

    func modelReady(request: Inference_ModelReadyRequest, context: ServerContext) async throws
        -> Inference_ModelReadyResponse
    {
        _ = try service.catalog.resolve(name: request.name, version: request.version.isEmpty ? nil : request.version)
        var response = Inference_ModelReadyResponse()
        response.ready = service.isReady
        return response
    }

    func serverMetadata(request: Inference_ServerMetadataRequest, context: ServerContext) async throws
        -> Inference_ServerMetadataResponse
    {
        var response = Inference_ServerMetadataResponse()
        response.name = TernVersion.name
        response.version = TernVersion.version
        response.extensions = ["model_configuration"] + (service.repository == nil ? [] : ["model_repository"])
        return response
    }

    func modelMetadata(request: Inference_ModelMetadataRequest, context: ServerContext) async throws
        -> Inference_ModelMetadataResponse
    {
        let served = try service.catalog.resolve(name: request.name, version: request.version.isEmpty ? nil : request.version)
        var response = Inference_ModelMetadataResponse()
        response.name = served.name
        response.versions = service.catalog.versions(of: served.name).map(String.init)
        response.platform = served.platform
        func metadata(_ spec: TensorSpec) -> Inference_ModelMetadataResponse.TensorMetadata {
            var tensor = Inference_ModelMetadataResponse.TensorMetadata()
            tensor.name = spec.name
            tensor.datatype = spec.datatype.rawValue
            tensor.shape = spec.shape.map(Int64.init)
            return tensor
        }
        response.inputs = served.model.signature.inputs.map(metadata)
        response.outputs = served.model.signature.outputs.map(metadata)
        return response
    }

    func modelInfer(request: Inference_ModelInferRequest, context: ServerContext) async throws
        -> Inference_ModelInferResponse
    {
        let served = try service.resolve(
            model: request.modelName, version: request.modelVersion.isEmpty ? nil : request.modelVersion)
        let inference = try GRPCRequestDecoder.decode(request)
        return GRPCResponseEncoder.encode(try await service.infer(served, request: inference))
    }

    // MARK: The model repository extension

    func repositoryIndex(request: Inference_RepositoryIndexRequest, context: ServerContext) async throws
        -> Inference_RepositoryIndexResponse
    {
        var response = Inference_RepositoryIndexResponse()
        response.models = try await service.repositoryIndex(readyOnly: request.ready).map { entry in
            var index = Inference_RepositoryIndexResponse.ModelIndex()
            index.name = entry.name
            index.version = entry.version
            index.state = entry.state
            index.reason = entry.reason
            return index
        }
        return response
    }

    func repositoryModelLoad(request: Inference_RepositoryModelLoadRequest, context: ServerContext) async throws
        -> Inference_RepositoryModelLoadResponse
    {
        try await service.repositoryLoad(
            model: request.modelName, version: try Self.version(request.parameters), actor: Self.actor(context))
        return Inference_RepositoryModelLoadResponse()
    }

    func repositoryModelUnload(request: Inference_RepositoryModelUnloadRequest, context: ServerContext) async throws
        -> Inference_RepositoryModelUnloadResponse
    {
        try await service.repositoryUnload(
            model: request.modelName, version: try Self.version(request.parameters), actor: Self.actor(context))
        return Inference_RepositoryModelUnloadResponse()
    }

    /// The optional `version` parameter (a Tern extension): an int64 or a string holding a positive integer.
    static func version(_ parameters: [String: Inference_ModelRepositoryParameter]) throws(TernError) -> Int? {
        guard let parameter = parameters["version"] else { return nil }
        switch parameter.parameterChoice {
        case .int64Param(let number) where number >= 1: return Int(number)
        case .stringParam(let text) where (Int(text) ?? 0) >= 1: return Int(text)
        default: throw .invalidArgument("the 'version' parameter must be a positive integer")
        }
    }

    /// gRPC changes are attributed to the peer until authentication names the caller.
    static func actor(_ context: ServerContext) -> String { "grpc \(context.remotePeer)" }
}
