import GRPCCore
import TernCore

extension TernError: RPCErrorConvertible {
    /// The gRPC status for a core error: the fault decides it, as the REST front-end's HTTP statuses.
    public var rpcErrorCode: RPCError.Code {
        switch code {
        case .invalidArgument: .invalidArgument
        case .notFound: .notFound
        case .unavailable: .unavailable
        case .timedOut: .deadlineExceeded
        case .resourceExhausted: .resourceExhausted
        case .payloadTooLarge: .resourceExhausted
        case .conflict: .failedPrecondition
        case .unauthenticated: .unauthenticated
        case .permissionDenied: .permissionDenied
        case .rateLimited: .resourceExhausted
        default: .internalError
        }
    }

    public var rpcErrorMessage: String {
        rpcErrorCode == .internalError ? TernError.faultMessageForClients : message
    }
}
