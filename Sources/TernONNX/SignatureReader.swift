import CONNXRuntime
import TernCore

/// Reads a session's input/output types and its model metadata.
struct SignatureReader {
    let runtime: ONNXRuntime
    let session: OpaquePointer

    func specs(isInput: Bool) throws(TernError) -> ([TensorSpec], [ONNXModel.OutputKind]) {
        let api = runtime.api
        var count = 0
        try runtime.check(isInput ? api.SessionGetInputCount(session, &count) : api.SessionGetOutputCount(session, &count))
        var specs: [TensorSpec] = []
        var kinds: [ONNXModel.OutputKind] = []
        for index in 0..<count {
            var rawName: UnsafeMutablePointer<CChar>?
            try runtime.check(
                isInput
                    ? api.SessionGetInputName(session, index, runtime.allocator, &rawName)
                    : api.SessionGetOutputName(session, index, runtime.allocator, &rawName))
            let name = runtime.takeString(rawName)
            var typeInfo: OpaquePointer?
            try runtime.check(
                isInput
                    ? api.SessionGetInputTypeInfo(session, index, &typeInfo)
                    : api.SessionGetOutputTypeInfo(session, index, &typeInfo))
            guard let typeInfo else { throw .internalError("no type information for '\(name)'") }
            defer { api.ReleaseTypeInfo(typeInfo) }
            let (spec, kind) = try self.spec(name: name, typeInfo: typeInfo, isInput: isInput)
            specs.append(spec)
            kinds.append(kind)
        }
        return (specs, kinds)
    }

    private func spec(name: String, typeInfo: OpaquePointer, isInput: Bool) throws(TernError)
        -> (TensorSpec, ONNXModel.OutputKind)
    {
        let api = runtime.api
        let role = isInput ? "input" : "output"
        var kind: Int32 = 0
        try runtime.check(api.GetOnnxTypeFromTypeInfo(typeInfo, &kind))
        switch kind {
        case ValueKind.tensor:
            let (type, shape) = try tensorType(typeInfo)
            guard let datatype = ElementType.dataType(onnx: type) else {
                throw .invalidArgument(
                    "\(role) '\(name)' has element type \(ElementType.name(onnx: type)), which the V2 protocol cannot carry")
            }
            return (TensorSpec(name: name, datatype: datatype, shape: shape), .tensor)
        case ValueKind.sequence where !isInput:
            // ZipMap: seq(map(key, float)) -> served as a [rows, classes] tensor of the map's value type.
            var sequenceInfo: OpaquePointer?
            try runtime.check(api.CastTypeInfoToSequenceTypeInfo(typeInfo, &sequenceInfo))
            var elementInfo: OpaquePointer?
            if let sequenceInfo { try runtime.check(api.GetSequenceElementType(sequenceInfo, &elementInfo)) }
            guard let elementInfo else { throw .internalError("no element type for output '\(name)'") }
            defer { api.ReleaseTypeInfo(elementInfo) }
            var elementKind: Int32 = 0
            try runtime.check(api.GetOnnxTypeFromTypeInfo(elementInfo, &elementKind))
            guard elementKind == ValueKind.map else {
                throw .invalidArgument("output '\(name)' is a sequence of non-maps, which Tern cannot serve")
            }
            var mapInfo: OpaquePointer?
            try runtime.check(api.CastTypeInfoToMapTypeInfo(elementInfo, &mapInfo))
            var valueInfo: OpaquePointer?
            if let mapInfo { try runtime.check(api.GetMapValueType(mapInfo, &valueInfo)) }
            guard let valueInfo else { throw .internalError("no map value type for output '\(name)'") }
            defer { api.ReleaseTypeInfo(valueInfo) }
            let (valueType, _) = try tensorType(valueInfo)
            guard let datatype = ElementType.dataType(onnx: valueType), datatype != .bytes else {
                throw .invalidArgument(
                    "output '\(name)' maps to \(ElementType.name(onnx: valueType)) values, "
                        + "which Tern cannot serve")
            }
            return (TensorSpec(name: name, datatype: datatype, shape: [-1, -1]), .sequenceOfMaps)
        default:
            throw .invalidArgument("\(role) '\(name)' is not a tensor (ONNX type \(kind)), which Tern cannot serve")
        }
    }

    private func tensorType(_ typeInfo: OpaquePointer) throws(TernError) -> (Int32, [Int]) {
        let api = runtime.api
        var tensorInfo: OpaquePointer?
        try runtime.check(api.CastTypeInfoToTensorInfo(typeInfo, &tensorInfo))
        guard let tensorInfo else { throw .internalError("no tensor information") }
        return try runtime.elementTypeAndShape(tensorInfo)
    }

    func metadata() throws(TernError) -> ModelMetadata {
        let api = runtime.api
        var handle: OpaquePointer?
        try runtime.check(api.SessionGetModelMetadata(session, &handle))
        guard let handle else { return ModelMetadata() }
        defer { api.ReleaseModelMetadata(handle) }
        func string(
            _ getter: (OpaquePointer, OpaquePointer, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> OpaquePointer?
        ) throws(TernError) -> String {
            var value: UnsafeMutablePointer<CChar>?
            try runtime.check(getter(handle, runtime.allocator, &value))
            return runtime.takeString(value)
        }
        var metadata = ModelMetadata()
        metadata.producerName = try string(api.ModelMetadataGetProducerName)
        metadata.graphName = try string(api.ModelMetadataGetGraphName)
        metadata.domain = try string(api.ModelMetadataGetDomain)
        metadata.description = try string(api.ModelMetadataGetDescription)
        try runtime.check(api.ModelMetadataGetVersion(handle, &metadata.version))
        var keys: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        var keyCount: Int64 = 0
        try runtime.check(api.ModelMetadataGetCustomMetadataMapKeys(handle, runtime.allocator, &keys, &keyCount))
        if let keys {
            defer { _ = api.AllocatorFree(runtime.allocator, keys) }
            for index in 0..<Int(keyCount) {
                let key = runtime.takeString(keys[index])
                var value: UnsafeMutablePointer<CChar>?
                try runtime.check(api.ModelMetadataLookupCustomMetadataMap(handle, runtime.allocator, key, &value))
                metadata.custom[key] = runtime.takeString(value)
            }
        }
        return metadata
    }
}
