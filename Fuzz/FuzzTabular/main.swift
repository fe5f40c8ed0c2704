import FuzzSupport
// libFuzzer target: the tabular request formats (KServe v1 instances, MLflow dataframe_split/records,
// Vertex, Azure ML, CSV) and the CSV reader bundles use for reference and holdout data.
import TernBundle
import TernCodecs
import TernCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTabular(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let text = String(decoding: FuzzSupport.bytes(start, count), as: UTF8.self)
    for names in [FuzzSupport.featureNames, nil] {
        if let request = try? TabularInput.request(json: text, signature: FuzzSupport.tabular, featureNames: names) {
            _ = try? RequestValidator.validate(request, against: FuzzSupport.tabular)
        }
        if let request = try? TabularInput.request(csv: text, signature: FuzzSupport.tabular, featureNames: names) {
            _ = try? RequestValidator.validate(request, against: FuzzSupport.tabular)
        }
    }
    _ = try? CSVTable(text: text)
    return 0
}
