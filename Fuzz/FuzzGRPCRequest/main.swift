// libFuzzer target: a gRPC ModelInferRequest (protobuf bytes) translated to the core's request, then validated.
import Foundation
import FuzzSupport

@testable import TernGRPC

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGRPCRequest(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    guard let message = try? Inference_ModelInferRequest(serializedBytes: FuzzSupport.bytes(start, count)) else { return 0 }
    if let request = try? GRPCRequestDecoder.decode(message) {
        FuzzSupport.validate(request)
    }
    return 0
}
