import Logging
import NIOCertificateReloading
import NIOSSL
import ServiceLifecycle
import Synchronization
import TernCore
import UnixSignals

/// The server's certificate and key, read from their files at start and again on SIGHUP: each TLS handshake
/// (HTTP and gRPC) takes the current pair, so a renewed certificate is served without a restart. A pair that
/// cannot be used (unreadable, not PEM, a key that is not the certificate's) is refused and the previous one
/// kept.
public final class FileCertificateReloader: CertificateReloader {
    public let files: TLSFiles
    private let current: Mutex<NIOSSLContextConfigurationOverride>

    public init(files: TLSFiles) throws(TernError) {
        self.files = files
        self.current = Mutex(try Self.read(files))
    }

    public var sslContextConfigurationOverride: NIOSSLContextConfigurationOverride { current.withLock { $0 } }

    /// Reads the files again; throws (keeping the pair in use) when they cannot be used.
    public func reload() throws(TernError) {
        let fresh = try Self.read(files)
        current.withLock { $0 = fresh }
    }

    private static func read(_ files: TLSFiles) throws(TernError) -> NIOSSLContextConfigurationOverride {
        let configuration = try files.serverConfiguration()  // every check of the start, the key's match included
        var override = NIOSSLContextConfigurationOverride()
        override.certificateChain = configuration.certificateChain
        override.privateKey = configuration.privateKey
        return override
    }
}

/// Reloads the certificate on SIGHUP, logging the outcome.
struct CertificateReloadService: Service {
    let reloader: FileCertificateReloader
    let logger: Logger

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                do {
                    try reloader.reload()
                    logger.notice("TLS certificate reloaded", metadata: ["certificate": "\(reloader.files.certificate)"])
                } catch {
                    logger.error("TLS certificate not reloaded; serving the previous one", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
