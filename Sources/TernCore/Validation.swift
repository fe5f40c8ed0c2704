/// Checks a request against a model's signature before anything runs.
///
/// Every error names the input or output at fault and what was expected, so a client can fix its request
/// from the message alone.
public enum RequestValidator {
    /// Validates `request` and returns it with its inputs in the signature's order and the output names
    /// resolved (all outputs when none were asked for).
    public static func validate(
        _ request: InferenceRequest, against signature: ModelSignature, maxBatchSize: Int = 0, allowNonFinite: Bool = false
    ) throws(TernError) -> (inputs: [Tensor], outputs: [String]) {
        // Inputs given in the signature's order (what clients almost always send) need no lookup by name.
        let inOrder =
            request.inputs.count == signature.inputs.count
            && zip(request.inputs, signature.inputs).allSatisfy { tensor, spec in tensor.name == spec.name }
        var byName: [String: Tensor] = [:]
        if !inOrder {
            byName.reserveCapacity(request.inputs.count)
            for tensor in request.inputs {
                guard signature.input(named: tensor.name) != nil else {
                    let expected = signature.inputs.map(\.name).joined(separator: ", ")
                    throw .invalidArgument("unknown input '\(tensor.name)'; the model's inputs are: \(expected)")
                }
                guard byName.updateValue(tensor, forKey: tensor.name) == nil else {
                    throw .invalidArgument("input '\(tensor.name)' is given more than once")
                }
            }
        }
        var ordered: [Tensor] = []
        ordered.reserveCapacity(signature.inputs.count)
        for (position, spec) in signature.inputs.enumerated() {
            guard let tensor = inOrder ? request.inputs[position] : byName[spec.name] else {
                throw .invalidArgument(
                    "missing input '\(spec.name)' (\(spec.datatype) \(spec.shape)); the model needs: "
                        + signature.inputs.map(\.name).joined(separator: ", "))
            }
            guard tensor.datatype == spec.datatype else {
                throw .invalidArgument(
                    "input '\(spec.name)' has datatype \(tensor.datatype) but the model expects \(spec.datatype)")
            }
            guard spec.accepts(shape: tensor.shape) else {
                throw .invalidArgument(
                    "input '\(spec.name)' has shape \(tensor.shape) but the model expects \(spec.shape) "
                        + "(-1 = any size)")
            }
            if maxBatchSize > 0, let batch = tensor.shape.first, batch > maxBatchSize {
                throw .invalidArgument(
                    "input '\(spec.name)' has batch size \(batch), above the model's max_batch_size \(maxBatchSize)")
            }
            if !allowNonFinite { try checkFinite(tensor) }
            ordered.append(tensor)
        }
        var outputs: [String] = []
        if request.outputs.isEmpty {
            outputs = signature.outputs.map(\.name)
        } else {
            var seen = Set<String>()
            for name in request.outputs {
                guard signature.output(named: name) != nil else {
                    let known = signature.outputs.map(\.name).joined(separator: ", ")
                    throw .invalidArgument("unknown output '\(name)'; the model's outputs are: \(known)")
                }
                if seen.insert(name).inserted { outputs.append(name) }
            }
        }
        return (ordered, outputs)
    }

    /// Refuses NaN and infinities in a float input, naming the first one's position.
    static func checkFinite(_ tensor: Tensor) throws(TernError) {
        guard case .raw(let bytes) = tensor.contents else { return }
        func first<T: BinaryFloatingPoint>(_: T.Type) -> (Int, T)? {
            bytes.withUnsafeBytes { raw in
                let values = raw.bindMemory(to: T.self)
                for index in values.indices where !values[index].isFinite { return (index, values[index]) }
                return nil
            }
        }
        let found: (Int, String)?
        switch tensor.datatype {
        case .fp32: found = first(Float.self).map { ($0.0, "\($0.1)") }
        case .fp64: found = first(Double.self).map { ($0.0, "\($0.1)") }
        case .fp16: found = first(Float16.self).map { ($0.0, "\(Float($0.1))") }
        default: found = nil
        }
        if let (index, value) = found {
            throw .invalidArgument(
                "input '\(tensor.name)' holds \(value) at element \(index); this model takes finite "
                    + "numbers only (allow_non_finite: true in its config.yaml accepts NaN and infinities)")
        }
    }
}
