import Synchronization

/// A value made when it is first asked for, once (the GraphQL schema, the console's templates): a server
/// that is never asked for them does not pay for them at start.
public final class OnFirstUse<Value: Sendable>: Sendable {
    private let made = Mutex<Value?>(nil)
    private let make: @Sendable () throws -> Value

    public init(_ make: @escaping @Sendable () throws -> Value) {
        self.make = make
    }

    public func get() throws -> Value {
        try made.withLock { made in
            if let made { return made }
            let value = try make()
            made = value
            return value
        }
    }
}
