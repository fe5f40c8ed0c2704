import Synchronization

/// Opens once every front-end listens: a server says "ready" (and answers ready) only then, never while a
/// port is still to be bound.
public final class ListenerGate: Sendable {
    private struct State {
        var remaining: Int
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0
    }
    private let state: Mutex<State>

    public init(listeners: Int) { state = Mutex(State(remaining: listeners)) }

    /// One front-end listens.
    public func opened() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.remaining -= 1
            guard state.remaining <= 0 else { return [] }
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once every front-end listens, or when the task is cancelled (a front-end failed to start).
    public func wait() async {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let open = state.withLock { state -> Bool in
                    if state.remaining <= 0 || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if open { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}
