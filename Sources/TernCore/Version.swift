/// Tern's name and version, as the server reports them.
public enum TernVersion {
    public static let name = "tern"
    public static let version = "0.1.0"
}
