import TernCore
import Testing

@Suite("Request validation")
struct ValidationTests {
    let signature = ModelSignature(
        inputs: [
            TensorSpec(name: "features", datatype: .fp32, shape: [-1, 3]),
            TensorSpec(name: "purpose", datatype: .bytes, shape: [-1, 1]),
        ],
        outputs: [
            TensorSpec(name: "label", datatype: .int64, shape: [-1]),
            TensorSpec(name: "probabilities", datatype: .fp32, shape: [-1, 2]),
        ])

    func features(_ rows: Int, columns: Int = 3) throws -> Tensor {
        try Tensor(name: "features", shape: [rows, columns], values: [Float](repeating: 1, count: rows * columns))
    }

    func purpose(_ rows: Int) throws -> Tensor {
        try Tensor(name: "purpose", shape: [rows, 1], strings: Array(repeating: "car", count: rows))
    }

    @Test("inputs come back in signature order, all outputs when none are named")
    func ordering() throws {
        let request = InferenceRequest(inputs: [try purpose(2), try features(2)])
        let (inputs, outputs) = try RequestValidator.validate(request, against: signature)
        #expect(inputs.map(\.name) == ["features", "purpose"])
        #expect(outputs == ["label", "probabilities"])
        let subset = InferenceRequest(inputs: [try purpose(1), try features(1)], outputs: ["probabilities", "probabilities"])
        #expect(try RequestValidator.validate(subset, against: signature).outputs == ["probabilities"])
    }

    @Test(
        "each mismatch is refused with a message naming the input",
        arguments: [
            ("unknown", "unknown input 'other'"),
            ("missing", "missing input 'purpose'"),
            ("duplicate", "input 'features' is given more than once"),
            ("datatype", "input 'purpose' has datatype FP32 but the model expects BYTES"),
            ("shape", "input 'features' has shape [2, 4] but the model expects [-1, 3]"),
            ("rank", "input 'features' has shape [6]"),
            ("batch", "batch size 5, above the model's max_batch_size 4"),
            ("output", "unknown output 'nope'"),
        ])
    func mismatches(kind: String, message: String) throws {
        var request = InferenceRequest(inputs: [try features(2), try purpose(2)])
        switch kind {
        case "unknown": request.inputs.append(try Tensor(name: "other", shape: [1], values: [Float(1)]))
        case "missing": request.inputs.removeLast()
        case "duplicate": request.inputs.append(try features(2))
        case "datatype": request.inputs[1] = try Tensor(name: "purpose", shape: [2, 1], values: [Float(1), 2])
        case "shape": request.inputs[0] = try features(2, columns: 4)
        case "rank": request.inputs[0] = try Tensor(name: "features", shape: [6], values: [Float](repeating: 0, count: 6))
        case "batch": request.inputs = [try features(5), try purpose(5)]
        case "output": request.outputs = ["nope"]
        default: Issue.record("unknown case")
        }
        do {
            _ = try RequestValidator.validate(request, against: signature, maxBatchSize: 4)
            Issue.record("\(kind) passed validation")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains(message), "\(error.message)")
        }
    }
    @Test("NaN and infinities are refused, naming the element, unless the model allows them")
    func nonFinite() throws {
        for bad in [Float.nan, .infinity, -.infinity] {
            let request = InferenceRequest(inputs: [
                try Tensor(name: "features", shape: [1, 3], values: [1, bad, 2]), try purpose(1),
            ])
            #expect { try RequestValidator.validate(request, against: signature) } throws: {
                "\($0)".contains("input 'features' holds \(bad) at element 1")
            }
            #expect(try RequestValidator.validate(request, against: signature, allowNonFinite: true).inputs.count == 2)
        }
    }
}

@Suite("Tensors and shapes")
struct TensorTests {
    @Test("element counts: negative, overflowing and oversized shapes are refused")
    func shapes() throws {
        #expect(try Shape.elementCount([2, 3, 4], name: "x") == 24)
        #expect(try Shape.elementCount([], name: "x") == 1)
        #expect(try Shape.elementCount([0, 5], name: "x") == 0)
        for bad in [[-1, 3], [Int.max, 2], [1 << 20, 1 << 20], [0, Int.max]] {
            #expect(throws: TernError.self) { try Shape.elementCount(bad, name: "x") }
        }
    }

