import VSSMCrypto
import VSSMSync
import VSSMWire

/// Tells waiting clients that the key state changed (issue 22, item 4), so a long-running module
/// sees a key made, changed or deleted elsewhere within a second without listing while nothing
/// changes. The revision (`<node instance>-<counter>`) moves with every change applied on this
/// node: made here, followed from etcd or pushed by a peer. `ext/changes` answers at once when
/// the caller's revision is not the current one (another node's, or from before a restart), else
/// at the next change, or with `changed: false` when its wait is over.
///
/// Bounded: a quarter of the API listener's connections per client identity (a fleet of hosts
/// often shares one certificate) and half of them in all; beyond, 429. A waiting request holds no
/// thread (its connection's event loop answers it) and counts as an idle connection, which the
/// listener may close to admit another (the module then waits again).
final class ChangeFeed: Sendable {
    struct Waiter {
        let client: String
        let notify: @Sendable (String) -> Void
    }
    private struct State {
        var counter: UInt64 = 1
        var nextID: UInt64 = 0
        var waiters: [UInt64: Waiter] = [:]
        var perClient: [String: Int] = [:]
    }
    private let state = Locked(State())
    /// Random per process: revisions of another node, or of this one before a restart, never match.
    let instance = Hex.encode(SecureRandom.bytes(6))
    /// The longest wait a request may ask for (ms).
    static let maxWaitMs = 300_000

    var revision: String { state.withLock { "\(instance)-\($0.counter)" } }
    var waiting: Int { state.withLock { $0.waiters.count } }

    /// A change was applied: every waiter is answered with the new revision.
    func changed() {
        let (revision, waiters): (String, [Waiter]) = state.withLock { s in
            s.counter += 1
            let w = Array(s.waiters.values)
            s.waiters.removeAll()
            s.perClient.removeAll()
            return ("\(instance)-\(s.counter)", w)
        }
        for w in waiters { w.notify(revision) }
    }

    enum Outcome: Equatable {
        /// The caller's revision is not the current one: answer now with this one.
        case now(String)
        /// Registered: `notify` runs once, at the next change, unless `cancel` removed it first.
        case waiting(UInt64)
        /// Too many waiting requests (of this client, or in all).
        case refused
    }

    func wait(
        since: String, client: String, maxPerClient: Int, maxTotal: Int, notify: @escaping @Sendable (String) -> Void
    ) -> Outcome {
        state.withLock { s in
            let current = "\(instance)-\(s.counter)"
            guard since == current else { return .now(current) }
            guard s.waiters.count < maxTotal, s.perClient[client, default: 0] < maxPerClient else { return .refused }
            s.nextID &+= 1
            s.waiters[s.nextID] = Waiter(client: client, notify: notify)
            s.perClient[client, default: 0] += 1
            return .waiting(s.nextID)
        }
    }

    /// Removes a waiter (its wait is over, or its connection went); true when it was still waiting.
    @discardableResult
    func cancel(_ id: UInt64) -> Bool {
        state.withLock { s in
            guard let w = s.waiters.removeValue(forKey: id) else { return false }
            s.perClient[w.client, default: 1] -= 1
            if s.perClient[w.client] == 0 { s.perClient.removeValue(forKey: w.client) }
            return true
        }
    }
}
