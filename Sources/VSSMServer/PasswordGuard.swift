import Glibc
import Prometheus
import VSSMSync

/// Throttles admin-password attempts per client identity (the verified certificate's SHA-256
/// fingerprint: another trusted certificate with the same subject cannot lock its owner out):
/// the first `ServiceLimits.freePasswordFailures` wrong passwords cost nothing extra, every further
/// one doubles a wait (1 s, 2 s, 4 s … up to `maxPasswordBackoffMs`) during which that identity's
/// attempts are refused with 429 *without* running scrypt. A right password clears the record.
/// Together with the admin pool (scrypt never runs beside signing) this keeps online guessing slow
/// and cheap for the service.
final class PasswordGuard: Sendable {
    private struct Record {
        var failures: Int
        var notBeforeMs: Int64
    }
    private let records = Locked<[String: Record]>([:])
    /// scrypt runs per client (`RequestContext.clientKey`): `hashBurst`, then `hashesPerSecond`.
    /// A remembered password needs none, so a client that logs in as it should never meets this;
    /// one that alternates wrong and right PINs (each right one clears its failures) would
    /// otherwise make the node run scrypt as fast as it asks.
    private let hashes = RequestRates()
    static let hashBurst = 8
    static let hashesPerSecond = 1
    static let maxRecords = 10_000
    /// Counted for `/metrics` (set by the node).
    let throttledCounter: Counter?
    let failureCounter: Counter?

    init(metrics: ServiceMetrics? = nil) {
        throttledCounter = metrics?.counter("vssm_login_throttled_total")
        failureCounter = metrics?.counter("vssm_login_failures_total")
    }

    /// Backoff after `failures` consecutive wrong passwords.
    static func backoffMs(failures: Int) -> Int {
        let extra = failures - ServiceLimits.freePasswordFailures
        guard extra >= 0 else { return 0 }
        return min(1000 << min(extra, 20), ServiceLimits.maxPasswordBackoffMs)
    }

    func check(identity: String, verify: () throws(ServiceError) -> Bool) throws(ServiceError) {
        if let ms = throttledFor(identity) {
            throttledCounter?.increment()
            throw .throttled(ms)
        }
        if try verify() {
            clear(identity)
            return
        }
        failed(identity)
        throw .wrongPassword
    }

    /// Takes one scrypt run from `client`'s budget, or throws 429 (no scrypt) when it is spent.
    func spendHash(client: String) throws(ServiceError) {
        if let refusal = hashes.take(client, perSecond: PasswordGuard.hashesPerSecond, burst: PasswordGuard.hashBurst) {
            throttledCounter?.increment()
            throw .throttled(refusal.wait * 1000)
        }
    }

    /// Milliseconds `identity` must still wait, or nil when it may try now.
    func throttledFor(_ identity: String) -> Int? {
        let now = Monotonic.ms()
        guard let r = records.withLock({ $0[identity] }), r.notBeforeMs > now else { return nil }
        return Int(clamping: r.notBeforeMs - now)
    }

    /// A right credential: that identity's record (and only it) starts over.
    func clear(_ identity: String) { _ = records.withLock { $0.removeValue(forKey: identity) } }

    /// A wrong credential: counted, and the wait after it set.
    func failed(_ identity: String) {
        let now = Monotonic.ms()
        records.withLock { all in
            if all.count >= PasswordGuard.maxRecords {
                all = all.filter { $0.value.notBeforeMs > now }
            }
            var r = all[identity] ?? Record(failures: 0, notBeforeMs: 0)
            r.failures += 1
            r.notBeforeMs = now + Int64(PasswordGuard.backoffMs(failures: r.failures))
            all[identity] = r
        }
        failureCounter?.increment()
    }
}
