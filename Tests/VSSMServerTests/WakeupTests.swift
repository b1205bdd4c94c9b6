import Synchronization
import Testing
import VSSMSync

/// The follower's wake-up (etcd's watch wakes it): a wait lasts its time unless signalled, a
/// signal given before the wait is kept, several collapse into one, and a signal from another
/// thread ends a wait early.
@Suite struct WakeupTests {
    @Test func waitsItsTimeUnlessSignalled() {
        let w = Wakeup()
        var t = Monotonic.ms()
        #expect(!w.wait(ms: 200))
        #expect(Monotonic.ms() - t >= 195, "waited \(Monotonic.ms() - t) ms")

        w.signal()
        w.signal()
        t = Monotonic.ms()
        #expect(w.wait(ms: 1000), "a signal given before the wait")
        #expect(Monotonic.ms() - t < 100)
        #expect(!w.wait(ms: 50), "two signals are one wake-up")

        let woken = Atomic<Bool>(false)
        t = Monotonic.ms()
        BackgroundThread.start {
            BackgroundThread.sleep(ms: 100)
            woken.store(true, ordering: .relaxed)
            w.signal()
        }
        #expect(w.wait(ms: 5000))
        let signalledFirst = woken.load(ordering: .relaxed)
        #expect(signalledFirst)
        #expect(Monotonic.ms() - t < 2000, "ended by the other thread's signal after \(Monotonic.ms() - t) ms")
    }
}
