import TernCodecs
import TernCore

/// A prediction as the log's writer hands it to a store: the request's own tensors, not yet encoded. A
/// database store packs entries into compact blocks (``PredictionBlock``); JSON Lines files and readers get
/// the JSON form (``record``), made only when it is needed.
public struct PredictionEntry: Sendable {
    /// Milliseconds since the Unix epoch, when the request was received.
    public var time: Int64
    public var requestID: String
    public var model: String
    public var version: Int
    public var `protocol`: String
    public var latencyMicroseconds: Int64
    public var caller: String?
    public var traceID: String?
    public var inputs: [Tensor]
    public var outputs: [Tensor]
    /// The names a `[rows, k]` input is spread into (the model's feature names).
    public var featureNames: [String]?
    /// Fields stored as `"[redacted]"`: their values never reach the store.
    public var redact: Set<String>

    public init(
        time: Int64, requestID: String, model: String, version: Int, protocol: String, latencyMicroseconds: Int64,
        caller: String? = nil, traceID: String? = nil, inputs: [Tensor], outputs: [Tensor], featureNames: [String]? = nil,
        redact: Set<String> = []
    ) {
        self.time = time
        self.requestID = requestID
        self.model = model
        self.version = version
        self.protocol = `protocol`
        self.latencyMicroseconds = latencyMicroseconds
        self.caller = caller
        self.traceID = traceID
        self.inputs = inputs
        self.outputs = outputs
        self.featureNames = featureNames
        self.redact = redact
    }

    /// The entry as the API shows it: inputs and outputs as JSON rows.
    public var record: PredictionRecord {
        PredictionRecord(
            time: time, requestID: requestID, model: model, version: version, protocol: `protocol`,
            latencyMicroseconds: latencyMicroseconds, caller: caller, traceID: traceID,
            inputs: PredictionRecordEncoder.rows(inputs, featureNames: featureNames, redact: redact),
            outputs: PredictionRecordEncoder.rows(outputs, redact: redact))
    }
}
