import TernCore

extension WireProtocol {
    /// Open Inference Protocol v2 over HTTP (JSON, or JSON with the binary tensor extension).
    public static let v2REST = WireProtocol(rawValue: "v2_rest")
    /// KServe v1 / TensorFlow Serving `:predict`.
    public static let kserveV1 = WireProtocol(rawValue: "kserve_v1")
    /// MLflow and SageMaker `/invocations`, and the configured Vertex AI and Azure ML predict routes.
    public static let invocations = WireProtocol(rawValue: "invocations")
}
