import VSSMSync
import VSSMWire
import COpenSSL

/// Hash algorithms, one row each (`row`): the wire name (`rawValue`, as in the original's
/// algorithm strings: `SHA256withRSA`, `RSA-OAEP/SHA256`), OpenSSL's name, the size, the
/// DigestInfo OID and whether the original API offers it. Adding a hash is a case and its row here
/// plus its PKCS#11 row in TokenCore (`HashAlgorithm.mechanisms`).
public enum DigestAlgorithm: String, Sendable, CaseIterable {
    case sha1 = "SHA1", sha224 = "SHA224", sha256 = "SHA256", sha384 = "SHA384", sha512 = "SHA512"
    case sha3_224 = "SHA3-224", sha3_256 = "SHA3-256", sha3_384 = "SHA3-384", sha3_512 = "SHA3-512"

    public struct Row: Sendable {
        /// The name OpenSSL 3 fetches it by.
        public let openSSLName: String
        public let size: Int
        /// The last arc of the OID under 2.16.840.1.101.3.4.2 (NIST hash algorithms); SHA-1 is
        /// 1.3.14.3.2.26 and has 0 here.
        let nistArc: UInt8
        /// Offered by the original VSSM's API (its sign, HMAC and OAEP algorithm names); the
        /// others only through our extensions.
        public let inOriginalAPI: Bool
    }

    public var row: Row {
        switch self {
        case .sha1: Row(openSSLName: "SHA1", size: 20, nistArc: 0, inOriginalAPI: true)
        case .sha224: Row(openSSLName: "SHA2-224", size: 28, nistArc: 4, inOriginalAPI: false)
        case .sha256: Row(openSSLName: "SHA2-256", size: 32, nistArc: 1, inOriginalAPI: true)
        case .sha384: Row(openSSLName: "SHA2-384", size: 48, nistArc: 2, inOriginalAPI: true)
        case .sha512: Row(openSSLName: "SHA2-512", size: 64, nistArc: 3, inOriginalAPI: true)
        case .sha3_224: Row(openSSLName: "SHA3-224", size: 28, nistArc: 7, inOriginalAPI: false)
        case .sha3_256: Row(openSSLName: "SHA3-256", size: 32, nistArc: 8, inOriginalAPI: false)
        case .sha3_384: Row(openSSLName: "SHA3-384", size: 48, nistArc: 9, inOriginalAPI: false)
        case .sha3_512: Row(openSSLName: "SHA3-512", size: 64, nistArc: 10, inOriginalAPI: false)
        }
    }

    public var size: Int { row.size }
    public var inOriginalAPI: Bool { row.inOriginalAPI }
    public var isSHA3: Bool { row.openSSLName.hasPrefix("SHA3-") }

    /// The DER OID of the hash.
    public var oidDER: [UInt8] {
        let r = row
        if r.nistArc == 0 { return [0x06, 0x05, 0x2B, 0x0E, 0x03, 0x02, 0x1A] }
        return [0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, r.nistArc]
    }

    /// DER DigestInfo prefix (RFC 8017 §9.2 note 1: SEQUENCE { AlgorithmIdentifier { oid, NULL },
    /// OCTET STRING digest }); the digest follows.
    public var digestInfoPrefix: [UInt8] {
        let algorithmID = [0x30, UInt8(oidDER.count + 2)] + oidDER + [0x05, 0x00]
        let body = algorithmID.count + 2 + size
        return [0x30, UInt8(body)] + algorithmID + [0x04, UInt8(size)]
    }

    /// Splits a DigestInfo into hash and digest, when it is one of these hashes.
    public static func parseDigestInfo(_ data: [UInt8]) -> (DigestAlgorithm, [UInt8])? {
        for h in allCases {
            let p = h.digestInfoPrefix
            if data.count == p.count + h.size && Array(data.prefix(p.count)) == p {
                return (h, Array(data.dropFirst(p.count)))
            }
        }
        return nil
    }

    /// The EVP_MD, fetched once per process: OpenSSL 3 resolves the legacy `EVP_sha256()` objects by
    /// name on every init, which dominated the module's CPU per signature (measured with perf).
    var md: OpaquePointer? { FetchedDigests.shared.md[self] ?? nil }

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
    // EVP_MD objects are immutable and safe to share between threads once fetched; the table is
    // written once, in init.
    static let shared = FetchedDigests()
    let md: [DigestAlgorithm: OpaquePointer?]
    private init() {
        var t: [DigestAlgorithm: OpaquePointer?] = [:]
        for d in DigestAlgorithm.allCases { t[d] = EVP_MD_fetch(nil, d.row.openSSLName, nil) }
        md = t
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
    public static func scrypt(password: [UInt8], salt: [UInt8], n: UInt64, r: UInt64, p: UInt64, length: Int) throws(CryptoError) -> [UInt8]
    {
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
