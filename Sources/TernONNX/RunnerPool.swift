import Foundation
import TernCore

/// A fixed set of threads that run blocking work (ONNX Runtime's `Run`) off the event loops and off
/// Swift's cooperative pool.
///
/// Work is taken first in, first out. The threads live as long as the pool; ``shutdown()`` lets queued
/// work finish and then stops them.
public final class RunnerPool: @unchecked Sendable {
    // @unchecked Sendable: `jobs`, `head` and `isShutdown` are only touched while holding `condition`.
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var head = 0
    private var isShutdown = false
    /// Number of runner threads.
    public let threadCount: Int

    /// Starts `threads` runner threads (at least one); with `niceness` above 0 their scheduling priority is
    /// lowered (Linux threads each have their own nice value), so their work yields to the rest of the process.
    public init(threads: Int, name: String = "tern.runner", niceness: Int32 = 0) {
        threadCount = max(1, threads)
        for index in 0..<threadCount {
            let thread = Thread { [self] in
                // On Linux, PRIO_PROCESS with 0 names the calling thread only.
                if niceness != 0 { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, niceness) }
                self.loop()
            }
            thread.name = "\(name).\(index)"
            thread.start()
        }
    }

    /// Runs `work` on a runner thread and returns its result.
    ///
    /// - Throws: what `work` throws, or ``TernError`` `unavailable` once the pool is shut down.
    public func run<Result: Sendable>(_ work: @escaping @Sendable () throws -> Result) async throws -> Result {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Result, any Error>) in
            let accepted = enqueue {
                continuation.resume(with: Swift.Result { try work() })
            }
            if !accepted {
                continuation.resume(throwing: TernErrorBridge.shutDown)
            }
        }
    }

    /// Queues `job` on a runner thread; false once the pool is shut down.
    public func execute(_ job: @escaping @Sendable () -> Void) -> Bool {
        enqueue(job)
    }

    private func enqueue(_ job: @escaping @Sendable () -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !isShutdown else { return false }
        jobs.append(job)
        condition.signal()
        return true
    }

    private func loop() {
        while true {
            condition.lock()
            while head == jobs.count && !isShutdown {
                condition.wait()
            }
            if head == jobs.count {  // shut down and drained
                condition.unlock()
                return
            }
            let job = jobs[head]
            head += 1
            if head == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                head = 0
            } else if head > 1024 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            condition.unlock()
            job()
        }
    }

    /// Stops accepting work; queued work still runs, then the threads exit.
    public func shutdown() {
        condition.lock()
        isShutdown = true
        condition.broadcast()
        condition.unlock()
    }
}

extension RunnerPool: BlockingExecutor {}

enum TernErrorBridge {
    static let shutDown = TernError.unavailable("the model runner is shutting down")
}
