import CProcessor
import Foundation
import Synchronization

/// State kept once per processor: a thread updates the copy of the core it runs on, under that copy's own
/// lock, so that threads on different cores neither wait for one lock nor pass its cache line between them
/// (a shared lock costs a cache miss per update when event loops on two cores take turns). Readers visit
/// every copy and merge what they need.
///
/// The processor is a hint: a thread may move to another core between reading it and taking the lock, so
/// two threads can meet on one copy; its lock keeps that correct, only not as fast.
public final class PerProcessor<Value: Sendable>: Sendable {
    /// One copy, padded so that the next copy's lock never shares its cache line.
    private final class Cell: Sendable {
        let value: Mutex<Value>
        private let padding: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)

        init(_ value: sending Value) { self.value = Mutex(value) }
    }

    private let cells: [Cell]

    /// The processors this process may run on (at least 1, at most 256).
    public static var processors: Int { min(max(ProcessInfo.processInfo.activeProcessorCount, 1), 256) }

    /// `count` copies (``processors`` unless given), each made by `make`.
    public init(count: Int = PerProcessor.processors, _ make: () -> sending Value) {
        var cells: [Cell] = []
        for _ in 0..<max(1, count) { cells.append(Cell(make())) }
        self.cells = cells
    }

    public var count: Int { cells.count }

    /// Runs `body` on the copy of the processor the caller runs on.
    @inline(__always)
    public func withLocal<Result: Sendable>(_ body: (inout sending Value) -> sending Result) -> Result {
        cells[Int(tern_current_processor()) % cells.count].value.withLock(body)
    }

    /// Runs `body` on copy `index` (`0..<count`): how readers and writers visit every copy in turn.
    public func with<Result: Sendable>(_ index: Int, _ body: (inout sending Value) -> sending Result) -> Result {
        cells[index].value.withLock(body)
    }
}
