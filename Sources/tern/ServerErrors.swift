import Foundation
import TernCore

/// What the CLI says when a server it addresses fails it: one line naming the flag to change.
enum ServerErrors {
    /// A server's refusal: its own message, with the way to send a key on a 401.
    static func answered(_ base: String, status: Int, message: String) -> TernError {
        switch status {
        case 401:
            return .invalidArgument(
                "\(base) answered 401: \(message) (pass --api-key KEY, or set TERN_API_KEY)")
        default:
            return .invalidArgument("\(base) answered \(status): \(message)")
        }
    }

    /// A server that could not be reached: refused, timed out, or not trusted over TLS.
    static func unreachable(_ base: String, _ error: any Error) -> TernError {
        let text = String(describing: error)
        let lower = text.lowercased()
        let reason: String
        if ["handshake", "certificate", "ssl", "tls"].contains(where: { lower.contains($0) }) {
            reason = "its TLS certificate is not trusted here; pass --ca-cert FILE (or set TERN_CA_CERT) with the CA that signed it"
        } else if lower.contains("refused") {
            reason = "connection refused (is tern serve running there, on that port?)"
        } else if lower.contains("timeout") || lower.contains("timed out") {
            reason = "no answer in time (check the address and any firewall between)"
        } else if lower.contains("resolve") || lower.contains("getaddrinfo") || lower.contains("dns") {
            reason = "the host name does not resolve"
        } else {
            reason = Echo.clip(text)
        }
        return .unavailable("cannot reach \(base): \(reason)")
    }
}
