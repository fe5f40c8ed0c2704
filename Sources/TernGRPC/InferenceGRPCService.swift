import GRPCCore
import Logging
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
        try AccessInterceptor.checkGrant(request.name)
        var response = Inference_ModelReadyResponse()
        // An unknown model or version is not ready (tritonclient's is_model_ready expects false, not an error).
        let known = (try? service.catalog.resolve(name: request.name, version: request.version.isEmpty ? nil : request.version)) != nil
        response.ready = known && service.isReady
        return response
    }

    func serverMetadata(request: Inference_ServerMetadataRequest, context: ServerContext) async throws
        -> Inference_ServerMetadataResponse
    {
        var response = Inference_ServerMetadataResponse()
        response.name = TernVersion.name
        response.version = TernVersion.version
        response.extensions = ["model_configuration", "statistics"] + (service.repository == nil ? [] : ["model_repository"])
        return response
    }

    func modelMetadata(request: Inference_ModelMetadataRequest, context: ServerContext) async throws
        -> Inference_ModelMetadataResponse
    {
        try AccessInterceptor.checkGrant(request.name)
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

    /// ModelInfer with its metadata: `x-request-id` and `traceparent` honoured, the request id returned in the
    /// response's (or the error's) metadata.
    func modelInfer(request: ServerRequest<Inference_ModelInferRequest>, context: ServerContext) async throws
        -> ServerResponse<Inference_ModelInferResponse>
    {
        let message = request.message
        let call = CallContext(
            wire: .v2GRPC, requestID: Self.first(request.metadata, "x-request-id"),
            traceparent: Self.first(request.metadata, "traceparent"), peer: context.remotePeer)
        call.caller = CurrentCaller.value
        var requestID = call.requestID
        do {
            let response = try await service.infer(call) {
                try service.resolve(model: message.modelName, version: message.modelVersion.isEmpty ? nil : message.modelVersion, context: call) {
                    Self.first(request.metadata, $0.lowercased())
                }
            } decode: { _ in
                try GRPCRequestDecoder.decode(message)
            }
            if !call.clientRequestID, let id = response.id, let accepted = RequestID.accept(id) { requestID = accepted }
            return ServerResponse(message: GRPCResponseEncoder.encode(response), metadata: ["x-request-id": .string(requestID)])
        } catch {
            if !call.clientRequestID, !message.id.isEmpty, let accepted = RequestID.accept(message.id) { requestID = accepted }
            let tern = error as? TernError ?? TernError.internalError("\(error)")
            return ServerResponse(
                accepted: .failure(
                    RPCError(
                        code: tern.rpcErrorCode, message: tern.rpcErrorMessage, metadata: ["x-request-id": .string(requestID)])))
        }
    }

    func modelInfer(request: Inference_ModelInferRequest, context: ServerContext) async throws
        -> Inference_ModelInferResponse
    {
        try await modelInfer(request: ServerRequest(metadata: [:], message: request), context: context).message
    }

    private static func first(_ metadata: Metadata, _ key: String) -> String? {
        for value in metadata[stringValues: key] { return value }
        return nil
    }

    // MARK: The model configuration and statistics extensions

    func modelConfig(request: Inference_ModelConfigRequest, context: ServerContext) async throws
        -> Inference_ModelConfigResponse
    {
        try AccessInterceptor.checkGrant(request.name)
        let served = try service.catalog.resolve(name: request.name, version: request.version.isEmpty ? nil : request.version)
        let description = ModelDescription(served)
        var config = Inference_ModelConfig()
        config.name = description.name
        config.platform = description.platform
        config.backend = description.backend
        config.maxBatchSize = Int32(clamping: description.maxBatchSize)
        config.input = description.inputs.map { tensor in
            var input = Inference_ModelInput()
            input.name = tensor.name
            input.dataType = Self.dataType(tensor.dataType)
            input.dims = tensor.dims.map(Int64.init)
            return input
        }
        config.output = description.outputs.map { tensor in
            var output = Inference_ModelOutput()
            output.name = tensor.name
            output.dataType = Self.dataType(tensor.dataType)
            output.dims = tensor.dims.map(Int64.init)
            return output
        }
        if let described = description.dynamicBatching {
            var batching = Inference_ModelDynamicBatching()
            batching.preferredBatchSize = described.preferredBatchSizes.map { Int32(clamping: $0) }
            batching.maxQueueDelayMicroseconds = described.maxQueueDelayMicroseconds
            config.dynamicBatching = batching
        }
        var response = Inference_ModelConfigResponse()
        response.config = config
        return response
    }

    func modelStatistics(request: Inference_ModelStatisticsRequest, context: ServerContext) async throws
        -> Inference_ModelStatisticsResponse
    {
        if request.name.isEmpty { try AccessInterceptor.checkUnrestricted("ModelStatistics without a name") }
        try AccessInterceptor.checkGrant(request.name)
        var response = Inference_ModelStatisticsResponse()
        response.modelStats = try service.catalog.selection(name: request.name, version: request.version).map { served in
            let snapshot = served.statistics.snapshot
            func duration(_ counter: ModelStatistics.Counter) -> Inference_StatisticDuration {
                var duration = Inference_StatisticDuration()
                duration.count = UInt64(counter.count)
                duration.ns = UInt64(counter.nanoseconds)
                return duration
            }
            var statistics = Inference_ModelStatistics()
            statistics.name = served.name
            statistics.version = String(served.version)
            statistics.lastInference = UInt64(snapshot.lastInferenceMilliseconds)
            statistics.inferenceCount = UInt64(snapshot.inferenceCount)
            statistics.executionCount = UInt64(snapshot.executionCount)
            var inference = Inference_InferStatistics()
            inference.success = duration(snapshot.success)
            inference.fail = duration(snapshot.fail)
            inference.queue = duration(snapshot.queue)
            inference.computeInfer = duration(snapshot.compute)
            let zero = duration(.zero)
            (inference.computeInput, inference.computeOutput, inference.cacheHit, inference.cacheMiss) = (zero, zero, zero, zero)
            statistics.inferenceStats = inference
            return statistics
        }
        return response
    }

    /// The enum value of a configuration's data type name (``ModelDescription/dataType(_:)``).
    static func dataType(_ name: String) -> Inference_DataType {
        DataType.allCases.first { ModelDescription.dataType($0) == name }.map(dataType) ?? .typeInvalid
    }

    static func dataType(_ type: DataType) -> Inference_DataType {
        switch type {
        case .bool: .typeBool
        case .uint8: .typeUint8
        case .uint16: .typeUint16
        case .uint32: .typeUint32
        case .uint64: .typeUint64
        case .int8: .typeInt8
        case .int16: .typeInt16
        case .int32: .typeInt32
        case .int64: .typeInt64
        case .fp16: .typeFp16
        case .fp32: .typeFp32
        case .fp64: .typeFp64
        case .bytes: .typeString
        }
    }

    // MARK: The model repository extension

    func repositoryIndex(request: Inference_RepositoryIndexRequest, context: ServerContext) async throws
        -> Inference_RepositoryIndexResponse
    {
        try AccessInterceptor.checkUnrestricted("RepositoryIndex")
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
        try AccessInterceptor.checkGrant(request.modelName)
        try await service.repositoryLoad(
            model: request.modelName, version: try Self.version(request.parameters), actor: Self.actor(context))
        return Inference_RepositoryModelLoadResponse()
    }

    func repositoryModelUnload(request: Inference_RepositoryModelUnloadRequest, context: ServerContext) async throws
        -> Inference_RepositoryModelUnloadResponse
    {
        try AccessInterceptor.checkGrant(request.modelName)
        try await service.repositoryUnload(
            model: request.modelName, version: try Self.version(request.parameters), actor: Self.actor(context))
        return Inference_RepositoryModelUnloadResponse()
    }

    /// The optional `version` parameter (a Tern extension): an int64 or a string holding a positive integer.
    static func version(_ parameters: [String: Inference_ModelRepositoryParameter]) throws(TernError) -> Int? {
        guard let parameter = parameters["version"] else { return nil }
        switch parameter.parameterChoice {
        case .int64Param(let number): return try ModelVersionNumber.check(Int(number), "the 'version' parameter")
        case .stringParam(let text): return try ModelVersionNumber.parse(text, "the 'version' parameter")
        default: throw .invalidArgument("the 'version' parameter must be a whole number between 1 and \(ModelVersionNumber.maximum)")
        }
    }

    /// Who a change is attributed to: the authenticated caller, else (an open server) the peer.
    static func actor(_ context: ServerContext) -> String { CurrentCaller.value?.name ?? "grpc \(context.remotePeer)" }
}
