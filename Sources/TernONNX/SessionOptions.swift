/// How an ONNX Runtime session is created.
public struct SessionOptions: Sendable, Equatable {
    /// Graph optimisation level, as ONNX Runtime names them.
    public enum GraphOptimization: String, Sendable, CaseIterable {
        case disabled, basic, extended, all

        var ortValue: Int32 {
            switch self {
            case .disabled: 0
            case .basic: 1
            case .extended: 2
            case .all: 99
            }
        }
    }

    /// Threads one `Run` may use. The default of 1 suits serving: concurrency comes from several runs
    /// in parallel on the runner threads, and 1 thread per run never oversubscribes the cores.
    public var intraOpThreads: Int = 1
    /// Threads for running independent graph branches in parallel (1 = sequential execution).
    public var interOpThreads: Int = 1
    public var graphOptimization: GraphOptimization = .all
    /// Sessions created per model version; runs are spread over them. One session already accepts
    /// concurrent runs, so more than one only helps models whose kernels serialise.
    public var instances: Int = 1

    public init(
        intraOpThreads: Int = 1, interOpThreads: Int = 1, graphOptimization: GraphOptimization = .all,
        instances: Int = 1
    ) {
        self.intraOpThreads = intraOpThreads
        self.interOpThreads = interOpThreads
        self.graphOptimization = graphOptimization
        self.instances = instances
    }
}
