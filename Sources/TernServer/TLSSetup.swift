import Foundation
import NIOSSL
import TernCore

extension TLSFiles {
    /// The HTTP front-end's TLS configuration: TLS 1.2 at least; with a client CA, a client certificate it
    /// signed is required. A file that cannot be read is one line naming it and its flag.
    func serverConfiguration() throws(TernError) -> TLSConfiguration {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificate)
        } catch {
            throw .invalidArgument("cannot read the TLS certificate \(certificate) (--tls-cert): \(Self.reason(error, certificate))")
        }
        guard !chain.isEmpty else { throw .invalidArgument("the TLS certificate \(certificate) (--tls-cert) holds no PEM certificate") }
        let privateKey: NIOSSLPrivateKey
        do {
            privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
        } catch {
            throw .invalidArgument("cannot read the TLS private key \(key) (--tls-key): \(Self.reason(error, key))")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        configuration.minimumTLSVersion = .tlsv12
        if let clientCA {
            do {
                let roots = try NIOSSLCertificate.fromPEMFile(clientCA)
                guard !roots.isEmpty else { throw TernError.invalidArgument("no certificate") }
                configuration.trustRoots = .certificates(roots)
            } catch {
                throw .invalidArgument("cannot read the client CA bundle \(clientCA) (--tls-client-ca): \(Self.reason(error, clientCA))")
            }
            configuration.certificateVerification = .noHostnameVerification
        }
        // The context is made here too, so that a key that does not match its certificate fails at start.
        do {
            _ = try NIOSSLContext(configuration: configuration)
        } catch {
            throw .invalidArgument("the TLS certificate \(certificate) and key \(key) cannot be used together: \(error)")
        }
        return configuration
    }

    private static func reason(_ error: any Error, _ path: String) -> String {
        FileManager.default.isReadableFile(atPath: path) ? "not PEM (\(error))" : "no such readable file"
    }
}
