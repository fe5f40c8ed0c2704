/// The one error type of Tern's core.
///
/// It knows nothing of HTTP or gRPC: each front-end maps ``Code`` to its own status codes. The code is a
/// struct wrapping a private enum so that new codes can be added without breaking callers.
public struct TernError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case invalidArgument, notFound, unavailable, resourceExhausted, payloadTooLarge, internalError,
                runtimeNotFound, conflict, timedOut, unauthenticated, permissionDenied, rateLimited
        }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// The request is malformed or does not match the model's signature.
        public static let invalidArgument = Code(.invalidArgument)
        /// The model, version or named tensor does not exist.
        public static let notFound = Code(.notFound)
        /// The server or model is not ready (loading, unloading, shutting down).
        public static let unavailable = Code(.unavailable)
        /// A queue or limit is full; retry later.
        public static let resourceExhausted = Code(.resourceExhausted)
        /// The request body is larger than the configured limit.
        public static let payloadTooLarge = Code(.payloadTooLarge)
        /// A real fault inside Tern or the model runtime.
        public static let internalError = Code(.internalError)
        /// The change contradicts the current state: a duplicate version, deleting a version an alias names.
        public static let conflict = Code(.conflict)
        /// The request waited in a queue past its timeout.
        public static let timedOut = Code(.timedOut)
        /// The request carries no credentials, or ones that are not valid (unknown, expired, revoked).
        public static let unauthenticated = Code(.unauthenticated)
        /// The caller is known but may not do this (a scope it lacks, a model it has no grant for).
        public static let permissionDenied = Code(.permissionDenied)
        /// The caller (a key, a client address) sent more requests than its rate limit allows.
        public static let rateLimited = Code(.rateLimited)
        /// The ONNX Runtime library could not be found or opened.
        public static let runtimeNotFound = Code(.runtimeNotFound)

        public var description: String {
            switch wrapped {
            case .invalidArgument: "invalid argument"
            case .notFound: "not found"
            case .unavailable: "unavailable"
            case .resourceExhausted: "resource exhausted"
            case .payloadTooLarge: "payload too large"
            case .internalError: "internal error"
            case .runtimeNotFound: "runtime not found"
            case .conflict: "conflict"
            case .timedOut: "timed out"
            case .unauthenticated: "unauthenticated"
            case .permissionDenied: "permission denied"
            case .rateLimited: "rate limited"
            }
        }
    }

    public var code: Code
    public var message: String
    /// The underlying error, where there was one.
    public var cause: (any Error)?
    /// How long the client should wait before trying again (rate limits), when known.
    public var retryAfter: Duration?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { message }

    /// What a client is told of a fault (an internal error): its message may name files and internals, so
    /// the client gets a pointer to the server's log, which has it. Every front-end answers with this.
    public static let faultMessageForClients = "internal error; the server's log has the details"

    public static func invalidArgument(_ message: String) -> TernError { TernError(.invalidArgument, message) }
    public static func notFound(_ message: String) -> TernError { TernError(.notFound, message) }
    public static func conflict(_ message: String) -> TernError { TernError(.conflict, message) }
    public static func unavailable(_ message: String) -> TernError { TernError(.unavailable, message) }
    public static func internalError(_ message: String, cause: (any Error)? = nil) -> TernError {
        TernError(.internalError, message, cause: cause)
    }
}
