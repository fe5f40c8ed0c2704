// libFuzzer target: the parsers of numbers from outside that once trapped a server with one request: durations
// (rollout intervals, alert rules), feedback (JSON and CSV, its times), prediction-log times, traffic policies
// and alert rule files.
import Foundation
import FuzzSupport
import TernCore
import TernMonitoring

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzParsers(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = FuzzSupport.bytes(start, count)
    let text = String(decoding: bytes, as: UTF8.self)
    _ = try? OutsideNumber.duration(text: text, "fuzz")
    if let number = Double(text) {
        _ = try? OutsideNumber.duration(seconds: number, "fuzz")
        _ = try? OutsideNumber.integer(number, "fuzz", in: OutsideNumber.epochMilliseconds)
    }
    _ = try? PredictionTime.parse(text, name: "fuzz")
    _ = try? FeedbackParser.json(Data(bytes), received: 0)
    _ = try? FeedbackParser.csv(text, received: 0)
    if let policy = try? JSONDecoder().decode(TrafficPolicy.self, from: Data(bytes)) {
        _ = try? policy.validate(versions: [1, 2, 3])
    }
    _ = try? AlertConfiguration.parse(yaml: text, source: "fuzz")
    return 0
}
