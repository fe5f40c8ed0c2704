import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCertificateReloading
import ServiceLifecycle
import TernCore

/// Settings of the gRPC front-end.
public struct GRPCFrontEndConfiguration: Sendable {
    public var host: String
    /// 0 picks a free port.
    public var port: Int
    /// The largest request message accepted (64 MiB by default; gRPC's own default of 4 MiB is too small
    /// for tensors).
    public var maxMessageBytes: Int
    /// Calls one connection may have open at once, advertised in SETTINGS_MAX_CONCURRENT_STREAMS: clients
    /// queue calls past it. Without it HTTP/2's "safe default" of 100 is enforced unannounced, and a client
    /// that opens the 101st call loses the whole connection (GOAWAY, PROTOCOL_ERROR).
    public var maxConcurrentStreams: Int
    /// A connection with no call for this long is closed (nil: never).
    public var maxIdleTime: Duration?
    /// Who may call which RPC (open by default).
    public var access: AccessControl = .open
    /// TLS (mutual when it names a client CA); nil: plaintext.
    public var tls: TLSFiles?
    /// Gives each handshake the current certificate and key (reloaded on SIGHUP), when set.
    public var certificateReloader: (any CertificateReloader)?

    public init(
        host: String = "0.0.0.0", port: Int = 8001, maxMessageBytes: Int = 64 << 20, maxConcurrentStreams: Int = 256,
        maxIdleTime: Duration? = .seconds(300), access: AccessControl = .open, tls: TLSFiles? = nil,
        certificateReloader: (any CertificateReloader)? = nil
    ) {
        self.access = access
        self.tls = tls
        self.certificateReloader = certificateReloader
        self.host = host
        self.port = port
        self.maxMessageBytes = maxMessageBytes
        self.maxConcurrentStreams = maxConcurrentStreams
        self.maxIdleTime = maxIdleTime
    }
}

/// The Open Inference Protocol v2 over gRPC (HTTP/2, plaintext) as a ServiceLifecycle service: serves until
/// graceful shutdown, then finishes the RPCs in flight.
public struct GRPCFrontEnd: Service {
    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let transport: HTTP2ServerTransport.Posix

    public init(service: InferenceService, configuration: GRPCFrontEndConfiguration) {
        transport = HTTP2ServerTransport.Posix(
            address: .ipv4(host: configuration.host, port: configuration.port),
            transportSecurity: Self.security(configuration.tls, reloader: configuration.certificateReloader),
            config: .defaults {
                $0.rpc.maxRequestPayloadSize = configuration.maxMessageBytes
                $0.http2.maxConcurrentStreams = configuration.maxConcurrentStreams
                $0.connection.maxIdleTime = configuration.maxIdleTime
                $0.channelDebuggingCallbacks.onAcceptTCPConnection = { GracefulGoAway.install(on: $0) }
            })
        server = GRPCServer(
            transport: transport, services: [InferenceGRPCService(service: service)],
            interceptors: configuration.access.checksRequests ? [AccessInterceptor(access: configuration.access)] : [])
    }

    private static func security(_ tls: TLSFiles?, reloader: (any CertificateReloader)?) -> HTTP2ServerTransport.Posix.TransportSecurity {
        guard let tls else { return .plaintext }
        if let reloader {
            // Primed by its creator (the files were read), so these do not throw.
            if let ca = tls.clientCA,
                let security = try? HTTP2ServerTransport.Posix.TransportSecurity.mTLS(
                    certificateReloader: reloader,
                    configure: {
                        $0.trustRoots = .certificates([.file(path: ca, format: .pem)])
                    })
            {
                return security
            }
            if tls.clientCA == nil, let security = try? HTTP2ServerTransport.Posix.TransportSecurity.tls(certificateReloader: reloader) {
                return security
            }
        }
        let chain: [TLSConfig.CertificateSource] = [.file(path: tls.certificate, format: .pem)]
        let key: TLSConfig.PrivateKeySource = .file(path: tls.key, format: .pem)
        guard let ca = tls.clientCA else { return .tls(certificateChain: chain, privateKey: key) }
        return .mTLS(certificateChain: chain, privateKey: key) { $0.trustRoots = .certificates([.file(path: ca, format: .pem)]) }
    }

    /// The protocols gRPC serves (metric series exist for each).
    public static let protocols: [WireProtocol] = [.v2GRPC]

    /// Every RPC with the scope it needs.
    public static var routes: [RouteEntry] { AccessInterceptor.routes }

    /// The port bound, once the server listens.
    public var port: Int? {
        get async { try? await transport.listeningAddress.ipv4?.port }
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await server.serve()
        } onGracefulShutdown: {
            server.beginGracefulShutdown()
        }
    }
}

extension WireProtocol {
    /// Open Inference Protocol v2 over gRPC.
    public static let v2GRPC = WireProtocol(rawValue: "v2_grpc")
}
