import HTTPTypes

extension HTTPFields {
    /// A field's value, as the subscript reads it (several fields of the name joined), without the joining
    /// when there is one (what a request's fields almost always have): the subscript builds a joined string
    /// through a lazy sequence for every lookup that finds its field, which cost more than the rest of the
    /// lookups of a request together.
    func value(_ name: HTTPField.Name) -> String? {
        var found: String?
        for index in indices where self[index].name == name {
            if found != nil { return self[name] }
            found = self[index].value
        }
        return found
    }
}
