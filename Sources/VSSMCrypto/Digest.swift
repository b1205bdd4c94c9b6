import VSSMSync
import VSSMWire
import COpenSSL

/// Hash algorithms used by the API (names as in the original's algorithm strings).
public enum DigestAlgorithm: String, Sendable, CaseIterable {
    case sha1 = "SHA1", sha224 = "SHA224", sha256 = "SHA256", sha384 = "SHA384", sha512 = "SHA512"

    /// The EVP_MD, fetched once per process: OpenSSL 3 resolves the legacy `EVP_sha256()` objects by
    /// name on every init, which dominated the module's CPU per signature (measured with perf).
    var md: OpaquePointer? {
        switch self {
        case .sha1: FetchedDigests.shared.sha1
        case .sha224: FetchedDigests.shared.sha224
        case .sha256: FetchedDigests.shared.sha256
        case .sha384: FetchedDigests.shared.sha384
        case .sha512: FetchedDigests.shared.sha512
        }
    }

    public var size: Int {
        switch self {
        case .sha1: 20
        case .sha224: 28
        case .sha256: 32
        case .sha384: 48
        case .sha512: 64
        }
    }

    public func hash(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        let ok = bytesPointer(data) { p, n in EVP_Digest(p, n, &out, &len, md, nil) }
        return ok == 1 ? Array(out.prefix(Int(len))) : []
    }

    /// HMAC (RFC 2104) with this hash.
    public func hmac(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        let r = bytesPointer(key) { kp, kn in
            bytesPointer(data) { dp, dn in HMAC(md, kp, Int32(kn), dp, dn, &out, &len) }
        }
        return r == nil ? [] : Array(out.prefix(Int(len)))
    }
}

/// Explicitly fetched digests, kept for the life of the process (never freed: `-z nodelete`).
final class FetchedDigests: @unchecked Sendable {
    // EVP_MD objects are immutable and safe to share between threads once fetched.
    static let shared = FetchedDigests()
    let sha1, sha224, sha256, sha384, sha512: OpaquePointer?
    private init() {
        sha1 = EVP_MD_fetch(nil, "SHA1", nil) ?? EVP_sha1()
        sha224 = EVP_MD_fetch(nil, "SHA2-224", nil) ?? EVP_sha224()
        sha256 = EVP_MD_fetch(nil, "SHA2-256", nil) ?? EVP_sha256()
        sha384 = EVP_MD_fetch(nil, "SHA2-384", nil) ?? EVP_sha384()
        sha512 = EVP_MD_fetch(nil, "SHA2-512", nil) ?? EVP_sha512()
    }
}

/// Incremental hashing for multi-part operations.
public final class DigestContext: @unchecked Sendable {
    // Every use of `ctx` is under `lock` (two host threads may misuse one PKCS#11 session at the
    // same time: that must give a wrong answer at worst, never corrupt memory). `lock` holds
    // whether the digest was finished: later calls do nothing.
    private let ctx: OpaquePointer
    private let lock = Locked(false)
    public let algorithm: DigestAlgorithm

    public init(_ algorithm: DigestAlgorithm) throws(CryptoError) {
        guard let c = EVP_MD_CTX_new() else { throw CryptoError("out of memory") }
        guard EVP_DigestInit_ex(c, algorithm.md, nil) == 1 else {
            EVP_MD_CTX_free(c)
            throw CryptoError.openssl("digest init")
        }
        ctx = c
        self.algorithm = algorithm
    }

    deinit { EVP_MD_CTX_free(ctx) }

    public func update(_ data: [UInt8]) {
        lock.withLock { finished in
            guard !finished else { return }
            _ = bytesPointer(data) { p, n in EVP_DigestUpdate(ctx, p, n) }
        }
    }

    /// Hashes straight from a caller's buffer (no copy, no size limit).
    public func update(_ buffer: UnsafeRawBufferPointer) {
        lock.withLock { finished in
            guard !finished, let base = buffer.baseAddress, buffer.count > 0 else { return }
            _ = EVP_DigestUpdate(ctx, base, buffer.count)
        }
    }

