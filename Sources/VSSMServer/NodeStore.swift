import Glibc
import VSSMClient
import VSSMCrypto
import VSSMSync

/// A node's key state and where it is kept: memory, the sealed file (one node), or etcd (a
/// cluster). Every change goes through `mutate`: applied to a copy, held to the state's size
/// limit, persisted before it is acknowledged (etcd's transaction first in a cluster), then the
/// node is told (`onChange`: the peers' push). Split out of `KeyServiceNode` (issue 21): what keeps
/// the state, apart from what answers requests.
final class NodeStore: Sendable {
    let state = Locked(KeyState())
    /// Serialises writers so an older snapshot never overwrites a newer one (the count of sealed
    /// file generations written).
    let persistLock = Locked<UInt64>(0)
    /// The cluster's shared store, once running; nil: the sealed file (or memory).
    let etcd = Locked<EtcdStore?>(nil)
    /// The sealed state file of a single node with a state directory.
    let sealed = Locked<SealedStateFile?>(nil)
    /// When the last catch-up check began (monotonic ns; `catchUp`).
    let lastCatchUpNs = Locked<UInt64>(0)
    let maxStateBytes: Int
    let audit: AuditLog
    let metrics: ServiceMetrics
    /// Called after every acknowledged change.
    let onChange = Locked<(@Sendable () -> Void)?>(nil)
    /// Answers the clients waiting for a change (`ext/changes`): every change applied here moves it.
    let changes = ChangeFeed()

    init(maxStateBytes: Int, audit: AuditLog, metrics: ServiceMetrics) {
        self.maxStateBytes = maxStateBytes
        self.audit = audit
        self.metrics = metrics
    }

    var snapshot: KeyState { state.withLock { $0 } }

    /// Writes the current state where it is kept. Called after every change, before the change is
    /// acknowledged, so an acknowledged key survives kill -9.
    func persist() throws(ServiceError) {
        if let store = etcd.withLock({ $0 }) {
            try persistLock.withLock { (_: inout UInt64) throws(ServiceError) in try store.commit(state.withLock { $0 }) }
            return
        }
        guard let sealed = sealed.withLock({ $0 }) else { return }
        try persistLock.withLock { (generation: inout UInt64) throws(ServiceError) in
            let snapshot = state.withLock { $0 }
            let plain = StateCodec.encode(snapshot, extensions: true)
            let file: [UInt8]
            do throws(CryptoError) { file = try sealed.seal(plain) } catch {
                throw ServiceError.internalError("cannot seal the key store: \(error.message)")
            }
            try sealed.write(file)
            generation += 1
        }
    }

    /// Applies a change under the state lock and persists it. A change that would take the state
    /// over `maxStateBytes` is refused (413) and leaves the state as it was.
    func mutate<R>(_ body: (inout KeyState) throws(ServiceError) -> R) throws(ServiceError) -> R {
        if let store = etcd.withLock({ $0 }) {
            // The change is etcd's first: applied here only once the transaction succeeded.
            func attempt() throws(ServiceError) -> R {
                try persistLock.withLock { (_: inout UInt64) throws(ServiceError) -> R in
                    let (next, r) = try applying(body, to: state.withLock { $0 })
                    try store.commit(next)
                    state.withLock { $0 = next }
                    return r
                }
            }
            let r: R
            let seen = store.viewRevision
            do {
                r = try attempt()
            } catch {
                // This node's view may be behind another node's change (a key made or changed
                // there a moment ago): once caught up (here or by the follower meanwhile), the
                // change is tried once more.
                guard error.status == 404 || error == EtcdStore.concurrentChange, catchUp() || store.viewRevision != seen else {
                    throw error
                }
                r = try attempt()
            }
            changes.changed()
            onChange.withLock { $0 }?()
            return r
        }
        let r = try state.withLock { (s: inout KeyState) throws(ServiceError) -> R in
            let (next, r) = try applying(body, to: s)
            s = next
            return r
        }
        try persist()
        changes.changed()
        onChange.withLock { $0 }?()
        return r
    }

    /// `body` applied to a copy of `s`; refused (413, nothing changed) when the result would pass
    /// `maxStateBytes`.
    private func applying<R>(_ body: (inout KeyState) throws(ServiceError) -> R, to s: KeyState) throws(ServiceError) -> (KeyState, R) {
        var next = s
        let r = try body(&next)
        let size = next.estimatedBytes
        guard size <= maxStateBytes else {
            throw .tooLarge(
                "The key store would grow to about \(size) bytes, above its limit of \(maxStateBytes) bytes; nothing was changed.")
        }
        return (next, r)
    }

