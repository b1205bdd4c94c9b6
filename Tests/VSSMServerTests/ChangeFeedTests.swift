import Synchronization
import Testing
import VSSMClient
import VSSMSync
import VSSMTestSupport
import VSSMWire

@testable import VSSMServer

/// `ext/changes` (issue 22, item 4): a long poll answered at the next change, held by no thread.
@Suite struct ChangeFeedTests {
    @Test func waitersAreAnsweredOnceAndBounded() {
        let feed = ChangeFeed()
        let current = feed.revision
        #expect(feed.wait(since: "other", client: "a", maxPerClient: 2, maxTotal: 10) { _ in } == .now(current))
        let answered = Mutex<[String]>([])
        guard
            case .waiting(let first) = feed.wait(
                since: current, client: "a", maxPerClient: 2, maxTotal: 10, notify: { r in answered.withLock { $0.append(r) } })
        else {
            Issue.record("not waiting")
            return
        }
        _ = feed.wait(since: current, client: "a", maxPerClient: 2, maxTotal: 10) { r in answered.withLock { $0.append(r) } }
        #expect(feed.wait(since: current, client: "a", maxPerClient: 2, maxTotal: 10) { _ in } == .refused, "two per client")
        if case .waiting(let other) = feed.wait(since: current, client: "b", maxPerClient: 2, maxTotal: 10, notify: { _ in }) {
            #expect(feed.cancel(other), "another client still may wait; cancelled, it is gone")
        } else {
            Issue.record("client b refused")
        }
        feed.changed()
        #expect(answered.withLock { $0 } == [feed.revision, feed.revision], "both waiters told the new revision")
        #expect(!feed.cancel(first), "answered: nothing left to cancel")
        #expect(feed.waiting == 0 && feed.revision != current)
    }

    @Test func aWaitingRequestIsAnsweredByTheNextChange() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        let (s0, b0) = try n.post(c, Route.extChanges, #"{"revision":"","waitMs":"5000"}"#)
        #expect(s0 == 200 && b0.contains(#""changed":true"#), "\(b0)")
        guard case .string(let revision)? = try JSONParser.parse(b0)["revision"] else {
            Issue.record("no revision")
            return
        }
        // Nothing changes: the wait ends with changed false after about its time.
        let t0 = Monotonic.ms()
        let (s1, b1) = try n.post(c, Route.extChanges, #"{"revision":"\#(revision)","waitMs":"300"}"#)
        #expect(s1 == 200 && !b1.contains(#""changed":true"#) && Monotonic.ms() - t0 >= 250, "\(b1)")
        // A key made while a request waits answers it at once.
        let answer = Mutex<(Int64, String)?>(nil)
        let done = Atomic<Bool>(false)
        BackgroundThread.start {
            let w = try? n.post(c, Route.extChanges, #"{"revision":"\#(revision)","waitMs":"10000"}"#)
            answer.withLock { $0 = (Monotonic.ms(), w?.1 ?? "") }
            done.store(true, ordering: .relaxed)
        }
        for _ in 0..<100 where n.node.store.changes.waiting == 0 { BackgroundThread.sleep(ms: 10) }
        #expect(n.node.store.changes.waiting == 1, "the request waits (no thread of the node does)")
        #expect(
            try n.post(
                c, Route.extGenerateKey,
                #"{"adminPassword":"\#(TestNode.password)","keyName":"k","keyType":"SYMMETRIC","keySize":"32"}"#
            ).0 == 200)
        // From the change's answer (its password check may take a second on a loaded machine):
        // the waiter's answer comes about then, not at the end of its 10 s.
        let made = Monotonic.ms()
        for _ in 0..<300 where !done.load(ordering: .relaxed) { BackgroundThread.sleep(ms: 10) }
        let (at, body) = try #require(answer.withLock { $0 })
        #expect(body.contains(#""changed":true"#) && !body.contains(revision), "\(body)")
        #expect(at - made < 1000, "answered \(at - made) ms after the change")
        // A client that goes away leaves no waiter behind.
        let handle = LongPollHandle()
        let current = n.node.store.changes.revision
        BackgroundThread.start {
            var w = WireWriter()
            w.string("revision", current)
            w.uint64("waitMs", 10000)
            _ = try? c.callWaiting(Route.extChanges, w, response: ExtSchemas.changesResponse, waitMs: 10000, handle: handle)
        }
        for _ in 0..<100 where n.node.store.changes.waiting == 0 { BackgroundThread.sleep(ms: 10) }
        #expect(n.node.store.changes.waiting == 1)
        handle.cancel()
        for _ in 0..<100 where n.node.store.changes.waiting > 0 { BackgroundThread.sleep(ms: 10) }
        #expect(n.node.store.changes.waiting == 0, "the closed connection's waiter is gone")
    }
}
