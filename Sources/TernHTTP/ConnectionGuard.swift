import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization
import TernCore

/// How long an HTTP connection may take over each part of a request, how many may be open, and how a
/// shutdown drains them. Every value has a `tern serve` flag (docs/operations.md).
public struct ConnectionLimits: Sendable {
    /// From a request's first byte to the end of its head (request line and headers): slow-loris clients.
    public var headerTimeout: Duration
    /// The longest silence while a request body is arriving: half-sent requests.
    public var bodyTimeout: Duration
    /// A keep-alive connection with no request in progress is closed after this.
    public var idleTimeout: Duration
    /// Connections open at once; past it a connection's first request gets a 503 and the connection closes.
    public var maxConnections: Int
    /// On shutdown, how long an idle keep-alive connection stays open for a request already on its way.
    public var drainLinger: Duration

    public init(
        headerTimeout: Duration = .seconds(10), bodyTimeout: Duration = .seconds(30), idleTimeout: Duration = .seconds(60),
        maxConnections: Int = 4096, drainLinger: Duration = .milliseconds(500)
    ) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.drainLinger = drainLinger
    }
}

/// The number of open HTTP connections, shared by every connection's ``ConnectionGuard``.
public final class ConnectionCount: Sendable {
    let value = Atomic<Int>(0)
    public init() {}
}

