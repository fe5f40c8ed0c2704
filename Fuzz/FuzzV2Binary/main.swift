import FuzzSupport
// libFuzzer target: the v2 binary tensor extension (a JSON header, then raw tensor bytes). The first two
// bytes of the input give the JSON header's length (Inference-Header-Content-Length).
import NIOCore

@testable import TernCodecs

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzV2Binary(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = FuzzSupport.bytes(start, count)
    guard bytes.count >= 2 else { return 0 }
    let headerLength = Int(bytes[0]) | Int(bytes[1]) << 8
    let body = ByteBuffer(bytes: bytes.dropFirst(2))
    if let (request, _) = try? V2RequestDecoder.decode(body: body, headerLength: headerLength) {
        FuzzSupport.validate(request)
    }
    return 0
}
