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
    /// The slowest a request body may arrive, in bytes a second, averaged from its head on, once
    /// ``minBodyRateGrace`` has passed: a body trickling a byte every few seconds is closed. 0: no minimum.
    public var minBodyRate: Int
    public var minBodyRateGrace: Duration

    public init(
        headerTimeout: Duration = .seconds(10), bodyTimeout: Duration = .seconds(30), idleTimeout: Duration = .seconds(60),
        maxConnections: Int = 4096, drainLinger: Duration = .milliseconds(500), minBodyRate: Int = 240,
        minBodyRateGrace: Duration = .seconds(5)
    ) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.drainLinger = drainLinger
        self.minBodyRate = minBodyRate
        self.minBodyRateGrace = minBodyRateGrace
    }
}

/// The number of open HTTP connections, shared by every connection's ``ConnectionGuard``.
public final class ConnectionCount: Sendable {
    let value = Atomic<Int>(0)
    public init() {}

    /// Connections open now.
    public var current: Int { value.load(ordering: .relaxed) }
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
/// A phase whose deadline is earlier than the scheduled check (a head's, after an idle wait) moves it earlier.
///
/// Closing never loses an answer: a connection closes only once the last byte of its final answer has been
/// written to the socket (the write's promise), however large the answer and however slowly the client
/// reads; a close asked for by a handler after this one waits for that write the same way.
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
    /// The names `Host` may give, lowercased bytes; nil: any (``HTTPFrontEndConfiguration/allowedHosts``).
    private let allowedHosts: [[UInt8]]?
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
    /// When the scheduled check runs.
    private var checkAt = NIODeadline.distantFuture
    /// The current body's first moment and its bytes so far (the minimum body rate).
    private var bodyStart = NIODeadline.now()
    private var bodyBytes = 0
    /// The write of the final answer before a close, while it is in progress: the close waits for it.
    private var finalWrite: EventLoopFuture<Void>?
    /// A request that asked for `Connection: close`: its answer is the last.
    private var clientCloses = false

    private static let logger = Logger(label: "tern.http")

    init(
        limits: ConnectionLimits, count: ConnectionCount, addressLimiter: RateLimiter?, allowedOrigins: Set<String>,
        allowedHosts: Set<String>? = nil
    ) {
        self.limits = limits
        self.count = count
        self.addressLimiter = addressLimiter
        self.allowedOrigins = allowedOrigins
        self.allowedHosts = allowedHosts.map { $0.map { Array($0.lowercased().utf8) } }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let open = count.value.add(1, ordering: .relaxed).newValue
        if open > limits.maxConnections {
            refused = true
            Self.logger.warning(
                "connection refused: at the limit of open connections",
                metadata: [
                    "limit": "\(limits.maxConnections)", "flag": "--max-connections",
                ])
        }
        address = context.channel.remoteAddress?.ipAddress
        // Sees the raw bytes before the HTTP codec, to tell a head in progress from an idle connection.
        try? context.pipeline.syncOperations.addHandler(ByteWatcher(self, context: context), position: .first)
        since = .now()
        schedule(context: context, at: since + .init(limits.idleTimeout))
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        count.value.subtract(1, ordering: .relaxed)
        check?.cancel()
        check = nil
    }

