import FakeKeyService
import Synchronization
import VSSMSync
import Glibc
import Testing
import VSSMCrypto
import VSSMWire

@testable import TokenCore

/// The session handle table (issue 21): handles are never 0 and never reused while open; a session
/// busy in one thread does not hold up another session; many threads on many sessions keep their
/// operations apart.
@Suite struct HandleTableTests {
    final class Box: Sendable {
        let n: Int
        init(_ n: Int) { self.n = n }
    }

    @Test func handlesAreUniqueAndNeverZero() {
        let t = HandleTable<Box>()
        var seen = Set<UInt>()
        for i in 0..<1000 { seen.insert(t.add { _ in Box(i) }) }
        #expect(seen.count == 1000 && !seen.contains(0))
        let h = seen.first!
        #expect(t.remove(h)?.n != nil && t.entry(h) == nil && t.count == 999)
        #expect(!seen.contains(t.add { _ in Box(-1) }), "a removed handle is not given out again")
        #expect(t.removeAll { $0.n % 2 == 0 }.count > 0 && t.entries.allSatisfy { $0.n % 2 != 0 })
    }

    /// One session's lock held for 300 ms by another thread (as a slow call would hold it) does not
    /// delay a digest on another session of the same library.
    @Test func aBusySessionDoesNotHoldUpAnother() throws {
        let lib = try TokenCoreTests.library(FakeKeyService(password: "pw"))
        let a = try lib.openSession(slot: 0, readWrite: false)
        let b = try lib.openSession(slot: 0, readWrite: false)
        let busy = try #require(lib.sessions.entry(a))
        var thread = pthread_t()
        let box = Unmanaged.passRetained(busy)
        pthread_create(
            &thread, nil,
            { p in
                let e = Unmanaged<SessionEntry>.fromOpaque(p!).takeRetainedValue()
                e.state.withLock { _ in
                    HandleTableTests.flag.store(true, ordering: .relaxed)
                    usleep(300_000)
                }
                return nil
            }, box.toOpaque())
        while !HandleTableTests.flag.load(ordering: .relaxed) { usleep(1000) }
        let t0 = Monotonic.ns()
        try lib.digestInit(b, mechanism: Mechanism(.sha256))
        let out = try lib.digest(b, data: [1, 2, 3], capacity: 32)
        let ms = Double(Monotonic.ns() &- t0) / 1e6
        pthread_join(thread, nil)
        #expect(out == .bytes(DigestAlgorithm.sha256.hash([1, 2, 3])))
        #expect(ms < 150, "session b waited \(ms) ms for session a's lock")
    }
    static let flag = Atomic<Bool>(false)

    /// Eight threads, a session each, 500 multi-part digests each, at once: every result is its
    /// own thread's.
    @Test func concurrentSessionsKeepTheirOperationsApart() throws {
        let lib = try TokenCoreTests.library(FakeKeyService(password: "pw"))
        let failures = Atomic<Int>(0)
        DispatchFree.concurrentPerform(iterations: 8) { i in
            guard let h = try? lib.openSession(slot: 0, readWrite: false) else {
                failures.add(1, ordering: .relaxed)
                return
            }
            let data = [UInt8](repeating: UInt8(i), count: 100)
            for _ in 0..<500 {
                do {
                    try lib.digestInit(h, mechanism: Mechanism(.sha3_256))
                    try lib.digestUpdate(h, part: Array(data.prefix(40)))
                    try lib.digestUpdate(h, part: Array(data.dropFirst(40)))
                    if try lib.digestFinal(h, capacity: 32) != .bytes(HashAlgorithm.sha3_256.hash(data)) {
                        failures.add(1, ordering: .relaxed)
                    }
                } catch { failures.add(1, ordering: .relaxed) }
            }
            try? lib.closeSession(h)
        }
        #expect(failures.load(ordering: .relaxed) == 0)
        #expect(lib.sessions.count == 0)
    }
}

/// `concurrentPerform` without Foundation: one pthread per iteration, joined.
enum DispatchFree {
    static func concurrentPerform(iterations: Int, _ body: @escaping @Sendable (Int) -> Void) {
        final class Work: @unchecked Sendable {
            let body: @Sendable (Int) -> Void
            let i: Int
            init(_ body: @escaping @Sendable (Int) -> Void, _ i: Int) {
                self.body = body
                self.i = i
            }
        }
        var threads: [pthread_t] = []
        for i in 0..<iterations {
            var t = pthread_t()
            let w = Unmanaged.passRetained(Work(body, i)).toOpaque()
            pthread_create(
                &t, nil,
                { p in
                    let w = Unmanaged<Work>.fromOpaque(p!).takeRetainedValue()
                    w.body(w.i)
                    return nil
                }, w)
            threads.append(t)
        }
        for t in threads { pthread_join(t, nil) }
    }
}
