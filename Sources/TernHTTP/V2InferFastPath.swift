import DequeModule
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTPTypes
import TernCodecs
import TernCore

/// `POST /v2/models/{m}[/versions/{v}]/infer`, served inside the connection's channel pipeline.
///
/// Hummingbird hands each request from the event loop to a Swift task and the response back; for a request
/// that runs in a fraction of a millisecond, those hand-offs cost more than the inference (see
/// docs/performance.md). This handler, which Hummingbird's `additionalChannelHandlers` places after its
/// HTTP codec, takes infer requests itself: it reads the body on the event loop, decodes it, queues the run
/// (for the event loop itself when the model is light, ``EventLoopRunQueue``; else on the model's runner
/// threads) and writes the answer from the run's completion, back on the event loop.
/// It is the only place `/infer` is served: every other request goes on to Hummingbird untouched. The head
/// gives the request its ``CallContext`` and finds the model (``V2Routes/inferHead(service:model:version:headers:)``);
/// the body is decoded by ``V2RequestDecoder``; the core's one entry (``InferenceService/infer(_:inline:completion:)``)
/// validates, runs and observes it; ``V2Routes/inferAnswer`` and ``ErrorAnswer`` write the answer.
///
/// Ordering: while a request of its own is in progress, later requests on the connection (HTTP pipelining)
/// wait here and are handled, in order, once its answer is written; while a request handed to Hummingbird
/// is unanswered, later ones go to Hummingbird too, until an infer request comes: it and everything after it
/// wait here for Hummingbird's answers. Timeouts, the connection cap and the shutdown drain are
/// ``ConnectionGuard``'s, placed before this handler.
final class V2InferFastPath: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let service: InferenceService
    private let configuration: HTTPFrontEndConfiguration

    private enum State {
        case idle
        /// Hummingbird's: requests handed on whose answers have not ended.
        case forwarding(unanswered: Int)
        /// Ours, its body arriving. `failure` holds an error found at the head; the body is then discarded.
        case reading(Pending)
        /// Ours, running.
        case running
        /// Answered with `Connection: close`: nothing more is read.
        case closed
    }

    private struct Pending {
        var context: CallContext
        var served: ServedModel?
        var headerLength: Int?
        var failure: (any Error)?
        var body: ByteBuffer
        var close: Bool
    }

    private var state = State.idle
    private var waiting = Deque<HTTPRequestPart>()
    /// Set while an infer request waits behind Hummingbird's unanswered ones: everything read waits too.
    private var holding = false
    /// The event loop's queue of light runs (nil when inline runs are off).
    private var runQueue: EventLoopRunQueue?
    /// The client's address, read once per connection.
    private var peer: String?

    init(service: InferenceService, configuration: HTTPFrontEndConfiguration) {
        self.service = service
        self.configuration = configuration
    }

    func handlerAdded(context: ChannelHandlerContext) {
        runQueue = EventLoopRunQueue.current(on: context.eventLoop, budget: configuration.inlineRunBudget)
        peer = context.channel.remoteAddress.map(Self.describe)
    }

    func channelActive(context: ChannelHandlerContext) {
        if peer == nil { peer = context.channel.remoteAddress.map(Self.describe) }
        context.fireChannelActive()
    }

    private static func describe(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress else { return "\(address)" }
        return address.protocol == .inet6 ? "[\(ip)]:\(address.port ?? 0)" : "\(ip):\(address.port ?? 0)"
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        read(context: context, part: unwrapInboundIn(data))
    }

    private func read(context: ChannelHandlerContext, part: HTTPRequestPart) {
        switch (state, part) {
        case (.closed, _):
            return
        case (.idle, .head(let head)):
            if let (model, version) = Self.route(head) {
                let pending = start(head, model: model, version: version)
                if let failure = pending.failure, Self.mustClose(failure) {
                    // Refused by its Content-Length or its credentials: answered now, the body never read.
                    state = .running
                    finish(context: context, pending, failure: failure)
                    return
                }
                state = .reading(pending)
            } else {
                state = .forwarding(unanswered: 1)
                context.fireChannelRead(wrapInboundOut(part))
            }
        case (.idle, _):
            context.fireChannelRead(wrapInboundOut(part))
        case (.forwarding(let unanswered), .head(let head)):
            // An infer request behind one of Hummingbird's waits for its answer (and so does all after it).
            if holding || Self.route(head) != nil {
                holding = true
                waiting.append(part)
                return
            }
            state = .forwarding(unanswered: unanswered + 1)
            context.fireChannelRead(wrapInboundOut(part))
        case (.forwarding, _):
            if holding { waiting.append(part) } else { context.fireChannelRead(wrapInboundOut(part)) }
        case (.reading(var pending), .body(var chunk)):
            state = .running  // drops the state's reference to the body, so that it grows in place, not by copies
            if pending.failure == nil {
                if pending.body.readableBytes + chunk.readableBytes > configuration.maxRequestBytes {
                    pending.failure = HTTPFrontEndConfiguration.tooLarge(
                        nil, limit: configuration.maxRequestBytes, flag: "--max-request-size")
                    pending.body = ByteBuffer()
                } else {
                    pending.body.writeBuffer(&chunk)
                }
            }
            state = .reading(pending)
        case (.reading(let pending), .end):
            state = .running
            run(context: context, pending)
        case (.reading, .head), (.running, _):
            waiting.append(part)
        }
    }

    /// The model and version of an infer request this handler takes; nil for anything else.
    private static func route(_ head: HTTPRequest) -> (String, String?)? {
        let prefix = "/v2/models/".utf8
        guard head.method == .post, var path = head.path?.utf8[...], path.starts(with: prefix) else { return nil }
        if let query = path.firstIndex(of: UInt8(ascii: "?")) { path = path[..<query] }
        // "<m>/infer" or "<m>/versions/<v>/infer", read in place (a split made an array per request)
        var rest = path.dropFirst(prefix.count)
        let slash = UInt8(ascii: "/")
        guard let end = rest.firstIndex(of: slash), end > rest.startIndex, let model = segment(rest[..<end]) else { return nil }
        rest = rest[rest.index(after: end)...]
        if rest.elementsEqual("infer".utf8) { return (model, nil) }
        let versions = "versions/".utf8
        guard rest.starts(with: versions) else { return nil }
        rest = rest.dropFirst(versions.count)
        guard let close = rest.firstIndex(of: slash), close > rest.startIndex,
            rest[rest.index(after: close)...].elementsEqual("infer".utf8), let version = segment(rest[..<close])
        else { return nil }
        return (model, version)
    }

    /// A path segment, percent-decoded (`credit%20risk`); nil when its escapes are malformed (the router
    /// then answers 404).
    private static func segment(_ bytes: Substring.UTF8View.SubSequence) -> String? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard bytes.contains(UInt8(ascii: "%")) else { return text }
        return text.removingPercentEncoding
    }

    private func start(_ head: HTTPRequest, model: String, version: String?) -> Pending {
        let close = head.headerFields.value(.connection)?.lowercased().contains("close") ?? false
        let requestContext = V2Routes.callContext(.v2REST, head.headerFields, peer: peer)
        do {
            if configuration.access.verifier != nil {
                requestContext.caller = try configuration.access.authorize(
                    credential: ScopedRouter.credential(head.headerFields), scope: .infer)
            }
            try HTTPFrontEndConfiguration.refuseByLength(
                head.headerFields, upTo: configuration.maxRequestBytes, flag: "--max-request-size")
            let (served, headerLength) = try V2Routes.inferHead(
                service: service, model: model, version: version, headers: head.headerFields, context: requestContext)
            return Pending(context: requestContext, served: served, headerLength: headerLength, body: ByteBuffer(), close: close)
        } catch {
            return Pending(context: requestContext, failure: error, body: ByteBuffer(), close: close)
        }
    }

    /// Hands a request refused before decoding to the core (which counts and observes it) and answers it.
    private func finish(context: ChannelHandlerContext, _ pending: Pending, failure: any Error) {
        let call = InferenceCall(context: pending.context, failure: failure, served: pending.served)
        let close = pending.close || Self.mustClose(failure)
        let requestID = pending.context.requestID
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        service.infer(call) { result in  // fails at once, on this event loop
            guard case .failure(let error) = result else { return }
            let (handler, context) = bound.value
            handler.respond(context: context, Self.failure(error), requestID: requestID, close: close)
        }
    }

    private func run(context: ChannelHandlerContext, _ pending: Pending) {
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        let close = pending.close
        if let failure = pending.failure {
            finish(context: context, pending, failure: failure)
            return
        }
        let requestContext = pending.context
        let timed = service.timesRuns  // the times only traces show are read only for them
        if timed { requestContext.read = .now }
        let call: InferenceCall
        var encoding = V2RequestDecoder.OutputEncoding()
        do {
            let decoded = try V2RequestDecoder.decode(body: pending.body, headerLength: pending.headerLength)
            if timed { requestContext.decoded = .now }
            requestContext.adoptBodyID(decoded.0.id)
            encoding = decoded.1
            call = InferenceCall(context: requestContext, served: pending.served!, request: decoded.0)
        } catch {
            call = InferenceCall(context: requestContext, failure: error, served: pending.served)
        }
        let requestID = requestContext.requestID
        service.infer(call, inline: runQueue) { [encoding] result in
            // On a runner thread or this event loop: encode here, write on the event loop.
            let answer: (HTTPResponse, ByteBuffer)
            switch result {
            case .success(let response):
                let (headers, body) = V2Routes.inferAnswer(response, encoding: encoding)
                answer = (HTTPResponse(status: .ok, headerFields: headers), body)
            case .failure(let error):
                answer = Self.failure(error)
            }
            let write: @Sendable () -> Void = {
                let (handler, context) = bound.value
                handler.respond(context: context, answer, requestID: requestID, close: close)
            }
            if loop.inEventLoop { write() } else { loop.execute(write) }
        }
    }

    private func respond(
        context: ChannelHandlerContext, _ answer: (HTTPResponse, ByteBuffer), requestID: String, close: Bool
    ) {
        var head = answer.0
        let body = answer.1
        // Appended, not set (a set looks for the name first): an answer never has these two; an error's may
        // have its request id.
        head.headerFields.append(HTTPField(name: .contentLength, value: String(body.readableBytes)))
        if head.headerFields.contains(.requestID) {
            head.headerFields[.requestID] = requestID
        } else {
            head.headerFields.append(HTTPField(name: .requestID, value: requestID))
        }
        head.headerFields.append(HTTPField(name: .server, value: "tern"))
        if close { head.headerFields[.connection] = "close" }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        if close {
            state = .closed
            waiting.removeAll()
            context.close(promise: nil)
            return
        }
        state = .idle
        replayWaiting(context: context)
    }

    /// Handles the requests that arrived while one of ours was in progress, in order, until another of ours
    /// starts (the rest wait for it) or all have gone on to Hummingbird.
    private func replayWaiting(context: ChannelHandlerContext) {
        holding = false
        guard !waiting.isEmpty else { return }
        while let next = waiting.first {
            if case .reading = state { if case .head = next { break } }
            if case .running = state { break }
            if case .forwarding = state, case .head(let head) = next, Self.route(head) != nil {
                holding = true  // ours again, behind Hummingbird's: wait for its answers
                break
            }
            waiting.removeFirst()
            read(context: context, part: next)
        }
        // Hummingbird's side delivers what it was given at the end of a read burst.
        context.fireChannelReadComplete()
    }

    /// An error as every route writes it (the core has logged faults).
    private static func failure(_ error: any Error) -> (HTTPResponse, ByteBuffer) {
        let answer = ErrorAnswer(error)
        return (HTTPResponse(status: answer.status, headerFields: answer.headers), answer.body)
    }

    /// A request refused at its head for its size or its credentials is answered at once, its body never
    /// read (an unauthenticated client does not get to make the server read 64 MiB), and the connection closes.
    private static func mustClose(_ error: any Error) -> Bool {
        guard let code = (error as? TernError)?.code else { return false }
        return code == .payloadTooLarge || code == .unauthenticated || code == .permissionDenied
    }

    // MARK: Outbound (Hummingbird's answers)

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), case .forwarding(let unanswered) = state {
            state = unanswered > 1 ? .forwarding(unanswered: unanswered - 1) : .idle
            context.write(data, promise: promise)
            if case .idle = state { replayWaiting(context: context) }
            return
        }
        context.write(data, promise: promise)
    }
}

extension V2Routes {
    /// The channel handler that serves infer requests on the event loop (``V2InferFastPath``), for Hummingbird's
    /// `additionalChannelHandlers`: one per connection.
    public static func inferFastPath(service: InferenceService, configuration: HTTPFrontEndConfiguration)
        -> any RemovableChannelHandler
    {
        V2InferFastPath(service: service, configuration: configuration)
    }
}