    /// The digest; [] when it was already finished.
    public func finish() -> [UInt8] {
        lock.withLock { finished in
            guard !finished else { return [] }
            finished = true
            var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
            var len: UInt32 = 0
            guard EVP_DigestFinal_ex(ctx, &out, &len) == 1 else { return [] }
            return Array(out.prefix(Int(len)))
        }
    }
}

public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        if count > 0 { _ = RAND_bytes(&out, Int32(clamping: count)) }
        return out
    }

    /// `count` random bytes as lowercase hex (names, ids).
    public static func hex(_ count: Int) -> String { Hex.encode(bytes(count)) }

    /// Mixes caller bytes into the generator's state (PKCS#11 C_SeedRandom). Credited with no
    /// entropy: a bad seed cannot weaken the generator, a good one adds to it.
    public static func mix(_ seed: [UInt8]) {
        guard !seed.isEmpty, let n = Int32(exactly: seed.count) else { return }
        RAND_add(seed, n, 0)
    }
}

public enum KDF {
    /// scrypt (RFC 7914) as the original's `$s0$` admin password hashes use it.
    public static func scrypt(password: [UInt8], salt: [UInt8], n: UInt64, r: UInt64, p: UInt64, length: Int) throws(CryptoError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: length)
        let maxMem: UInt64 = 1 << 30
        let ok = bytesPointer(password) { pp, pn in
            bytesPointer(salt) { sp, sn in
                pp.withMemoryRebound(to: CChar.self, capacity: max(pn, 1)) { cp in
                    EVP_PBE_scrypt(cp, pn, sp, sn, n, r, p, maxMem, &out, length)
                }
            }
        }
        guard ok == 1 else { throw CryptoError.openssl("scrypt") }
        return out
    }

    /// HKDF-SHA256 (RFC 5869), extract-and-expand.
    public static func hkdfSHA256(key: [UInt8], salt: [UInt8], info: [UInt8], length: Int) throws(CryptoError) -> [UInt8] {
        // HMAC-based implementation keeps this independent of provider parameter plumbing.
        let prk = DigestAlgorithm.sha256.hmac(key: salt.isEmpty ? [UInt8](repeating: 0, count: 32) : salt, data: key)
        var okm: [UInt8] = []
        var t: [UInt8] = []
        var counter: UInt8 = 1
        while okm.count < length {
            t = DigestAlgorithm.sha256.hmac(key: prk, data: t + info + [counter])
            guard !t.isEmpty else { throw CryptoError("hkdf failed") }
            okm += t
            counter &+= 1
        }
        return Array(okm.prefix(length))
    }
}

/// Constant-time comparison for MACs and password hashes.
public func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    if a.isEmpty { return true }
    return a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in CRYPTO_memcmp(pa.baseAddress, pb.baseAddress, a.count) == 0 } }
}

/// An HMAC key set up once for many MACs (the audit trail MACs every request): OpenSSL keeps the
/// key schedule; each MAC runs on a copy of the prepared context, so it is safe from many threads.
public final class HMACKey: @unchecked Sendable {
    private let ctx: OpaquePointer
    public let algorithm: DigestAlgorithm

    public init(_ algorithm: DigestAlgorithm, key: [UInt8]) throws(CryptoError) {
        // The digest's own name (the fetched EVP_MD the rest of the code uses).
        guard let name = EVP_MD_get0_name(algorithm.md) else { throw CryptoError.openssl("HMAC digest") }
        let c = key.withUnsafeBufferPointer { copenssl_hmac_prepare(name, $0.baseAddress, $0.count) }
        guard let c else { throw CryptoError.openssl("HMAC key") }
        ctx = c
        self.algorithm = algorithm
    }

    deinit { EVP_MAC_CTX_free(ctx) }

    public func mac(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 64)
        var len = 0
        let ok = data.withUnsafeBufferPointer { d in
            out.withUnsafeMutableBufferPointer { o in copenssl_hmac_compute(ctx, d.baseAddress, d.count, o.baseAddress, o.count, &len) }
        }
        return ok == 1 && len <= out.count ? Array(out.prefix(len)) : []
    }
}
