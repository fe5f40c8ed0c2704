import FuzzSupport
// libFuzzer target: the Open Inference Protocol v2 JSON request decoder, then validation.
import NIOCore

@testable import TernCodecs

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzV2JSON(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let body = ByteBuffer(bytes: FuzzSupport.bytes(start, count))
    if let (request, _) = try? V2RequestDecoder.decode(body: body, headerLength: nil) {
        FuzzSupport.validate(request)
    }
    return 0
}
