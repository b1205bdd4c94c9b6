import Glibc
import VSSMSync

/// A node of a cluster whose state is in etcd (`EtcdStore`): loading at bootstrap, following the
/// other nodes' changes, catching up on a miss. Changes themselves go through `mutate`.
extension KeyServiceNode {
    /// Runs `body` until it succeeds or `seconds` have passed (etcd briefly unreachable at start).
    static func retrying<R>(seconds: Int, _ body: () throws(ServiceError) -> R) throws(ServiceError) -> R {
        let deadline = PasswordGuard.monotonicMs() + Int64(seconds) * 1000
        while true {
            do { return try body() } catch {
                if error.status != 503 || PasswordGuard.monotonicMs() > deadline { throw error }
                usleep(200_000)
            }
        }
    }

    /// Follows the other nodes' changes: polls the store's revision and reloads when it moved.
    /// While etcd is unreachable the node keeps serving from its view (writes fail with 503).
    func follow(_ store: EtcdStore) {
        BackgroundThread.start { [self] in
            var failing = false
            while !isStopped {
                BackgroundThread.sleep(ms: EtcdStore.pollMs)
                do throws(ServiceError) {
                    let revision = try store.currentRevision()
                    if revision != store.viewRevision {
                        try persistLock.withLock { (_: inout UInt64) throws(ServiceError) in
                            if let next = try store.refresh(state.withLock { $0 }, audit: audit) { state.withLock { $0 = next } }
                        }
                    }
                    if failing { audit.info("The key store (etcd) is reachable again.") }
                    failing = false
                } catch {
                    if !failing { audit.error("\(error.message) Serving from this node's view; changes fail until it is back.") }
                    failing = true
                }
            }
        }
    }

    /// Brings this node's view up to etcd's when it is behind (one small request). Misses queue
    /// behind one catch-up at a time, and a miss that a check begun after it already covered only
    /// looks again: concurrent misses cost etcd one request. True: look again. Without etcd, or
    /// with etcd unreachable: false (the answer stays "not found").
    func catchUp() -> Bool {
        guard let store = etcd.withLock({ $0 }) else { return false }
        let missedAt = KeyServiceNode.monotonicNs()
        return lastCatchUpNs.withLock { lastStart -> Bool in
            if lastStart >= missedAt { return true }
            lastStart = KeyServiceNode.monotonicNs()
            do {
                // The view's revision is compared under the lock the refreshes hold: a refresh by
                // the follower in progress has advanced the view's revision before the state
                // (a miss then answered 404 for a key the follower was just adding).
                return try persistLock.withLock { (_: inout UInt64) throws(ServiceError) -> Bool in
                    guard try store.currentRevision() != store.viewRevision,
                          let next = try store.refresh(state.withLock { $0 }, audit: audit) else { return false }
                    state.withLock { $0 = next }
                    return true
                }
            } catch { return false }
        }
    }

    static func monotonicNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
