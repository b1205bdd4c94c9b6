import Glibc
import VSSMSync
import VSSMWire

/// Ends a wait for changes from another thread (C_Finalize): the adapter registers how to
/// interrupt its request (shutting its socket down); a cancellation before that runs it at once.
public final class WaitCancellation: Sendable {
    private let state = Locked<(cancelled: Bool, hook: (@Sendable () -> Void)?)>((false, nil))
    public init() {}
    public var isCancelled: Bool { state.withLock { $0.cancelled } }

    /// `hook` interrupts the current wait; it replaces the previous one.
    public func onCancel(_ hook: @escaping @Sendable () -> Void) {
        let now: Bool = state.withLock { s in
            s.hook = hook
            return s.cancelled
        }
        if now { hook() }
    }

    public func cancel() {
        let hook = state.withLock { s -> (@Sendable () -> Void)? in
            s.cancelled = true
            return s.hook
        }
        hook?()
    }

    /// Sleeps up to `ms`, less once cancelled.
    func sleep(ms: Int) {
        var left = ms
        while left > 0 && !isCancelled {
            BackgroundThread.sleep(ms: min(left, 100))
            left -= 100
        }
    }
}

/// Keys that appear without polling (issue 22, item 4): while the service offers `ext/changes`
/// and the host lets the module start a thread, one thread per token long-polls it and marks the
/// index stale when the service says something changed, so a key made, changed or deleted
/// elsewhere is listed at the next call; while that works there is no listing on a timer
/// (`refreshSeconds` applies again when the wait fails). The thread ends at C_Finalize.
extension Token {
    /// How long one wait lasts (the service allows up to 300 s): about one request every two
    /// minutes per idle token.
    static let changeWaitMs = 120_000

    /// True while a wait is in progress or answered without error.
    var followsChanges: Bool { subscription.withLock { $0.healthy } }

    func startFollowingChanges() {
        guard configuration.followChanges, !changesCancel.isCancelled, (try? features())??.contains(.changes) == true else { return }
        let start = subscription.withLock { s -> Bool in
            guard !s.started else { return false }
            s.started = true
            return true
        }
        guard start else { return }
        ChangeFollowers.enter(changesCancel)
        let started = BackgroundThread.start { [self] in
            followChanges()
            ChangeFollowers.leave(changesCancel)
        }
        if !started {
            ChangeFollowers.leave(changesCancel)
            subscription.withLock { $0.started = false }
        }
    }

    private func followChanges() {
        var since = ""
        var failures = 0
        var lastAsked: Int64 = 0
        while !changesCancel.isCancelled {
            // At most five waits a second, whatever the answers (a node changing many keys, or
            // endpoints whose revisions never match, must not make this loop spin).
            let pause = 200 - (Monotonic.ms() - lastAsked)
            if pause > 0 { changesCancel.sleep(ms: Int(clamping: pause)) }
            lastAsked = Monotonic.ms()
            do throws(TokenError) {
                let r = try service().waitForChange(since: since, waitMs: Token.changeWaitMs, cancel: changesCancel)
                // The first answer counts as a change too: whatever happened between the listing
                // and the first revision is listed.
                if r.changed { invalidate() }
                since = r.revision
                failures = 0
                subscription.withLock { $0.healthy = true }
            } catch {
                subscription.withLock { $0.healthy = false }
                if error == .functionNotSupported { break }
                failures += 1
                changesCancel.sleep(ms: min(30_000, 500 << min(failures, 6)))
            }
        }
        subscription.withLock { $0 = (started: false, healthy: false) }
    }

    /// C_Finalize: the wait ends now (its socket is shut down), and the thread is gone before this
    /// returns (at most 2 s): a host that exits next cleans OpenSSL up, which a thread still
    /// freeing its connection would crash on.
    func stopFollowingChanges() {
        changesCancel.cancel()
        let deadline = Monotonic.ms() + 2000
        while subscription.withLock({ $0.started }) && Monotonic.ms() < deadline { BackgroundThread.sleep(ms: 5) }
    }
}

/// The change-following threads of this process. At exit (a host that never calls C_Finalize)
/// they are stopped before OpenSSL cleans up: this handler is registered after OpenSSL's own
/// (the module's TLS needs OpenSSL initialised first), so it runs before it.
enum ChangeFollowers {
    private static let state = Locked<(pid: pid_t, running: Int, cancels: [ObjectIdentifier: WaitCancellation])>((0, 0, [:]))
    private static let atExit: Void = { atexit { ChangeFollowers.stopAll(waitMs: 1000) } }()

    static func enter(_ c: WaitCancellation) {
        _ = atExit
        state.withLock { s in
            // A forked child inherits the parent's count, not its threads.
            if s.pid != ProcessIdentity.current { s = (ProcessIdentity.current, 0, [:]) }
            s.running += 1
            s.cancels[ObjectIdentifier(c)] = c
        }
    }

    static func leave(_ c: WaitCancellation) {
        state.withLock { s in
            guard s.pid == ProcessIdentity.current else { return }
            s.running -= 1
            s.cancels.removeValue(forKey: ObjectIdentifier(c))
        }
    }

    static func stopAll(waitMs: Int) {
        let cancels = state.withLock { s in s.pid == ProcessIdentity.current ? Array(s.cancels.values) : [] }
        for c in cancels { c.cancel() }
        let deadline = Monotonic.ms() + Int64(waitMs)
        while state.withLock({ $0.pid == ProcessIdentity.current && $0.running > 0 }) && Monotonic.ms() < deadline {
            BackgroundThread.sleep(ms: 5)
        }
    }
}
