import Foundation
import GRPCCore
import TernCore
import Testing

@testable import TernGRPC

@Suite("gRPC translation")
struct GRPCTranslationTests {
    func request(_ datatype: String, shape: [Int64], _ fill: (inout Inference_InferTensorContents) -> Void)
        -> Inference_ModelInferRequest
    {
        var message = Inference_ModelInferRequest()
        var input = Inference_ModelInferRequest.InferInputTensor()
        input.name = "x"
        input.datatype = datatype
        input.shape = shape
        fill(&input.contents)
        message.inputs = [input]
        return message
    }

    @Test("typed contents become typed buffers, with narrow integer types range-checked")
    func typed() throws {
        let int8 = try GRPCRequestDecoder.decode(request("INT8", shape: [3]) { $0.intContents = [-128, 0, 127] })
        #expect(int8.inputs[0].values(as: Int8.self) == [-128, 0, 127])
        let uint16 = try GRPCRequestDecoder.decode(request("UINT16", shape: [2]) { $0.uintContents = [0, 65535] })
        #expect(uint16.inputs[0].values(as: UInt16.self) == [0, 65535])
        let fp64 = try GRPCRequestDecoder.decode(request("FP64", shape: [1, 2]) { $0.fp64Contents = [0.1, -2.5] })
        #expect(fp64.inputs[0].values(as: Double.self) == [0.1, -2.5])
        let bytes = try GRPCRequestDecoder.decode(request("BYTES", shape: [2]) { $0.bytesContents = [Data("a".utf8), Data()] })
        #expect(bytes.inputs[0].strings == ["a", ""])
        #expect(throws: TernError.self) {
            try GRPCRequestDecoder.decode(request("INT8", shape: [1]) { $0.intContents = [128] })
        }
        #expect(throws: TernError.self) {
            try GRPCRequestDecoder.decode(request("UINT8", shape: [1]) { $0.intContents = [1] })
        }
    }

    @Test("parameters of every kind, the request id, and requested outputs")
    func parameters() throws {
        var message = request("FP32", shape: [1]) { $0.fp32Contents = [1] }
        message.id = "abc"
        for (key, choice) in [
            ("b", Inference_InferParameter.OneOf_ParameterChoice.boolParam(true)),
            ("i", .int64Param(-3)), ("s", .stringParam("x")), ("d", .doubleParam(0.5)),
            ("u", .uint64Param(7)),
        ] {
            var parameter = Inference_InferParameter()
            parameter.parameterChoice = choice
            message.parameters[key] = parameter
        }
        var output = Inference_ModelInferRequest.InferRequestedOutputTensor()
        output.name = "y"
        message.outputs = [output]
        let decoded = try GRPCRequestDecoder.decode(message)
        #expect(decoded.id == "abc")
        #expect(decoded.outputs == ["y"])
        #expect(decoded.parameters == ["b": .bool(true), "i": .int(-3), "s": .string("x"), "d": .double(0.5), "u": .int(7)])
    }

    @Test("responses carry every output raw, BYTES length-prefixed")
    func response() throws {
        let response = InferenceResponse(
            modelName: "m", modelVersion: "2", id: "r",
            outputs: [
                try Tensor(name: "p", shape: [2], values: [Float(0.25), 0.75]),
                try Tensor(name: "s", shape: [1], strings: ["hi"]),
            ])
        let message = GRPCResponseEncoder.encode(response)
        #expect(message.modelVersion == "2" && message.id == "r")
        #expect(message.outputs.map(\.datatype) == ["FP32", "BYTES"])
        #expect(message.rawOutputContents[0] == Data([Float(0.25), 0.75].withUnsafeBytes { Array($0) }))
        #expect(message.rawOutputContents[1] == Data([2, 0, 0, 0, 104, 105]))
    }

    @Test("core errors map to the gRPC status the fault calls for")
    func statusCodes() {
        #expect(TernError.invalidArgument("x").rpcErrorCode == .invalidArgument)
        #expect(TernError.notFound("x").rpcErrorCode == .notFound)
        #expect(TernError.unavailable("x").rpcErrorCode == .unavailable)
        #expect(TernError(.resourceExhausted, "x").rpcErrorCode == .resourceExhausted)
        #expect(TernError.internalError("x").rpcErrorCode == .internalError)
        #expect(TernError.notFound("unknown model 'm'").rpcErrorMessage == "unknown model 'm'")
    }
}
