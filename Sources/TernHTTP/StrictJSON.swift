import Foundation
import TernCore

/// The management API's JSON bodies, read strictly: a key given as `null` is refused (leave it out for its
/// default) rather than taken as absent, so what docs/openapi.yaml says a field holds is what is accepted.
enum StrictJSON {
    /// - Parameters:
    ///   - known: the body's keys; another is refused (a misspelt option would otherwise be ignored).
    ///   - nested: the keys of an object-valued key, checked the same way.
    static func decode<T: Decodable>(
        _ type: T.Type, from data: Data, shape: String, known: Set<String>, nested: [String: Set<String>] = [:]
    ) throws -> T {
        if let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) {
            if let dictionary = object as? [String: Any] {
                try check(dictionary, known: known, at: "", shape: shape)
                for (key, keys) in nested {
                    if let inner = dictionary[key] as? [String: Any] { try check(inner, known: keys, at: key + ".", shape: shape) }
                }
            }
            if let path = nullPath(object, at: "") {
                throw TernError.invalidArgument("\(path) is null: leave it out for its default (\(shape))")
            }
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw TernError.invalidArgument("the body must be JSON such as \(shape): \(Self.describe(error))")
        }
    }

    private static func check(_ object: [String: Any], known: Set<String>, at path: String, shape: String) throws {
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw TernError.invalidArgument(
                "unknown field '\(path)\(Echo.clip(unknown))'; the fields are \(known.sorted().map { path + $0 }.joined(separator: ", ")) (\(shape))")
        }
    }

    /// A `true`/`false` query parameter (absent: false); anything else is refused rather than read as false.
    static func flag(_ value: String?, name: String) throws -> Bool {
        switch value {
        case nil, "false": return false
        case "true": return true
        case let other?: throw TernError.invalidArgument("\(name) must be true or false, not '\(Echo.clip(other))'")
        }
    }

    /// Where the first `null` is (`alias`, `fallback.version`), if any.
    static func nullPath(_ value: Any, at path: String) -> String? {
        if value is NSNull { return path.isEmpty ? "the body" : path }
        if let object = value as? [String: Any] {
            for key in object.keys.sorted() {
                if let found = nullPath(object[key]!, at: path.isEmpty ? key : path + "." + key) { return found }
            }
        } else if let array = value as? [Any] {
            for (index, item) in array.enumerated() {
                if let found = nullPath(item, at: "\(path)[\(index)]") { return found }
            }
        }
        return nil
    }

    /// A decoding error in a sentence: the field and what was wrong.
    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "'\(key.stringValue)' is missing"
        case DecodingError.typeMismatch(let type, let context), DecodingError.valueNotFound(let type, let context):
            let at = context.codingPath.map(\.stringValue).joined(separator: ".")
            return "\(at.isEmpty ? "the body" : "'\(at)'") must be \(type == String.self ? "a string" : "\(type)")"
        case DecodingError.dataCorrupted(let context):
            let at = context.codingPath.map(\.stringValue).joined(separator: ".")
            return at.isEmpty ? "it is not valid JSON" : "'\(at)': \(context.debugDescription)"
        default: return "\(error)"
        }
    }
}