    // MARK: - A cluster's store (etcd)

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

    /// While etcd's watch is up, how often the follower still asks for the store's revision (one
    /// count-only read): a watch connection that died silently costs at most this much lag.
    static let watchedCheckMs = 10_000

    /// Follows the other nodes' changes. Two threads: one holds etcd's watch on the prefix and
    /// wakes the follower when a batch of events touched key state the view does not have yet;
    /// the follower then reads what changed (`refreshView`). While the watch is up the follower
    /// asks for the revision only every `watchedCheckMs`; while it is down (etcd unreachable, an
    /// old gateway, a cancelled watch) it polls every `EtcdStore.pollMs` as before and the watcher
    /// tries again with a growing pause (0.5 s to 10 s). While etcd is unreachable the node keeps
    /// serving from its view (writes fail with 503).
    func follow(_ store: EtcdStore, isStopped: @escaping @Sendable () -> Bool) {
        let wake = Wakeup()
        let handle = LongPollHandle()
        BackgroundThread.start { [self] in
            var pauseMs = 500
            var reported = false
            while !isStopped() && !handle.isCancelled {
                do throws(ServiceError) {
                    try store.watch(
                        handle: handle,
                        onReady: {
                            metrics.gauge("vssm_store_watching").set(Int64(1))
                            if reported { audit.info("Following the key store (etcd) by its watch again.") }
                            reported = false
                            pauseMs = 500
                            // What changed before the watch began is read once now.
                            wake.signal()
                        },
                        onChange: { revision in if revision > store.viewRevision { wake.signal() } })
                } catch {
                    if !reported && !handle.isCancelled && !isStopped() {
                        audit.error("\(error.message) Following it by polling every \(EtcdStore.pollMs) ms until the watch is back.")
                        reported = true
                    }
                }
                metrics.gauge("vssm_store_watching").set(Int64(0))
                var slept = 0
                while slept < pauseMs && !isStopped() && !handle.isCancelled {
                    BackgroundThread.sleep(ms: 100)
                    slept += 100
                }
                pauseMs = min(pauseMs * 2, 10_000)
            }
        }
        BackgroundThread.start { [self] in
            var failing = false
            var lastCheckMs = Int64(0)
            while !isStopped() {
                // Short waits either way: a stop is seen within `pollMs`.
                let woken = wake.wait(ms: EtcdStore.pollMs)
                if !woken && store.watching.load(ordering: .relaxed) && Monotonic.ms() - lastCheckMs < Int64(NodeStore.watchedCheckMs) {
                    continue
                }
                lastCheckMs = Monotonic.ms()
                do throws(ServiceError) {
                    // Checked without the lock first: polls that find nothing new never hold up a change.
                    let latest = try store.currentRevision()
                    metrics.gauge("vssm_store_revision_lag").set(max(0, latest - store.viewRevision))
                    metrics.gauge("vssm_store_reachable").set(Int64(1))
                    metrics.gauge("vssm_store_last_success_timestamp_seconds").set(Int64(time(nil)))
                    if latest != store.viewRevision { _ = try refreshView(store, latest: latest) }
                    healIfNeeded(store)
                    if failing { audit.info("The key store (etcd) is reachable again.") }
                    failing = false
                } catch {
                    metrics.gauge("vssm_store_reachable").set(Int64(0))
                    if !failing { audit.error("\(error.message) Serving from this node's view; changes fail until it is back.") }
                    failing = true
                }
            }
            handle.cancel()
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
    /// was adding at that moment). `latest`: etcd's revision when the caller has just read it (the
    /// follower), so it is not asked twice.
    func refreshView(_ store: EtcdStore, latest: Int64? = nil) throws(ServiceError) -> Bool {
        try persistLock.withLock { (_: inout UInt64) throws(ServiceError) -> Bool in
            var current = latest
            if current == nil { current = try store.currentRevision() }
            guard current != store.viewRevision,
                let next = try store.refresh(state.withLock { $0 }, audit: audit)
            else { return false }
            state.withLock { $0 = next.state }
            // The revision also moves with audit heads: only a change of keys, objects or
            // principals is news for the clients waiting for one.
            if next.changed { changes.changed() }
            return true
        }
    }
}
