import Yams

/// YAML read from files and bundles others may write (a bundle's `config.yaml`, alert rules, schedules,
/// traffic policy files), turned into plain values without Yams's own constructor: that one force-unwraps a
/// mapping key that is not a scalar (`{[a]: 1}`, `{{a: 1}: 2}`) and traps (found by FuzzParsers). Keys must be
/// scalars, and a document may hold at most a million values once its aliases are expanded (a "billion
/// laughs" document is refused, not walked).
public enum SafeYAML {
    /// The document's value: `[String: Any]`, `[Any]`, or a scalar (`String`, `Int`, `Double`, `Bool`), nil
    /// for an empty document; `source` names the text in errors.
    public static func load(_ text: String, source: String) throws(TernError) -> Any? {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw .invalidArgument("'\(Echo.clip(source))' is not valid YAML: \(error)")
        }
        guard let node else { return nil }
        var budget = 1_000_000
        return try value(node, source: source, depth: 0, budget: &budget)
    }

    /// Checks a document before a decoder reads it.
    public static func check(_ text: String, source: String) throws(TernError) {
        _ = try load(text, source: source)
    }

    private static func value(_ node: Node, source: String, depth: Int, budget: inout Int) throws(TernError) -> Any {
        guard depth < 64 else { throw .invalidArgument("'\(Echo.clip(source))' nests deeper than 64 levels") }
        budget -= 1
        guard budget >= 0 else { throw .invalidArgument("'\(Echo.clip(source))' holds more than a million values") }
        switch node {
        case .scalar:
            return node.any
        case .sequence(let sequence):
            var items: [Any] = []
            for element in sequence { items.append(try value(element, source: source, depth: depth + 1, budget: &budget)) }
            return items
        case .mapping(let mapping):
            var object: [String: Any] = [:]
            for (key, element) in mapping {
                guard case .scalar(let scalar) = key else {
                    throw .invalidArgument("'\(Echo.clip(source))' line \(key.mark?.line ?? 0): a key must be a plain value, not a list or a mapping")
                }
                object[scalar.string] = try value(element, source: source, depth: depth + 1, budget: &budget)
            }
            return object
        case .alias:
            throw .invalidArgument("'\(Echo.clip(source))' line \(node.mark?.line ?? 0): anchors and aliases are not supported")
        }
    }
}