    @Test("contents must match the shape and the datatype")
    func contents() throws {
        #expect(throws: TernError.self) { try Tensor(name: "x", shape: [2], values: [Float(1)]) }
        #expect(throws: TernError.self) { try Tensor(name: "x", datatype: .fp32, shape: [1], contents: .strings([[1]])) }
        #expect(throws: TernError.self) { try Tensor(name: "x", datatype: .bytes, shape: [1], contents: .raw([1])) }
        let tensor = try Tensor(name: "x", shape: [2, 2], values: [Int16(1), -2, 3, Int16.min])
        #expect(tensor.values(as: Int16.self) == [1, -2, 3, Int16.min])
        #expect(tensor.values(as: Int32.self) == nil)
        #expect(DataType.allCases.count == 13)
        #expect(DataType.fp16.byteSize == 2 && DataType.bytes.byteSize == nil)
    }

    @Test("version policies select from the versions found")
    func versionPolicy() {
        #expect(VersionPolicy.latest(1).select(from: [3, 1, 2]) == [3])
        #expect(VersionPolicy.latest(2).select(from: [3, 1, 2]) == [2, 3])
        #expect(VersionPolicy.all.select(from: [3, 1, 2]) == [1, 2, 3])
        #expect(VersionPolicy.specific([1, 5]).select(from: [3, 1, 2]) == [1])
    }

    @Test("the catalog resolves the newest version by default, and names what is loaded")
    func catalog() throws {
        struct Stub: InferenceModel {
            let signature = ModelSignature(inputs: [], outputs: [])
            let metadata = ModelMetadata()
            func run(inputs: [Tensor], outputs: [String]) async throws -> [Tensor] { [] }
        }
        let catalog = ModelCatalog()
        for version in [1, 3, 2] {
            catalog.add(ServedModel(name: "m", version: version, model: Stub(), config: ModelConfig(), platform: "p"))
        }
        #expect(try catalog.resolve(name: "m", version: nil).version == 3)
        #expect(try catalog.resolve(name: "m", version: "2").version == 2)
        do {
            _ = try catalog.resolve(name: "m", version: "9")
            Issue.record("resolved a missing version")
        } catch {
            #expect(error.code == .notFound)
            #expect(error.message.contains("loaded versions: 1, 2, 3"))
        }
        #expect(throws: TernError.self) { try catalog.resolve(name: "other", version: nil) }
        catalog.remove(name: "m", version: 3)
        #expect(catalog.versions(of: "m") == [1, 2])
    }

    @Test("aliases and model@reference resolve; the default wins over the newest")
    func catalogAliases() throws {
        struct Stub: InferenceModel {
            let signature = ModelSignature(inputs: [], outputs: [])
            let metadata = ModelMetadata()
            func run(inputs: [Tensor], outputs: [String]) async throws -> [Tensor] { [] }
        }
        let catalog = ModelCatalog()
        catalog.update { state in
            for version in [1, 2, 3] {
                state.models["m", default: [:]][version] = ServedModel(
                    name: "m", version: version, model: Stub(), config: ModelConfig(), platform: "p")
            }
            state.aliases["m"] = ["production": 2, "canary": 3, "gone": 7]
            state.defaults["m"] = 2
        }
        #expect(try catalog.resolve(name: "m", version: nil).version == 2)
        #expect(try catalog.resolve(name: "m", version: "").version == 2)
        #expect(try catalog.resolve(name: "m", version: "canary").version == 3)
        #expect(try catalog.resolve(name: "m@canary", version: nil).version == 3)
        #expect(try catalog.resolve(name: "m@1", version: nil).version == 1)
        #expect(try catalog.resolve(name: "m@1", version: "1").version == 1)
        #expect { try catalog.resolve(name: "m@1", version: "2") } throws: { ($0 as? TernError)?.code == .invalidArgument }
        #expect { try catalog.resolve(name: "m@staging", version: nil) } throws: {
            ($0 as? TernError)?.code == .notFound && "\($0)".contains("aliases: canary, gone, production")
        }
        #expect { try catalog.resolve(name: "m", version: "gone") } throws: { ($0 as? TernError)?.code == .unavailable }
        #expect { try catalog.resolve(name: "x@1", version: nil) } throws: { "\($0)".contains("unknown model 'x'") }
    }
}
