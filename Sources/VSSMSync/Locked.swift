import Glibc

/// A value behind a glibc mutex. Used instead of the standard library's `Mutex` on every path a
/// request takes: on Linux that one is a priority-inheritance futex that spins and then hands the
/// lock over through the kernel, so eight signing threads on two cores spent 58% of the module's
/// CPU in its slow path (`make bench`, perf). A glibc mutex lets the running thread take the lock
/// again instead of waiting for a sleeping one to be scheduled.
public final class Locked<Value>: @unchecked Sendable {
    // The mutex must not move: it lives in its own allocation.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        // Adaptive: a short spin in user space before sleeping (the critical sections are short).
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// fork() support only (`pthread_atfork`): taken in the prepare handler so no other thread
    /// holds it at the moment of the fork, released in the parent and the child handlers. Anything
    /// else uses `withLock`.
    public func lockForFork() { pthread_mutex_lock(mutex) }
    public func unlockAfterFork() { pthread_mutex_unlock(mutex) }

    /// Runs `body` with exclusive access to the value.
    @inline(__always)
    public func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
