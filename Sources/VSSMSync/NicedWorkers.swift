import Glibc

/// Threads at a lower CPU priority (a higher nice value) for work that is long and must not slow
/// everyone else when the CPU is short: scrypt of a login takes 100+ ms of a core, and a tenant
/// guessing PINs at its rate limit would otherwise take that from every other tenant's signing.
/// `run` blocks its caller (an admin-pool thread) until the work is done. Threads start on first
/// use; when none can be started the work runs on the caller.
public final class NicedWorkers: @unchecked Sendable {
    public let threads: Int
    public let nice: Int32
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let ready = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // Guarded by `lock`.
    private var jobs: [@Sendable () -> Void] = []
    private var started = 0

    public init(threads: Int, nice: Int32) {
        self.threads = max(1, threads)
        self.nice = nice
        pthread_mutex_init(lock, nil)
        pthread_cond_init(ready, nil)
    }

    /// Runs `body` on one of the workers and returns its result.
    public func run<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        let done = Completion<T>()
        pthread_mutex_lock(lock)
        if started < threads {
            if BackgroundThread.start({ [self] in work() }) {
                started += 1
            } else if started == 0 {
                pthread_mutex_unlock(lock)
                return body()
            }
        }
        jobs.append { done.finish(body()) }
        pthread_cond_signal(ready)
        pthread_mutex_unlock(lock)
        return done.wait()
    }

    private func work() {
        // This thread only: on Linux the nice value is per thread, and PRIO_PROCESS with 0 is the
        // calling thread. An unprivileged process may always lower its own priority.
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, nice)
        while true {
            pthread_mutex_lock(lock)
            while jobs.isEmpty { pthread_cond_wait(ready, lock) }
            let job = jobs.removeFirst()
            pthread_mutex_unlock(lock)
            job()
        }
    }

    /// The nice value of the calling thread (for tests).
    public static func currentNice() -> Int32 {
        errno = 0
        return getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
    }
}

/// One result handed from a worker to the thread waiting for it.
private final class Completion<T: Sendable>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var value: T?  // guarded by `mutex`

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    func finish(_ v: T) {
        pthread_mutex_lock(mutex)
        value = v
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }

    func wait() -> T {
        pthread_mutex_lock(mutex)
        while value == nil { pthread_cond_wait(cond, mutex) }
        let v = value!
        pthread_mutex_unlock(mutex)
        return v
    }
}
