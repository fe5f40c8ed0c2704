import Foundation
import Testing

@testable import TernCore

@Suite("Sticky inputs")
struct StickyInputTests {
    @Test func theSameBytesPickTheSameVersionAndBothVersionsGetSome() throws {
        let policy = TrafficPolicy(weights: [1: 50, 2: 50], stickyInput: "customer")
        try policy.validate(versions: [1, 2])
        var picked: Set<Int> = []
        for customer in 0..<64 {
            let bytes = Array(String(customer).utf8)
            let first = policy.pick(keyBytes: bytes)
            #expect(policy.pick(keyBytes: bytes) == first)
            picked.insert(first!)
        }
        #expect(picked == [1, 2])
        #expect(throws: TernError.self) {
            try TrafficPolicy(weights: [1: 1], stickyHeader: "x", stickyInput: "y").validate(versions: [1])
        }
    }
}
