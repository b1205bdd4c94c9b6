import Glibc
import VSSMSync

/// A node of a cluster whose state is in etcd (`EtcdStore`): loading at bootstrap, following the
/// other nodes' changes, catching up on a miss. Changes themselves go through `mutate`.
extension KeyServiceNode {
    /// Runs `body` until it succeeds or `seconds` have passed (etcd briefly unreachable at start).
    static func retrying<R>(seconds: Int, _ body: () throws(ServiceError) -> R) throws(ServiceError) -> R {
        let deadline = Monotonic.ms() + Int64(seconds) * 1000
        while true {
            do { return try body() } catch {
                if error.status != 503 || Monotonic.ms() > deadline { throw error }
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
                    // Checked without the lock first: polls that find nothing new never hold up a change.
                    let latest = try store.currentRevision()
                    metrics.gauge("vssm_store_revision_lag").set(max(0, latest - store.viewRevision))
                    metrics.gauge("vssm_store_reachable").set(Int64(1))
                    metrics.gauge("vssm_store_last_success_timestamp_seconds").set(Int64(time(nil)))
                    if latest != store.viewRevision { _ = try refreshView(store) }
                    healIfNeeded(store)
                    if failing { audit.info("The key store (etcd) is reachable again.") }
                    failing = false
                } catch {
                    metrics.gauge("vssm_store_reachable").set(Int64(0))
                    if !failing { audit.error("\(error.message) Serving from this node's view; changes fail until it is back.") }
                    failing = true
                }
            }
        }
    }

    /// After a stale record, a vanished principal table or records without a sequence were met:
    /// this node writes its own state back (replacing, re-creating or deleting those records).
    func healIfNeeded(_ store: EtcdStore) {
        guard store.needsHeal.exchange(false, ordering: .relaxed) else { return }
        do { try persist() } catch {
            audit.error("Writing this node's state back to etcd failed (\(error.message)); trying again at the next poll.")
            store.needsHeal.store(true, ordering: .relaxed)
        }
    }

    /// Brings this node's view up to etcd's when it is behind (one small request). Misses queue
    /// behind one catch-up at a time, and a miss that a check begun after it already covered only
    /// looks again: concurrent misses cost etcd one request. True: look again. Without etcd, or
    /// with etcd unreachable: false (the answer stays "not found").
    func catchUp() -> Bool {
        guard let store = etcd.withLock({ $0 }) else { return false }
        let missedAt = Monotonic.ns()
        return lastCatchUpNs.withLock { lastStart -> Bool in
            if lastStart >= missedAt { return true }
            lastStart = Monotonic.ns()
            return (try? refreshView(store)) ?? false
        }
    }

    /// Brings the node's view up to etcd's when etcd's revision moved; true when it changed. The
    /// revision is compared under the lock every refresh holds: one in progress advances the view's
    /// revision just before the state (compared outside, a miss answered 404 for a key the follower
    /// was adding at that moment).
    func refreshView(_ store: EtcdStore) throws(ServiceError) -> Bool {
        try persistLock.withLock { (_: inout UInt64) throws(ServiceError) -> Bool in
            guard try store.currentRevision() != store.viewRevision,
                let next = try store.refresh(state.withLock { $0 }, audit: audit)
            else { return false }
            state.withLock { $0 = next }
            return true
        }
    }
}
