import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import TernCore

extension TernError.Code {
    /// The HTTP status for an error of this code.
    var httpStatus: HTTPResponse.Status {
        switch self {
        case .invalidArgument: .badRequest
        case .notFound: .notFound
        case .unavailable: .serviceUnavailable
        case .resourceExhausted: .serviceUnavailable
        case .payloadTooLarge: .contentTooLarge
        case .conflict: .conflict
        default: .internalServerError
        }
    }
}

/// Turns every error into a JSON body `{"error": "..."}` with the right status, as the Open Inference
/// Protocol asks. Core errors keep their message; framework errors (unknown route, wrong method) keep theirs.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as TernError {
            if error.code == .internalError {
                context.logger.error("request failed", metadata: ["error": "\(error.message)", "path": "\(request.uri.path)"])
            }
            var response = Self.response(error.code.httpStatus, error.message)
            if error.code == .resourceExhausted { response.headers[.retryAfter] = "1" }
            return response
        } catch let error as HTTPError {
            let message = error.body ?? (error.status == .notFound
                ? "no route for \(request.method) \(request.uri.path)" : error.status.reasonPhrase)
            return Self.response(error.status, message)
        } catch is NIOTooManyBytesError {
            return Self.response(.contentTooLarge, "the request body is larger than the server's limit")
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return Self.response(.internalServerError, "internal error: \(error)")
        }
    }

    static func response(_ status: HTTPResponse.Status, _ message: String) -> Response {
        var json = JSONWriter(capacity: message.utf8.count + 16)
        json.raw("{\"error\":")
        json.string(message)
        json.byte(UInt8(ascii: "}"))
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: json.buffer))
    }
}
