public import Glibc
import Synchronization

/// This process's ID without a system call: glibc no longer caches `getpid()`, and the request
/// path asked for it several times per signature (fork checks of the session state and the
/// connection pool: 3% of the module's CPU with eight threads). A fork handler keeps it current in
/// the child.
public enum ProcessIdentity {
    private static let pid = Atomic<Int32>(getpid())
    private static let hook: Void = {
        _ = pthread_atfork(nil, nil, { ProcessIdentity.pid.store(getpid(), ordering: .relaxed) })
    }()

    public static var current: pid_t {
        _ = hook
        return pid.load(ordering: .relaxed)
    }
}
