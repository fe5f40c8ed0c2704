// libFuzzer target: the bundle reader (a ZIP archive: limits, manifest, checksums, reference profile,
// model card, signature file) on arbitrary bytes.
import Foundation
import FuzzSupport
import TernBundle

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBundle(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let limits = BundleLimits(modelBytes: 1 << 20, profileBytes: 1 << 20, smallFileBytes: 1 << 20, maxCompressionRatio: 100)
    guard let bundle = try? ModelBundle(archive: Data(FuzzSupport.bytes(start, count)), limits: limits) else { return 0 }
    _ = try? bundle.decoded(ReferenceProfile.self, file: BundleFile.profile)
    _ = try? bundle.decoded(ValidationMetrics.self, file: BundleFile.metrics)
    _ = try? bundle.decoded(BundleSignature.self, file: BundleFile.signature)
    _ = try? bundle.archive()
    return 0
}
