import NIOCore
import NIOHTTP2

/// Makes gRPC's graceful shutdown lose no call that is already on the wire.
///
/// A graceful HTTP/2 shutdown (RFC 9113, section 6.8) is two GOAWAY frames: the first names the largest
/// stream id, so that the client stops opening streams while the server still takes those already on
/// their way; after a PING round trip, the second names the last stream really taken. grpc-swift sends
/// both, but swift-nio-http2 refuses every new stream from the moment any GOAWAY leaves it, the first one
/// included: calls the client sent before it read the first GOAWAY were reset (REFUSED_STREAM), and their
/// trailing frames then ended the whole connection with PROTOCOL_ERROR, in-flight calls with it
/// (measured: 3 of 4 clients lost a call on SIGTERM).
///
/// This handler, between the HTTP/2 handler and gRPC's connection handler, writes that first GOAWAY to the
/// socket itself (the 17 bytes of the frame, at the head of the pipeline), so the HTTP/2 state machine
/// only quiesces at the second GOAWAY, whose stream id covers every call the client sent before the PING.
final class GracefulGoAway: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let socketWriter: RawFrameWriter

    init(socketWriter: RawFrameWriter) {
        self.socketWriter = socketWriter
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        if frame.streamID == .rootStream, case .goAway(let last, let code, nil) = frame.payload,
            last == .maxID, code == .noError
        {
            var bytes = context.channel.allocator.buffer(capacity: 17)
            bytes.writeInteger(UInt32(8) << 8 | 0x07)  // length 8 (24 bits), type GOAWAY
            bytes.writeInteger(UInt8(0))  // flags
            bytes.writeInteger(UInt32(0))  // stream 0
            bytes.writeInteger(UInt32(Int32.max))  // last stream id
            bytes.writeInteger(UInt32(0))  // NO_ERROR
            socketWriter.write(bytes, promise: promise)
            return
        }
        context.write(data, promise: promise)
    }

    /// Adds the handler (and its writer at the head of the pipeline) to a configured gRPC connection.
    static func install(on channel: any Channel) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            let operations = channel.pipeline.syncOperations
            let http2 = try operations.handler(type: NIOHTTP2Handler.self)
            let writer = RawFrameWriter()
            try operations.addHandler(writer, position: .first)
            try operations.addHandler(GracefulGoAway(socketWriter: writer), position: .after(http2))
        }
    }
}

/// Writes bytes straight to the socket, ahead of every other handler.
final class RawFrameWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func write(_ bytes: ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard let context else {
            promise?.succeed()
            return
        }
        context.writeAndFlush(NIOAny(bytes), promise: promise)
    }
}
