import Glibc

/// The monotonic clock (deadlines, leases, backoffs, throttles): one reading, in the unit asked.
public enum Monotonic {
    public static func ns() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        // CLOCK_MONOTONIC never reads negative; clamping keeps that an assumption that cannot trap.
        return UInt64(clamping: ts.tv_sec) &* 1_000_000_000 &+ UInt64(clamping: ts.tv_nsec)
    }

    public static func ms() -> Int64 { Int64(clamping: ns() / 1_000_000) }
}
