// Measures the HTTP ceiling of this machine for a fixed JSON answer to POST: a plain NIO pipeline vs a
// Hummingbird route, to size what a NIO-level /infer path could gain. Not part of Tern.
import Hummingbird
import NIOCore
import NIOHTTP1
import NIOPosix

let body = #"{"model_name":"m","outputs":[{"name":"p","datatype":"FP32","shape":[1,2],"data":[0.5,0.5]}]}"#

final class FixedHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    var keepAlive = true
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): keepAlive = head.isKeepAlive
        case .body: break
        case .end:
            var headers = HTTPHeaders()
            headers.add(name: "content-type", value: "application/json")
            headers.add(name: "content-length", value: String(body.utf8.count))
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

let mode = CommandLine.arguments.dropFirst().first ?? "nio"
let port = Int(CommandLine.arguments.dropFirst(2).first ?? "8090")!
let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
if mode == "nio" {
    let channel = try await ServerBootstrap(group: group)
        .serverChannelOption(.backlog, value: 1024)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            channel.pipeline.configureHTTPServerPipeline().flatMap { channel.pipeline.addHandler(FixedHandler()) }
        }
        .bind(host: "127.0.0.1", port: port).get()
    try await channel.closeFuture.get()
} else {
    let router = Router()
    router.post("/infer") { request, _ -> Response in
        _ = try await request.body.collect(upTo: 1 << 20)
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
    let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)),
                          eventLoopGroupProvider: .shared(group))
    try await app.runService()
}