    /// Called by ``ByteWatcher`` for every read.
    fileprivate func bytesArrived(_ count: Int, context: ChannelHandlerContext) {
        switch phase {
        case .idle:
            phase = .head
            since = .now()
            // The header timeout runs from this first byte, not from the idle check scheduled long after it.
            if since + .init(limits.headerTimeout) < checkAt { schedule(context: context, at: since + .init(limits.headerTimeout)) }
        case .body:
            since = .now()
            bodyBytes += count
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
                refuse(
                    context: context,
                    ErrorAnswer(
                        status: .serviceUnavailable,
                        message: "the server is at its limit of "
                            + "\(limits.maxConnections) open connections (--max-connections); retry later"), retryAfter: "1")
                return
            }
            if let addressLimiter, let address, !Self.isHealth(head), let wait = addressLimiter.take(address) {
                let error = addressLimiter.refusal("client \(address)", wait: wait, flag: "--ip-rate-limit")
                let answer = ErrorAnswer(error)
                refuse(context: context, answer, retryAfter: answer.headers[.retryAfter] ?? "1")
                return
            }
            if let allowedHosts, let host = head.authority, !Self.hostAllowed(host, allowedHosts) {
                // A page whose name was re-pointed at this address (DNS rebinding) must not read it.
                refuse(
                    context: context,
                    ErrorAnswer(
                        status: .misdirectedRequest,
                        message: "this server does not answer for the "
                            + "host '\(Echo.clip(host))' (an open server answers only for its own names; add one with --allowed-host)"),
                    retryAfter: nil)
                return
            }
            corsOrigin = nil
            if let origin = head.headerFields.value(.origin) {
                let allowed = allowedOrigins.contains(origin) || allowedOrigins.contains("*")
                if allowed, head.method == .options, head.headerFields[.accessControlRequestMethod] != nil {
                    preflight(context: context, origin: origin)
                    return
                }
                // The server's own pages (the console's forms) send their own origin.
                if !allowed, head.method != .get, head.method != .head, !Self.sameOrigin(origin, authority: head.authority) {
                    // A page on another site can send this (a form, a text/plain fetch) without asking first.
                    refuse(
                        context: context,
                        ErrorAnswer(
                            status: .forbidden,
                            message: "a request from a web page at "
                                + "\(Echo.clip(origin)) is refused: allow the page's origin with --cors-origin"), retryAfter: nil)
                    return
                }
                if allowed { corsOrigin = origin }
            }
            unanswered += 1
            phase = .body
            since = .now()
            bodyStart = since
            bodyBytes = 0
            if Self.asksClose(head) { clientCloses = true }
            let bodyCheck = since + .init(min(limits.bodyTimeout, limits.minBodyRate > 0 ? limits.minBodyRateGrace : limits.bodyTimeout))
            if bodyCheck < checkAt { schedule(context: context, at: bodyCheck) }
        case .body:
            break
        case .end:
            if unanswered == 0 {
                // Answered before its body was read (a refusal, a 404): the connection is idle again, and its
                // idle timeout (or, in a drain, the linger) applies; waiting for an answer that already went
                // would hold it open for good.
                phase = .idle
                since = .now()
                if let deadline = deadline(), deadline < checkAt { schedule(context: context, at: deadline) }
            } else {
                phase = .answering
            }
        }
        context.fireChannelRead(data)
    }

    /// Whether a `Host` (or `:authority`) names one of the allowed names (lowercased bytes), whatever its port
    /// and case. Runs on every request of an open server: no allocation.
    static func hostAllowed(_ host: String, _ allowed: [[UInt8]]) -> Bool {
        var name = host.utf8[...]
        if name.first == UInt8(ascii: "[") {
            if let end = name.firstIndex(of: UInt8(ascii: "]")) { name = name[...end] }
        } else if let colon = name.lastIndex(of: UInt8(ascii: ":")) {
            name = name[..<colon]
        }
        if name.last == UInt8(ascii: ".") { name = name.dropLast() }
        return allowed.contains { candidate in
            candidate.count == name.count
                && zip(candidate, name).allSatisfy { expected, byte in
                    expected == ((byte >= 65 && byte <= 90) ? byte | 0x20 : byte)
                }
        }
    }

    /// Whether a request asks that its connection close after the answer.
    private static func asksClose(_ head: HTTPRequest) -> Bool {
        guard let value = head.headerFields.value(.connection) else { return false }
        return value.lowercased().contains("close")
    }

    /// Probes are never limited.
    private static func isHealth(_ head: HTTPRequest) -> Bool {
        guard let path = head.path else { return false }
        return path.hasPrefix("/v2/health/") || path == "/ping"
    }

    /// The answer to a request refused before it is read (a connection over the cap: 503; a client over its
    /// rate: 429), then close: its body, if any, is not read.
    /// Whether `origin` (`http://host:port`) names the server the request was sent to (its `Host`).
    static func sameOrigin(_ origin: String, authority: String?) -> Bool {
        guard let authority, !authority.isEmpty else { return false }
        let lowered = origin.lowercased()
        for scheme in ["http://", "https://"] where lowered.hasPrefix(scheme) {
            return lowered.dropFirst(scheme.count) == authority.lowercased()
        }
        return false
    }

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
            if unanswered <= 1, clientCloses { closeAfterAnswer = true }
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
                // Close once the answer's last byte is in the socket: a close now would drop what still waits
                // in the channel's buffers (a large answer, a slow reader).
                let written = context.eventLoop.makePromise(of: Void.self)
                if let promise { written.futureResult.cascade(to: promise) }
                finalWrite = written.futureResult
                context.write(data, promise: written)
                context.flush()
                let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                written.futureResult.whenComplete { _ in
                    let (handler, context) = bound.value
                    handler.finalWrite = nil
                    handler.finish(context: context)
                }
                // A client that never reads would hold the connection: the idle timeout bounds the wait.
                schedule(context: context, at: .now() + .init(limits.idleTimeout))
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

    /// A close asked for by a handler after this one (``V2InferFastPath`` after a 413, Hummingbird after an
    /// answer) waits for the final answer's write, and lingers the same way.
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if let finalWrite, !closed {
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            finalWrite.whenComplete { _ in
                let (handler, context) = bound.value
                handler.close(context: context, mode: mode, promise: promise)
            }
            return
        }
        if mode == .all, !closed, case .body = phase {
            finish(context: context)
            promise?.succeed()
            return
        }
        context.close(mode: mode, promise: promise)
    }

    /// Whether an answer carries `Connection: close` (without allocating for the common answer that does not).
    private static func saysClose(_ head: HTTPResponse) -> Bool {
        guard let value = head.headerFields.value(.connection), value.utf8.count == 5 else { return false }
        return value.lowercased() == "close"
    }

    // MARK: Deadlines

    private func deadline() -> NIODeadline? {
        switch phase {
        case .idle: since + .init(draining ? limits.drainLinger : limits.idleTimeout)
        case .head: since + .init(limits.headerTimeout)
        case .body: min(since + .init(limits.bodyTimeout), rateDeadline())
        case .answering: nil
        }
    }

    /// When the body, arriving at its average rate so far, falls below the minimum: checked once the grace
    /// has passed, then every second.
    private func rateDeadline() -> NIODeadline {
        guard limits.minBodyRate > 0 else { return .distantFuture }
        let now = NIODeadline.now()
        let graceEnd = bodyStart + .init(limits.minBodyRateGrace)
        guard now >= graceEnd else { return graceEnd }
        let elapsed = Double((now - bodyStart).nanoseconds) / 1e9
        return Double(bodyBytes) / elapsed < Double(limits.minBodyRate) ? now : now + .seconds(1)
    }

    private func schedule(context: ChannelHandlerContext, at deadline: NIODeadline) {
        check?.cancel()
        checkAt = deadline
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        check = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = bound.value
            handler.check = nil
            handler.checkAt = .distantFuture
            handler.expire(context: context)
        }
    }

    /// Closes the connection when its current phase is past its deadline, else looks again at that deadline.
    private func expire(context: ChannelHandlerContext) {
        guard !closed else { return }
        if finalWrite != nil {
            // The final answer's write did not finish within the idle timeout: the client does not read it.
            Self.logger.debug("closing connection", metadata: ["reason": "the client did not read its answer within the idle timeout"])
            closed = true
            context.close(promise: nil)
            return
        }
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
            let reason: String =
                switch phase {
                case .idle: "idle"
                case .head: "request head not complete within the header timeout (--header-timeout)"
                case .body: "request body silent past the body timeout (--body-timeout) or slower than --min-body-rate"
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
    /// The guard's own context (its deadlines are scheduled there).
    private let ownerContext: ChannelHandlerContext

    init(_ owner: ConnectionGuard, context: ChannelHandlerContext) {
        self.owner = owner
        self.ownerContext = context
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        owner.bytesArrived(unwrapInboundIn(data).readableBytes, context: ownerContext)
        context.fireChannelRead(data)
    }
}

extension HTTPFrontEndConfiguration {
    /// The connection guard for Hummingbird's `additionalChannelHandlers`: one per connection, placed first.
    public func connectionGuard(count: ConnectionCount) -> any RemovableChannelHandler {
        ConnectionGuard(
            limits: connections, count: count, addressLimiter: access.addressLimiter, allowedOrigins: Set(allowedOrigins),
            allowedHosts: allowedHosts)
    }
}
