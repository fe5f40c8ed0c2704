import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import TernCodecs
import TernCore

extension TernError.Code {
    /// The HTTP status for an error of this code.
    package var httpStatus: HTTPResponse.Status {
        switch self {
        case .invalidArgument: .badRequest
        case .notFound: .notFound
        case .unavailable: .serviceUnavailable
        case .resourceExhausted: .serviceUnavailable
        case .timedOut: .serviceUnavailable
        case .payloadTooLarge: .contentTooLarge
        case .conflict: .conflict
        case .unauthenticated: .unauthorized
        case .permissionDenied: .forbidden
        case .rateLimited: .tooManyRequests
        default: .internalServerError
        }
    }
}

/// An error as every HTTP answer of Tern carries it, whichever path served the request: the status for its
/// code, `Retry-After` when a queue is full, and the body `{"error": "..."}`.
package struct ErrorAnswer {
    var status: HTTPResponse.Status
    var headers: HTTPFields
    var body: ByteBuffer
    /// A fault of Tern's or the runtime's (500), worth a log line; the others are the client's.
    var isFault: Bool

    init(_ error: any Error) {
        let (status, message) = Self.clientFacing(error)
        self.init(status: status, message: message)
        if let error = error as? TernError {
            if error.code == .resourceExhausted { headers[.retryAfter] = "1" }
            if error.code == .unauthenticated { headers[.wwwAuthenticate] = #"Bearer realm="tern""# }
            if let wait = error.retryAfter {
                headers[.retryAfter] = String(max(1, wait.components.seconds + (wait.components.attoseconds > 0 ? 1 : 0)))
            }
        }
    }

    /// What a client is told of an error, whatever answers it (JSON here, the console's pages): the status for
    /// its code and its message; a fault's message may name files and internals, so the client gets a pointer
    /// to the log, which has it.
    package static func clientFacing(_ error: any Error) -> (status: HTTPResponse.Status, message: String) {
        switch error {
        case let error as TernError:
            let status = error.code.httpStatus
            return (status, status == .internalServerError ? TernError.faultMessageForClients : error.message)
        case let error as HTTPError where error.status != .internalServerError:
            return (error.status, error.body ?? error.status.reasonPhrase)
        case is NIOTooManyBytesError:
            return (.contentTooLarge, "the request body is larger than the server's limit")
        default:
            return (.internalServerError, TernError.faultMessageForClients)
        }
    }

    init(status: HTTPResponse.Status, message: String) {
        var json = JSONWriter(capacity: message.utf8.count + 16)
        json.raw("{\"error\":")
        json.string(message)
        json.byte(UInt8(ascii: "}"))
        self.status = status
        self.headers = [.contentType: "application/json"]
        self.body = json.buffer
        self.isFault = status == .internalServerError
    }

    var response: Response { Response(status: status, headers: headers, body: .init(byteBuffer: body)) }
}

/// An inference's failure, with the request id its answer carries.
struct IdentifiedError: Error {
    var error: any Error
    var requestID: String
}

/// Turns every error into a JSON body `{"error": "..."}` with the right status, as the Open Inference
/// Protocol asks. Core errors keep their message; framework errors (unknown route, wrong method) keep theirs.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    /// The server's routes: a path served under other methods answers 405 with `Allow`, not 404.
    var routes: RouteTable?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && error.body == nil {
            let allowed = routes?.methods(for: request.uri.path) ?? []
            guard !allowed.isEmpty, !allowed.contains(request.method.rawValue) else {
                return ErrorAnswer(status: .notFound, message: "no route for \(request.method) \(request.uri.path)").response
            }
            var answer = ErrorAnswer(
                status: .methodNotAllowed,
                message: "\(request.method) is not served on \(request.uri.path); it answers \(allowed.joined(separator: ", "))")
            answer.headers[.allow] = allowed.joined(separator: ", ")
            return answer.response
        } catch let error as HTTPError {
            let message =
                error.body
                ?? (error.status == .notFound
                    ? "no route for \(request.method) \(request.uri.path)" : error.status.reasonPhrase)
            return ErrorAnswer(status: error.status, message: message).response
        } catch let error as IdentifiedError {
            // An inference the core has counted, logged and observed: answered with its request id.
            var answer = ErrorAnswer(error.error)
            answer.headers[.requestID] = error.requestID
            return answer.response
        } catch {
            let answer = ErrorAnswer(error)
            if answer.isFault {
                context.logger.error("request failed", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            }
            return answer.response
        }
    }
}
