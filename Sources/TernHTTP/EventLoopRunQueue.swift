import NIOCore
import NIOPosix
import TernCore

/// Runs light models' batches on an event loop, once per read burst, instead of on a runner thread.
///
/// An infer request read on an event loop normally costs two thread hand-offs: the event loop wakes a runner
/// thread, and the runner wakes the event loop to write the answer. For a model that runs a batch in tens of
/// microseconds those wake-ups cost more than the run. Here requests of batched models are queued without
/// waking anyone, and once the event loop has handled the bytes it read (a task it runs after its I/O), it
/// runs the queued batches itself, one merged batch per model, writing the answers as they come.
///
/// What keeps this safe for the connections the event loop also serves: it spends at most
/// ``HTTPFrontEndConfiguration/inlineRunBudget`` per burst, as estimated from each model's measured cost per
/// row; the rest goes to the runner threads, and so does everything of a model whose run has not yet been
/// timed or whose single request would not fit (see ``DynamicBatcher/drainInline(budget:)``).
final class EventLoopRunQueue: InlineRunner {
    private let loop: any EventLoop
    private let budget: Duration
    private var pending: [DynamicBatcher] = []
    /// The batchers being drained; swapped with `pending` so that neither list reallocates per burst.
    private var draining: [DynamicBatcher] = []
    private var scheduled = false

    private init(loop: any EventLoop, budget: Duration) {
        self.loop = loop
        self.budget = budget
    }

    /// The calling event loop's queue (one per event loop thread and budget: servers in one process may share
    /// an event loop group), or nil when the budget is zero.
    static func current(on loop: any EventLoop, budget: Duration) -> EventLoopRunQueue? {
        guard budget > .zero, loop.inEventLoop else { return nil }
        if let queue = perThread.currentValue, queue.loop === loop, queue.budget == budget { return queue }
        let queue = EventLoopRunQueue(loop: loop, budget: budget)
        perThread.currentValue = queue
        return queue
    }

    // nonisolated(unsafe): each thread reads and writes only its own value.
    nonisolated(unsafe) private static let perThread = ThreadSpecificVariable<EventLoopRunQueue>()

    func needsDrain(_ batcher: DynamicBatcher) {
        loop.preconditionInEventLoop()
        if !pending.contains(where: { $0 === batcher }) { pending.append(batcher) }
        guard !scheduled else { return }
        scheduled = true
        let bound = NIOLoopBound(self, eventLoop: loop)
        loop.execute { bound.value.drain() }
    }

    private func drain() {
        scheduled = false
        swap(&draining, &pending)  // requests queued while draining go to the next burst's list
        let started = ContinuousClock.now
        for batcher in draining { batcher.drainInline(budget: budget - started.duration(to: .now)) }
        draining.removeAll(keepingCapacity: true)
    }
}
