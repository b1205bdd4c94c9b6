public import VSSMCrypto
import VSSMSync
import VSSMWire

/// The original's admin password format: `$s0$<hex params>$<b64 salt>$<b64 key>` where params is
/// `log2(N)<<16 | r<<8 | p` (`F0801` = N 32768, r 8, p 1) and key = scrypt(password, salt, 32 bytes).
public struct PasswordHash: Sendable {
    public let log2N: Int
    public let r: Int
    public let p: Int
    public let salt: [UInt8]
    public let key: [UInt8]

    public init(parsing text: String) throws(ServiceError) {
        let parts = text.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0].isEmpty, parts[1] == "s0", let params = Int(parts[2], radix: 16) else {
            throw ServiceError.internalError("rootPassword is not a $s0$ scrypt hash")
        }
        log2N = params >> 16
        r = (params >> 8) & 0xFF
        p = params & 0xFF
        guard (1...24).contains(log2N), r > 0, p > 0,
            let salt = try? Base64.decode(String(parts[3])), let key = try? Base64.decode(String(parts[4])),
            !salt.isEmpty, !key.isEmpty
        else {
            throw ServiceError.internalError("rootPassword is not a valid $s0$ scrypt hash")
        }
        self.salt = salt
        self.key = key
    }

    /// A new hash with the original's parameters (N 32768, r 8, p 1, 16-byte salt, 32-byte key).
    public static func create(password: String) throws(CryptoError) -> String {
        let salt = SecureRandom.bytes(16)
        let key = try KDF.scrypt(password: Array(password.utf8), salt: salt, n: 32768, r: 8, p: 1, length: 32)
        return "$s0$F0801$\(Base64.encode(salt))$\(Base64.encode(key))"
    }

    /// scrypt's threads (nice 10): a login's 100+ ms of a core yields to signing and to other
    /// tenants' requests when the CPU is short (05-hostile: fairness).
    static let workers = NicedWorkers(threads: 2, nice: 10)

    public func verify(_ password: String) -> Bool {
        PasswordHash.workers.run { [self] in derive(password) }
    }

    private func derive(_ password: String) -> Bool {
        guard
            let derived = try? KDF.scrypt(
                password: Array(password.utf8), salt: salt, n: 1 << UInt64(log2N),
                r: UInt64(r), p: UInt64(p), length: key.count)
        else { return false }
        return constantTimeEqual(derived, key)
    }
}

/// Remembers, in memory only, that a password was verified by scrypt, so that the next `C_Login`
/// of a process start (the module logs in with the admin password as the user PIN) costs an HMAC
/// instead of 130 ms of scrypt. What is kept is HMAC-SHA-256 under a random key that lives and dies
/// with this process: never written anywhere, so a copy of the sealed state or of the config still
/// faces scrypt (offline guessing stays infeasible). A password that does not match the remembered
/// one runs scrypt as before and goes through the same per-identity throttle (online guessing is
/// as slow as before). An entry is trusted for `lifetimeMs` after the scrypt that made it.
final class VerifiedPasswordCache: Sendable {
    static let lifetimeMs: Int64 = 15 * 60 * 1000
    private let key = SecureRandom.bytes(32)
    private let entry = Locked<(tag: [UInt8], untilMs: Int64)?>(nil)

    private func tag(_ password: String) -> [UInt8] { DigestAlgorithm.sha256.hmac(key: key, data: Array(password.utf8)) }

    /// True when `password` is the one scrypt verified less than `lifetimeMs` ago.
    func contains(_ password: String, nowMs: Int64) -> Bool {
        guard let e = entry.withLock({ $0 }), e.untilMs > nowMs else { return false }
        return constantTimeEqual(tag(password), e.tag)
    }

    func remember(_ password: String, nowMs: Int64) {
        let t = tag(password)
        entry.withLock { $0 = (t, nowMs + VerifiedPasswordCache.lifetimeMs) }
    }
}

extension PasswordHash {
    /// `verify`, answered from `cache` when scrypt confirmed the same password recently; else
    /// `permit` decides whether scrypt may run (it throws when not: on an event loop, or over the
    /// client's budget).
    func verify(
        _ password: String, cache: VerifiedPasswordCache,
        permit: () throws(ServiceError) -> Void = {}
    ) throws(ServiceError) -> Bool {
        let now = Monotonic.ms()
        if cache.contains(password, nowMs: now) { return true }
        try permit()
        guard verify(password) else { return false }
        cache.remember(password, nowMs: now)
        return true
    }
}
