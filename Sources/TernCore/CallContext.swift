import Foundation
import Synchronization

/// The wire protocol a request came in on: a label of every metric, log line and prediction-log row. An
/// open value: each front-end names its own (`v2_rest`, `kserve_v1` and `invocations` in TernHTTP, `v2_grpc`
/// in TernGRPC); the core knows only `local`, the CLI's own runs in its process, which have no wire at all.
/// Metric series exist for the protocols the catalog is told a server serves (``ModelCatalog/protocols``).
public struct WireProtocol: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }

    public var description: String { rawValue }

    /// The CLI's own runs in its process (`tern predict`, `tern pack`'s validation): not counted in metrics.
    public static let local = WireProtocol(rawValue: "local")
}

/// What a front-end knows of a request besides its tensors: who sent it, on which protocol, under which id
/// and trace. Made once per request, at its head, and carried through the core to every observer.
///
/// A class, passed by reference through the core's closures and events (a struct this size was copied
/// field by field at every step, measurably). The front-end that made it may change it (the body's id, its
/// read and decode times) until it hands the call to ``InferenceService``; from then on it is only read,
/// so it is safe to share across threads (hence `@unchecked Sendable`).
public final class CallContext: @unchecked Sendable {
    /// The client's id (`X-Request-ID`, gRPC `x-request-id`, else the v2 body's `id`), or one Tern made.
    public private(set) var requestID: String
    /// Whether ``requestID`` came from the client.
    public private(set) var clientRequestID: Bool
    public let wire: WireProtocol
    /// The client's address, when the transport knows it.
    public let peer: String?
    /// The W3C trace context the client sent (`traceparent`), if valid.
    public let trace: TraceParent?
    /// Who is calling (the key's name or the token's subject, its scopes and model grants), once the front-end
    /// authorized the request; nil when the server is open. The core checks the model grant once it has
    /// resolved the model.
    public var caller: Caller?
    /// Set when a traffic policy sticky on an input picked the version: the input whose values pick it again.
    public var stickyInput: String?
    /// When the front-end took the request.
    public let received: ContinuousClock.Instant
    /// The same moment on the wall clock, for records read by people and other systems (derived from
    /// `received` when asked, so that a request reads one clock, not two).
    public var receivedAt: Date {
        let (seconds, attoseconds) = received.duration(to: .now).components
        return Date(timeIntervalSinceNow: -(Double(seconds) + Double(attoseconds) / 1e18))
    }
    /// When the front-end had read the whole request (its body), if it says.
    public var read: ContinuousClock.Instant?
    /// When the front-end had decoded the request, if it says.
    public var decoded: ContinuousClock.Instant?
    /// What the caller asked of the model: a prediction, or an explanation of one.
    public var operation = Operation.infer

    /// What a request asks of a model. Observers that judge a version by its predictions (drift windows, the
    /// rollout watch, shadow copies) look at `infer` only; the prediction log and the metrics count both.
    public enum Operation: String, Sendable {
        case infer, explain
    }

    /// - Parameter requestID: the client's id, kept if it is usable (see ``RequestID/accept(_:)``); a new
    ///   one is made otherwise.
    public init(wire: WireProtocol, requestID: String? = nil, traceparent: String? = nil, peer: String? = nil) {
        self.wire = wire
        if let accepted = requestID.flatMap(RequestID.accept) {
            self.requestID = accepted
            self.clientRequestID = true
        } else {
            self.requestID = RequestID.make()
            self.clientRequestID = false
        }
        self.trace = traceparent.flatMap(TraceParent.init(header:))
        self.peer = peer
        self.received = .now
    }

    /// Takes the v2 body's `id` as the request id when the client sent no `X-Request-ID`.
    public func adoptBodyID(_ id: String?) {
        guard !clientRequestID, let id, let accepted = RequestID.accept(id) else { return }
        requestID = accepted
        clientRequestID = true
    }
}

/// Request ids: the client's when usable, else made here, unique across processes and cheap to make.
public enum RequestID {
    /// The longest id kept, in bytes; a longer one is cut (ids end up in logs, headers and the database).
    public static let maxLength = 128

    /// The id as Tern keeps it: cut to ``maxLength`` bytes (at a character boundary), control characters
    /// (newlines among them, which would forge log lines) replaced by `?`; nil when empty.
    public static func accept(_ id: String) -> String? {
        guard !id.isEmpty else { return nil }
        var clean = true
        for byte in id.utf8 where byte < 0x20 || byte == 0x7F {
            clean = false
            break
        }
        if clean && id.utf8.count <= maxLength { return id }
        var kept = ""
        var bytes = 0
        for scalar in id.unicodeScalars {
            let text = scalar.value < 0x20 || scalar.value == 0x7F ? "?" : String(scalar)
            bytes += text.utf8.count
            if bytes > maxLength { break }
            kept += text
        }
        return kept.isEmpty ? nil : kept
    }

    /// A new id: this process's random prefix and a counter (`5f0c2a9e71d3b604-1a`).
    public static func make() -> String {
        let number = UInt64(counter.add(1, ordering: .relaxed).newValue)
        let digits = max(1, (UInt64.bitWidth - number.leadingZeroBitCount + 3) / 4)
        // Written in place: one allocation for the id (String(_:radix:) and a concatenation made three).
        return String(unsafeUninitializedCapacity: prefix.count + digits) { buffer in
            for (index, byte) in prefix.enumerated() { buffer[index] = byte }
            var value = number
            for index in (prefix.count..<(prefix.count + digits)).reversed() {
                buffer[index] = hexDigits[Int(value & 0xF)]
                value >>= 4
            }
            return prefix.count + digits
        }
    }

    /// This process's random prefix, `<16 hex digits>-`, as bytes.
    private static let prefix: [UInt8] = {
        var generator = SystemRandomNumberGenerator()
        let value = generator.next() as UInt64
        let hex = String(value, radix: 16)
        return Array((String(repeating: "0", count: 16 - hex.count) + hex + "-").utf8)
    }()

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    private static let counter = Atomic<Int>(0)
}

/// A W3C Trace Context `traceparent` (version 00): `00-<trace id, 32 hex>-<parent span id, 16 hex>-<flags>`.
public struct TraceParent: Sendable, Equatable {
    public var traceID: String
    public var parentID: String
    public var flags: UInt8

    public var sampled: Bool { flags & 1 == 1 }

    /// Parses a header value; nil for anything malformed (which is then ignored, as the standard says).
    public init?(header: String) {
        let parts = header.trimmingCharacters(in: .whitespaces).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[0].count == 2, parts[0] != "ff", Self.isHex(parts[0]),
            parts[0] != "00" || parts.count == 4,
            parts[1].count == 32, Self.isHex(parts[1]), parts[1] != String(repeating: "0", count: 32),
            parts[2].count == 16, Self.isHex(parts[2]), parts[2] != String(repeating: "0", count: 16),
            parts[3].count == 2, Self.isHex(parts[3]), let flags = UInt8(parts[3], radix: 16)
        else { return nil }
        self.traceID = String(parts[1])
        self.parentID = String(parts[2])
        self.flags = flags
    }

    public init(traceID: String, parentID: String, flags: UInt8) {
        self.traceID = traceID
        self.parentID = parentID
        self.flags = flags
    }

    public var header: String {
        "00-\(traceID)-\(parentID)-" + (flags < 16 ? "0" : "") + String(flags, radix: 16)
    }

    private static func isHex(_ text: Substring) -> Bool {
        text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}
