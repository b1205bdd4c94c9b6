import Glibc

/// Wakes one waiting thread: `signal()` from any thread ends the current (or the next) `wait`.
/// Signals before a wait are not lost, and several collapse into one.
///
/// A pipe waited on with `poll` and a relative timeout, not a condition variable with an
/// absolute deadline: a process whose clock functions are interposed (libfaketime, as the clock
/// skew scenario runs a node) saw every `pthread_cond_timedwait` end at once, and the thread
/// waiting spun.
public final class Wakeup: @unchecked Sendable {
    /// Read end (`fd`) and write end of the pipe; -1 when the system refused one.
    private let fd: Int32
    private let writeFD: Int32

    public init() {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            fd = -1
            writeFD = -1
            return
        }
        for end in ends {
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        fd = ends[0]
        writeFD = ends[1]
    }

    deinit {
        if fd >= 0 {
            close(fd)
            close(writeFD)
        }
    }

    public func signal() {
        guard writeFD >= 0 else { return }
        var one: UInt8 = 1
        // A full pipe already holds a signal.
        _ = write(writeFD, &one, 1)
    }

    /// Waits up to `ms` for a signal; true when one came (all pending are consumed). Without a
    /// pipe (the system refused one) it sleeps `ms` and says no signal came.
    public func wait(ms: Int) -> Bool {
        let ms = max(0, min(ms, 86_400_000))
        guard fd >= 0 else {
            BackgroundThread.sleep(ms: ms)
            return false
        }
        let deadline = Monotonic.ms() + Int64(ms)
        while true {
            var drained = [UInt8](repeating: 0, count: 64)
            if read(fd, &drained, drained.count) > 0 {
                while read(fd, &drained, drained.count) > 0 {}
                return true
            }
            let left = deadline - Monotonic.ms()
            guard left > 0 else { return false }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            // A signal, the time up, or an interruption: each is looked at again above.
            _ = poll(&p, 1, Int32(clamping: left))
        }
    }
}