/// One connection's limits: the header, body and idle timeouts, the connection cap, closing after a 413, and
/// a graceful drain on shutdown. It sits first among the handlers after the HTTP codec, so it sees every
/// request and every answer, whichever path (``V2InferFastPath`` or a Hummingbird route) serves it.
///
/// Drain: on the server's quiesce event an idle connection stays open for ``ConnectionLimits/drainLinger``
/// (a keep-alive client's next request may be on the wire), a request in progress is answered with
/// `Connection: close`, and the connection then closes. The event is not passed on: closing is this handler's job.
///
/// Timers cost nothing per request: the handler only notes the time of each change, and one scheduled check
/// per connection closes it when the deadline of its current phase has passed (else looks again at the new one).
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private enum Phase {
        /// No request in progress, nothing of the next one read.
        case idle
        /// Bytes of a request head have arrived; the head is not complete.
        case head
        /// A head was read; its body is arriving.
        case body
        /// Every request read has its end; answers are being written.
        case answering
    }

    private let limits: ConnectionLimits
    private let count: ConnectionCount
    /// Requests per client address (`--ip-rate-limit`); nil: none.
    private let addressLimiter: RateLimiter?
    private var address: String?
    /// Web origins whose pages may call this server (`--cors-origin`; `*`: any).
    private let allowedOrigins: Set<String>
    /// The allowed origin of the request being answered: its answer carries the CORS headers.
    private var corsOrigin: String?
    /// A preflight answered here: the rest of its request is dropped.
    private var swallowing = false
    private var phase = Phase.idle
    /// When the current phase started, or (for `body`) when its last chunk arrived.
    private var since = NIODeadline.now()
    /// Requests read whose answers have not ended (HTTP pipelining may read several).
    private var unanswered = 0
    private var refused = false
    private var draining = false
    private var closeAfterAnswer = false
    private var closed = false
    private var check: Scheduled<Void>?

    private static let logger = Logger(label: "tern.http")

    init(limits: ConnectionLimits, count: ConnectionCount, addressLimiter: RateLimiter?, allowedOrigins: Set<String>) {
        self.limits = limits
        self.count = count
        self.addressLimiter = addressLimiter
        self.allowedOrigins = allowedOrigins
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let open = count.value.add(1, ordering: .relaxed).newValue
        if open > limits.maxConnections {
            refused = true
            Self.logger.warning("connection refused: at the limit of open connections", metadata: [
                "limit": "\(limits.maxConnections)", "flag": "--max-connections"])
        }
        address = context.channel.remoteAddress?.ipAddress
        // Sees the raw bytes before the HTTP codec, to tell a head in progress from an idle connection.
        try? context.pipeline.syncOperations.addHandler(ByteWatcher(self), position: .first)
        since = .now()
        schedule(context: context, at: since + .init(limits.idleTimeout))
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        count.value.subtract(1, ordering: .relaxed)
        check?.cancel()
        check = nil
    }

    /// Called by ``ByteWatcher`` for every read.
    fileprivate func bytesArrived() {
        switch phase {
        case .idle:
            phase = .head
            since = .now()
        case .body:
            since = .now()
        case .head, .answering:
            break
        }
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closed else { return }
        if swallowing {
            if case .end = unwrapInboundIn(data) {
                swallowing = false
                phase = .idle
                since = .now()
            }
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let head):
            if refused {
                refuse(context: context, ErrorAnswer(status: .serviceUnavailable, message: "the server is at its limit of "
                    + "\(limits.maxConnections) open connections (--max-connections); retry later"), retryAfter: "1")
                return
            }
            if let addressLimiter, let address, !Self.isHealth(head), let wait = addressLimiter.take(address) {
                let error = addressLimiter.refusal("client \(address)", wait: wait, flag: "--ip-rate-limit")
                let answer = ErrorAnswer(error)
                refuse(context: context, answer, retryAfter: answer.headers[.retryAfter] ?? "1")
                return
            }
            corsOrigin = nil
            if let origin = head.headerFields[.origin] {
                let allowed = allowedOrigins.contains(origin) || allowedOrigins.contains("*")
                if allowed, head.method == .options, head.headerFields[.accessControlRequestMethod] != nil {
                    preflight(context: context, origin: origin)
                    return
                }
                if !allowed, head.method != .get, head.method != .head {
                    // A page on another site can send this (a form, a text/plain fetch) without asking first.
                    refuse(context: context, ErrorAnswer(status: .forbidden, message: "a request from a web page at "
                        + "\(Echo.clip(origin)) is refused: allow the page's origin with --cors-origin"), retryAfter: nil)
                    return
                }
                if allowed { corsOrigin = origin }
            }
            unanswered += 1
            phase = .body
            since = .now()
        case .body:
            break
        case .end:
            phase = .answering
        }
        context.fireChannelRead(data)
    }

    /// Probes are never limited.
    private static func isHealth(_ head: HTTPRequest) -> Bool {
        guard let path = head.path else { return false }
        return path.hasPrefix("/v2/health/") || path == "/ping"
    }

    /// The answer to a request refused before it is read (a connection over the cap: 503; a client over its
    /// rate: 429), then close: its body, if any, is not read.
    private func refuse(context: ChannelHandlerContext, _ answer: ErrorAnswer, retryAfter: String?) {
        closed = true
        var response = HTTPResponse(status: answer.status, headerFields: answer.headers)
        response.headerFields[.contentLength] = String(answer.body.readableBytes)
        response.headerFields[.connection] = "close"
        response.headerFields[.retryAfter] = retryAfter
        context.write(wrapOutboundOut(.head(response)), promise: nil)
        context.write(wrapOutboundOut(.body(answer.body)), promise: nil)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
    }

    /// A CORS preflight from an allowed origin: answered here, the request never reaches a route.
    private func preflight(context: ChannelHandlerContext, origin: String) {
        swallowing = true
        var response = HTTPResponse(status: .noContent)
        response.headerFields[.accessControlAllowOrigin] = origin
        response.headerFields[.accessControlAllowMethods] = "GET, POST, PUT, DELETE"
        response.headerFields[.accessControlAllowHeaders] =
            "authorization, content-type, x-api-key, x-request-id, traceparent, inference-header-content-length"
        response.headerFields[.accessControlMaxAge] = "600"
        response.headerFields[.vary] = "Origin"
        if draining { response.headerFields[.connection] = "close" }
        context.write(wrapOutboundOut(.head(response)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    // MARK: Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head):
            if let corsOrigin {
                head.headerFields[.accessControlAllowOrigin] = corsOrigin
                head.headerFields[.accessControlExposeHeaders] = "X-Request-ID, Inference-Header-Content-Length, Retry-After"
                head.headerFields[.vary] = "Origin"
                self.corsOrigin = nil
                if !(draining || closeAfterAnswer || Self.saysClose(head)) {
                    context.write(wrapOutboundOut(.head(head)), promise: promise)
                    return
                }
            }
            if head.status == .contentTooLarge { closeAfterAnswer = true }  // the rest of the body is not read
            if draining || closeAfterAnswer || Self.saysClose(head) {
                closeAfterAnswer = true
                head.headerFields[.connection] = "close"
                context.write(wrapOutboundOut(.head(head)), promise: promise)
            } else {
                context.write(data, promise: promise)
            }
        case .body:
            context.write(data, promise: promise)
        case .end:
            unanswered = max(0, unanswered - 1)
            if closeAfterAnswer {
                context.write(data, promise: promise)
                context.flush()
                finish(context: context)
                return
            }
            if unanswered == 0, case .answering = phase {
                phase = .idle
                since = .now()
            }
            context.write(data, promise: promise)
        }
    }

    /// Closes after an answer. While the client is still sending a body nobody will read (a 413), a plain
    /// close would make the kernel reset the connection, and a reset can destroy the answer before the client
    /// reads it; so the connection first half-closes (the client reads the answer, then the end), discards
    /// what still arrives for a moment (``ConnectionLimits/drainLinger``, at least a second), then closes.
    private func finish(context: ChannelHandlerContext) {
        guard !closed else { return }
        closed = true
        guard case .body = phase else {
            context.close(promise: nil)
            return
        }
        context.close(mode: .output, promise: nil)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .init(max(limits.drainLinger, .seconds(1)))) {
            bound.value.close(promise: nil)
        }
    }

    /// A close asked for by a handler after this one (``V2InferFastPath`` after a 413) lingers the same way.
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode == .all, !closed, case .body = phase {
            finish(context: context)
            promise?.succeed()
            return
        }
        context.close(mode: mode, promise: promise)
    }

    /// Whether an answer carries `Connection: close` (without allocating for the common answer that does not).
    private static func saysClose(_ head: HTTPResponse) -> Bool {
        guard let value = head.headerFields[.connection], value.utf8.count == 5 else { return false }
        return value.lowercased() == "close"
    }

    // MARK: Deadlines

    private func deadline() -> NIODeadline? {
        switch phase {
        case .idle: since + .init(draining ? limits.drainLinger : limits.idleTimeout)
        case .head: since + .init(limits.headerTimeout)
        case .body: since + .init(limits.bodyTimeout)
        case .answering: nil
        }
    }

    private func schedule(context: ChannelHandlerContext, at deadline: NIODeadline) {
        check?.cancel()
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        check = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = bound.value
            handler.check = nil
            handler.expire(context: context)
        }
    }

    /// Closes the connection when its current phase is past its deadline, else looks again at that deadline.
    private func expire(context: ChannelHandlerContext) {
        guard !closed else { return }
        guard let deadline = deadline() else {
            // Answering: look again after the idle timeout (the phase changes when the answer ends).
            schedule(context: context, at: .now() + .init(limits.idleTimeout))
            return
        }
        guard deadline <= .now() else {
            schedule(context: context, at: deadline)
            return
        }
        if !draining {
            let reason: String = switch phase {
            case .idle: "idle"
            case .head: "request head not complete within the header timeout (--header-timeout)"
            case .body: "no request body data within the body timeout (--body-timeout)"
            case .answering: "answering"
            }
            Self.logger.debug("closing connection", metadata: ["reason": "\(reason)"])
        }
        closed = true
        context.close(promise: nil)
    }

    // MARK: Shutdown

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        draining = true
        switch phase {
        case .idle:
            since = .now()
            schedule(context: context, at: since + .init(limits.drainLinger))
        case .head, .body, .answering:
            closeAfterAnswer = true  // its answer carries Connection: close
        }
    }
}

/// Tells a ``ConnectionGuard`` when bytes arrive, before the HTTP codec has made a request of them.
private final class ByteWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let owner: ConnectionGuard

    init(_ owner: ConnectionGuard) { self.owner = owner }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        owner.bytesArrived()
        context.fireChannelRead(data)
    }
}

extension HTTPFrontEndConfiguration {
    /// The connection guard for Hummingbird's `additionalChannelHandlers`: one per connection, placed first.
    public func connectionGuard(count: ConnectionCount) -> any RemovableChannelHandler {
        ConnectionGuard(limits: connections, count: count, addressLimiter: access.addressLimiter, allowedOrigins: Set(allowedOrigins))
    }
}
