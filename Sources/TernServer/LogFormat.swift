import Foundation
import Logging
import Synchronization
import TernCore

/// How `tern serve` writes its log: `text` (swift-log's line format, for people) or `json` (one object per
/// line, for log pipelines).
public enum LogFormat: String, Sendable, CaseIterable {
    case text, json
}

/// A swift-log handler writing one line per event to standard error, in either ``LogFormat``:
///
/// - `json`: `{"time":"2026-11-30T08:00:00.123Z","level":"info","logger":"tern.request","message":"request","request_id":"..."}`;
///   metadata keys become top-level fields (nested metadata is written as JSON).
/// - `text`: `2026-11-30T08:00:00.123Z info tern.request: request model=credit-risk request_id=...`.
///
/// Every string is escaped (control characters as `\n`, `\u0001`), so a client's id or model name with a
/// newline in it stays on its line.
public struct LineLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String
    private let format: LogFormat

    public init(label: String, format: LogFormat = .json) {
        self.label = label
        self.format = format
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        var line: String
        switch format {
        case .json:
            line = "{\"time\":\"" + Self.timestamp() + "\",\"level\":\"" + event.level.rawValue + "\",\"logger\":"
            Self.append(label, to: &line)
            line += ",\"message\":"
            Self.append(event.message.description, to: &line)
            for key in merged.keys.sorted() where !["time", "level", "logger", "message"].contains(key) {
                line += ","
                Self.append(key, to: &line)
                line += ":"
                Self.append(merged[key]!, to: &line)
            }
            line += "}"
        case .text:
            line = Self.timestamp() + " " + event.level.rawValue + " " + label + ": " + Self.escaped(event.message.description)
            for key in merged.keys.sorted() {
                line += " " + key + "=" + Self.escaped("\(merged[key]!)")
            }
        }
        Self.write(line + "\n")
    }

    /// Text with its control characters escaped as JSON escapes them (unchanged when it has none).
    static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { return text }
        var quoted = ""
        append(text, to: &quoted)
        return String(quoted.dropFirst().dropLast())
    }

    private static func append(_ value: Logger.Metadata.Value, to line: inout String) {
        switch value {
        case .string(let text): append(text, to: &line)
        case .stringConvertible(let convertible): append(convertible.description, to: &line)
        case .array(let values):
            line += "["
            for (index, value) in values.enumerated() {
                if index > 0 { line += "," }
                append(value, to: &line)
            }
            line += "]"
        case .dictionary(let values):
            line += "{"
            for (index, key) in values.keys.sorted().enumerated() {
                if index > 0 { line += "," }
                append(key, to: &line)
                line += ":"
                append(values[key]!, to: &line)
            }
            line += "}"
        }
    }

    /// A JSON string literal (``JSONText``).
    static func append(_ text: String, to line: inout String) { JSONText.appendQuoted(text, to: &line) }

    /// RFC 3339 in UTC with milliseconds.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let millis = Int(now.tv_nsec / 1_000_000)
        let fraction = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):"
            + "\(two(parts.tm_min)):\(two(parts.tm_sec)).\(fraction)Z"
    }

    private static let lock = Mutex(())

    static func write(_ line: String) {
        lock.withLock { _ in
            var line = line
            line.withUTF8 { bytes in
                var offset = 0
                while offset < bytes.count {
                    let written = Foundation.write(2, bytes.baseAddress! + offset, bytes.count - offset)
                    if written <= 0 {
                        if errno == EINTR { continue }
                        return
                    }
                    offset += written
                }
            }
        }
    }
}

extension LogFormat {
    /// Sets the process's log handler (once, at start).
    public func bootstrap(level: Logger.Level) {
        switch self {
        case .json:
            LoggingSystem.bootstrap { label in
                var handler = LineLogHandler(label: label, format: .json)
                handler.logLevel = level
                return handler
            }
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = LineLogHandler(label: label, format: .text)
                handler.logLevel = level
                return handler
            }
        }
    }
}
