import COpenSSL
import VSSMSync

public enum AsymmetricKind: String, Sendable {
    case rsa = "RSA", ec = "EC"
    /// Edwards-curve keys (EdDSA, RFC 8032): a service extension, unknown to the original API.
    case ed25519 = "ED25519", ed448 = "ED448"
    /// FIPS 186 DSA (PKCS#11 CKK_DSA): legacy, a service extension for applications that need it.
    case dsa = "DSA"
    /// FIPS 204 ML-DSA (PKCS#11 3.2 CKK_ML_DSA): post-quantum signatures, a service extension
    /// (held by the service with swift-crypto; `MLDSAParameterSet` has their encodings).
    case mldsa65 = "ML-DSA-65", mldsa87 = "ML-DSA-87"
    /// FIPS 203 ML-KEM (PKCS#11 3.2 CKK_ML_KEM): post-quantum key encapsulation, an extension too.
    case mlkem768 = "ML-KEM-768", mlkem1024 = "ML-KEM-1024"

    public var mldsa: MLDSAParameterSet? {
        switch self {
        case .mldsa65: .mldsa65
        case .mldsa87: .mldsa87
        default: nil
        }
    }
    public var mlkem: MLKEMParameterSet? {
        switch self {
        case .mlkem768: .mlkem768
        case .mlkem1024: .mlkem1024
        default: nil
        }
    }

    public var isEdwards: Bool { self == .ed25519 || self == .ed448 }

    /// DER of the curve OID (RFC 8410): PKCS#11 CKA_EC_PARAMS of a CKK_EC_EDWARDS key.
    public var edwardsOID: [UInt8]? {
        switch self {
        case .ed25519: [0x06, 0x03, 0x2B, 0x65, 0x70]
        case .ed448: [0x06, 0x03, 0x2B, 0x65, 0x71]
        default: nil
        }
    }
}

/// Named curves of the API (the original's P-224/256/384/521) and P-192, which the key service
/// allows for session keys only (80-bit security; PKCS#11 applications still test with it).
public enum NamedCurve: String, Sendable, CaseIterable {
    case p192 = "P-192", p224 = "P-224", p256 = "P-256", p384 = "P-384", p521 = "P-521"

    /// Curves a stored key may use.
    public var storable: Bool { self != .p192 }

    public var nid: Int32 {
        switch self {
        case .p192: NID_X9_62_prime192v1
        case .p224: NID_secp224r1
        case .p256: NID_X9_62_prime256v1
        case .p384: NID_secp384r1
        case .p521: NID_secp521r1
        }
    }

    public var bits: Int {
        switch self {
        case .p192: 192
        case .p224: 224
        case .p256: 256
        case .p384: 384
        case .p521: 521
        }
    }

    /// DER of the curve's OID (what PKCS#11 puts in CKA_EC_PARAMS).
    public var oidDER: [UInt8] {
        switch self {
        case .p192: [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x01]
        case .p224: [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x21]
        case .p256: [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]
        case .p384: [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22]
        case .p521: [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x23]
        }
    }

    public init?(bits: Int) {
        guard let c = NamedCurve.allCases.first(where: { $0.bits == bits }) else { return nil }
        self = c
    }

    init?(nid: Int32) {
        guard let c = NamedCurve.allCases.first(where: { $0.nid == nid }) else { return nil }
        self = c
    }
}

/// Signature schemes the key service can apply to a digest it is given.
public enum SignatureScheme: Sendable, Equatable {
    /// PKCS#1 v1.5 over DigestInfo(hash, digest).
    case pkcs1(DigestAlgorithm)
    /// PKCS#1 v1.5 type-1 padding over caller-supplied bytes (CKM_RSA_PKCS with any DigestInfo).
    case pkcs1Raw
    /// RSASSA-PSS; salt length in bytes.
    case pss(DigestAlgorithm, mgf1: DigestAlgorithm, saltLength: Int)
    /// ECDSA over the given bytes, DER signature.
    case ecdsa
    /// DSA over the given digest, DER signature.
    case dsa
}

/// Asymmetric encryption paddings.
public enum EncryptionPadding: Sendable, Equatable {
    /// Raw RSA (PKCS#11 CKM_RSA_X_509): the input is exactly the modulus size.
    case none
    case pkcs1
    case oaep(DigestAlgorithm, mgf1: DigestAlgorithm, label: [UInt8])
}

/// Shared code for the two key classes: an owned EVP_PKEY.
public class PKey: @unchecked Sendable {
    // EVP_PKEY is reference counted and safe for concurrent use once built (OpenSSL 3 threading
    // rules: const use of a key from many threads is fine); we never mutate it after init.
    let pkey: OpaquePointer

    init(owning pkey: OpaquePointer) { self.pkey = pkey }
    deinit { EVP_PKEY_free(pkey) }

    public var kind: AsymmetricKind {
        switch EVP_PKEY_get_base_id(pkey) {
        case EVP_PKEY_EC: .ec
        case EVP_PKEY_ED25519: .ed25519
        case EVP_PKEY_ED448: .ed448
        case EVP_PKEY_DSA: .dsa
        default: .rsa
        }
    }

    /// DSA domain parameters and public value (big-endian, no leading zeros).
    public var dsaComponents: (p: [UInt8], q: [UInt8], g: [UInt8], y: [UInt8])? {
        guard kind == .dsa else { return nil }
        return (
            bnParam(OSSL_PKEY_PARAM_FFC_P), bnParam(OSSL_PKEY_PARAM_FFC_Q), bnParam(OSSL_PKEY_PARAM_FFC_G), bnParam(OSSL_PKEY_PARAM_PUB_KEY)
        )
    }

    /// The raw public key of an Edwards key (32 or 57 bytes).
    public var edwardsPublicKey: [UInt8]? {
        guard kind.isEdwards else { return nil }
        var len = 0
        guard EVP_PKEY_get_raw_public_key(pkey, nil, &len) == 1, len > 0, len <= 64 else { return nil }
        var out = [UInt8](repeating: 0, count: len)
        guard EVP_PKEY_get_raw_public_key(pkey, &out, &len) == 1 else { return nil }
        return Array(out.prefix(len))
    }

    /// Verifies a PureEdDSA signature over the whole message.
    public func verifyEdDSA(signature: [UInt8], message: [UInt8]) -> Bool {
        guard kind.isEdwards, let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestVerifyInit(ctx, nil, nil, nil, pkey) == 1 else { ERR_clear_error(); return false }
        let r = bytesPointer(signature) { sp, sn in bytesPointer(message) { mp, mn in EVP_DigestVerify(ctx, sp, sn, mp, mn) } }
        ERR_clear_error()
        return r == 1
    }
    public var bits: Int { Int(EVP_PKEY_get_bits(pkey)) }

    public var curve: NamedCurve? {
        guard kind == .ec else { return nil }
        var name = [CChar](repeating: 0, count: 64)
        var len = 0
        guard EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, &name, name.count, &len) == 1 else { return nil }
        let s = String(decoding: name.prefix(len).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return NamedCurve(nid: OBJ_sn2nid(s) != 0 ? OBJ_sn2nid(s) : EC_curve_nist2nid(s))
    }

    /// Maximum signature / ciphertext size in bytes.
    public var maxOutputSize: Int { Int(EVP_PKEY_get_size(pkey)) }

    /// DER SubjectPublicKeyInfo.
    public var spkiDER: [UInt8] {
        var p: UnsafeMutablePointer<UInt8>? = nil
        let n = i2d_PUBKEY(pkey, &p)
        guard n > 0, let p else { return [] }
        defer { copenssl_free(p) }
        return Array(UnsafeBufferPointer(start: p, count: Int(n)))
    }

    /// RSA modulus and public exponent (big-endian, no leading zeros).
    public var rsaComponents: (modulus: [UInt8], exponent: [UInt8])? {
        guard kind == .rsa else { return nil }
        return (bnParam(OSSL_PKEY_PARAM_RSA_N), bnParam(OSSL_PKEY_PARAM_RSA_E))
    }

    /// The uncompressed EC point 04 || X || Y. Built from the coordinates, not from the key's encoded
    /// form: that follows the key's conversion format, which a host's engine can leave compressed.
    public var ecPoint: [UInt8]? {
        guard kind == .ec, let curve else { return nil }
        let size = (curve.bits + 7) / 8
        let x = bnParam(OSSL_PKEY_PARAM_EC_PUB_X), y = bnParam(OSSL_PKEY_PARAM_EC_PUB_Y)
        guard !x.isEmpty, !y.isEmpty, x.count <= size, y.count <= size else { return nil }
        return [0x04] + [UInt8](repeating: 0, count: size - x.count) + x + [UInt8](repeating: 0, count: size - y.count) + y
    }

    func bnParam(_ name: UnsafePointer<CChar>) -> [UInt8] {
        var bn: OpaquePointer? = nil
        guard EVP_PKEY_get_bn_param(pkey, name, &bn) == 1, let bn else { return [] }
        defer { BN_free(bn) }
        let n = (BN_num_bits(bn) + 7) / 8
        var out = [UInt8](repeating: 0, count: Int(n))
        _ = BN_bn2bin(bn, &out)
        return out
    }

    func makeContext() throws(CryptoError) -> OpaquePointer {
        guard let ctx = EVP_PKEY_CTX_new(pkey, nil) else { throw CryptoError.openssl("pkey context") }
        return ctx
    }

    func configureSignature(_ ctx: OpaquePointer, _ scheme: SignatureScheme) throws(CryptoError) {
        switch scheme {
        case .pkcs1(let md):
            guard kind == .rsa else { throw CryptoError("key is not an RSA key") }
            guard EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1,
                EVP_PKEY_CTX_set_signature_md(ctx, md.md) == 1
            else { throw CryptoError.openssl("rsa pkcs1 params") }
        case .pkcs1Raw:
            guard kind == .rsa else { throw CryptoError("key is not an RSA key") }
            guard EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 else { throw CryptoError.openssl("rsa pkcs1 params") }
        case .pss(let md, let mgf1, let salt):
            guard kind == .rsa else { throw CryptoError("key is not an RSA key") }
            guard EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1,
                EVP_PKEY_CTX_set_signature_md(ctx, md.md) == 1,
                EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, mgf1.md) == 1,
                EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, Int32(salt)) == 1
            else { throw CryptoError.openssl("rsa pss params") }
        case .ecdsa:
            guard kind == .ec else { throw CryptoError("key is not an EC key") }
        case .dsa:
            guard kind == .dsa else { throw CryptoError("key is not a DSA key") }
        }
    }

    func configureEncryption(_ ctx: OpaquePointer, _ padding: EncryptionPadding) throws(CryptoError) {
        guard kind == .rsa else { throw CryptoError("key is not an RSA key") }
        switch padding {
        case .none:
            guard EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) == 1 else { throw CryptoError.openssl("rsa padding") }
        case .pkcs1:
            guard EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 else { throw CryptoError.openssl("rsa padding") }
        case .oaep(let md, let mgf1, let label):
            guard EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1,
                EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md.md) == 1,
                EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, mgf1.md) == 1
            else { throw CryptoError.openssl("rsa oaep params") }
            if !label.isEmpty {
                // set0 takes ownership of an OPENSSL_malloc'd copy.
                guard let copy = CRYPTO_malloc(label.count, nil, 0) else { throw CryptoError("out of memory") }
                label.withUnsafeBytes { src in copy.copyMemory(from: src.baseAddress.unsafelyUnwrapped, byteCount: label.count) }
                guard EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, copy, Int32(label.count)) == 1 else {
                    copenssl_free(copy)
                    throw CryptoError.openssl("rsa oaep label")
                }
            }
        }
    }

    /// Verifies a signature over `digest` (or raw bytes for pkcs1Raw / ECDSA).
    public func verify(signature: [UInt8], digest: [UInt8], scheme: SignatureScheme) -> Bool {
        guard let ctx = try? makeContext() else { return false }
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_verify_init(ctx) == 1 else { ERR_clear_error(); return false }
        do { try configureSignature(ctx, scheme) } catch { ERR_clear_error(); return false }
        let r = bytesPointer(signature) { sp, sn in bytesPointer(digest) { dp, dn in EVP_PKEY_verify(ctx, sp, sn, dp, dn) } }
        ERR_clear_error()
        return r == 1
    }

    /// Public-key encryption.
    public func encrypt(_ plaintext: [UInt8], padding: EncryptionPadding) throws(CryptoError) -> [UInt8] {
        let ctx = try makeContext()
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_encrypt_init(ctx) == 1 else { throw CryptoError.openssl("encrypt init") }
        try configureEncryption(ctx, padding)
        var outLen = maxOutputSize
        var out = [UInt8](repeating: 0, count: outLen)
        let r = bytesPointer(plaintext) { p, n in EVP_PKEY_encrypt(ctx, &out, &outLen, p, n) }
        guard r == 1 else {
            ERR_clear_error()
            throw CryptoError("crypto/rsa: message too long for RSA public key size")
        }
        return Array(out.prefix(outLen))
    }
}

public final class PublicKey: PKey, @unchecked Sendable {
    /// Parses a DER SubjectPublicKeyInfo.
    public init(spki: [UInt8]) throws(CryptoError) {
        let key = try withBytes(spki) { (p, n) throws(CryptoError) -> OpaquePointer in
            var cursor: UnsafePointer<UInt8>? = p
            guard let k = d2i_PUBKEY(nil, &cursor, n) else { throw CryptoError.openssl("invalid public key") }
            return k
        }
        super.init(owning: key)
    }
}

public final class PrivateKey: PKey, @unchecked Sendable {
    /// Parses PKCS#8 DER (PrivateKeyInfo), as injectkey and backups carry it.
    public init(pkcs8: [UInt8]) throws(CryptoError) {
        let key = try withBytes(pkcs8) { (p, n) throws(CryptoError) -> OpaquePointer in
            var cursor: UnsafePointer<UInt8>? = p
            guard let info = d2i_PKCS8_PRIV_KEY_INFO(nil, &cursor, n) else { throw CryptoError.openssl("invalid PKCS#8 private key") }
            defer { PKCS8_PRIV_KEY_INFO_free(info) }
            guard let k = EVP_PKCS82PKEY(info) else { throw CryptoError.openssl("unsupported PKCS#8 private key") }
            return k
        }
        let t = EVP_PKEY_get_base_id(key)
        guard t == EVP_PKEY_RSA || t == EVP_PKEY_EC || t == EVP_PKEY_ED25519 || t == EVP_PKEY_ED448 || t == EVP_PKEY_DSA else {
            EVP_PKEY_free(key)
            throw CryptoError("Unsupported key type")
        }
        super.init(owning: key)
    }

    /// Parses a PEM private key (PKCS#8, traditional RSA/EC, or encrypted PKCS#8 with `passphrase`).
    public init(pem: [UInt8], passphrase: String? = nil) throws(CryptoError) {
        let key = try withBytes(pem) { (p, n) throws(CryptoError) -> OpaquePointer in
            let k: OpaquePointer? =
                if let passphrase {
                    passphrase.withCString { copenssl_read_private_key_pem(p, Int32(n), $0) }
                } else {
                    copenssl_read_private_key_pem(p, Int32(n), nil)
                }
            guard let k else { throw CryptoError.openssl("cannot read private key") }
            return k
        }
        super.init(owning: key)
    }

    private override init(owning pkey: OpaquePointer) { super.init(owning: pkey) }

    public static func generateRSA(bits: Int) throws(CryptoError) -> PrivateKey {
        guard let ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, nil) else { throw CryptoError.openssl("keygen context") }
        defer { EVP_PKEY_CTX_free(ctx) }
        var key: OpaquePointer? = nil
        guard EVP_PKEY_keygen_init(ctx) == 1, EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, Int32(bits)) == 1,
            EVP_PKEY_keygen(ctx, &key) == 1, let key
        else { throw CryptoError.openssl("RSA key generation") }
        return PrivateKey(owning: key)
    }

    /// DSA domain parameters of `bits` (FIPS 186-4 generation): p, q, g.
    public static func generateDSAParameters(bits: Int) throws(CryptoError) -> (p: [UInt8], q: [UInt8], g: [UInt8]) {
        guard [1024, 2048, 3072].contains(bits), let ctx = EVP_PKEY_CTX_new_from_name(nil, "DSA", nil) else {
            throw CryptoError("DSA parameters are 1024, 2048 or 3072 bits")
        }
        defer { EVP_PKEY_CTX_free(ctx) }
        var params: OpaquePointer? = nil
        // FIPS 186-4 (L, N): (1024, 160), (2048, 256), (3072, 256).
        guard EVP_PKEY_paramgen_init(ctx) == 1, EVP_PKEY_CTX_set_dsa_paramgen_bits(ctx, Int32(bits)) == 1,
            EVP_PKEY_CTX_set_dsa_paramgen_q_bits(ctx, bits == 1024 ? 160 : 256) == 1,
            EVP_PKEY_paramgen(ctx, &params) == 1, let params
        else { throw CryptoError.openssl("DSA parameter generation") }
        let k = PrivateKey(owning: params)
        return (k.bnParam(OSSL_PKEY_PARAM_FFC_P), k.bnParam(OSSL_PKEY_PARAM_FFC_Q), k.bnParam(OSSL_PKEY_PARAM_FFC_G))
    }

    /// A DSA key on the given domain parameters. (The low-level DSA calls: OpenSSL 3.0's
    /// provider key generation from imported domain parameters fails without an error.)
    public static func generateDSA(p: [UInt8], q: [UInt8], g: [UInt8]) throws(CryptoError) -> PrivateKey {
        guard [p, q, g].allSatisfy({ !$0.isEmpty && $0.count <= 512 }) else { throw CryptoError("invalid DSA domain parameter") }
        guard
            let key = p.withUnsafeBufferPointer({ pp in
                q.withUnsafeBufferPointer { qp in
                    g.withUnsafeBufferPointer { gp in
                        copenssl_dsa_generate(pp.baseAddress, pp.count, qp.baseAddress, qp.count, gp.baseAddress, gp.count)
                    }
                }
            })
        else { throw CryptoError.openssl("DSA key generation (domain parameters of at least 1024/160 bits)") }
        return PrivateKey(owning: key)
    }

    /// An Ed25519 or Ed448 key.
    public static func generateEdwards(_ kind: AsymmetricKind) throws(CryptoError) -> PrivateKey {
        guard kind.isEdwards, let ctx = EVP_PKEY_CTX_new_id(kind == .ed25519 ? EVP_PKEY_ED25519 : EVP_PKEY_ED448, nil) else {
            throw CryptoError.openssl("keygen context")
        }
        defer { EVP_PKEY_CTX_free(ctx) }
        var key: OpaquePointer? = nil
        guard EVP_PKEY_keygen_init(ctx) == 1, EVP_PKEY_keygen(ctx, &key) == 1, let key else {
            throw CryptoError.openssl("EdDSA key generation")
        }
        return PrivateKey(owning: key)
    }

    /// PureEdDSA (RFC 8032) over the whole message.
    public func signEdDSA(message: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard kind.isEdwards, let ctx = EVP_MD_CTX_new() else { throw CryptoError("key is not an Edwards key") }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestSignInit(ctx, nil, nil, nil, pkey) == 1 else { throw CryptoError.openssl("eddsa init") }
        var len = 0
        guard bytesPointer(message, { p, n in EVP_DigestSign(ctx, nil, &len, p, n) }) == 1, len > 0, len <= 128 else {
            throw CryptoError.openssl("eddsa size")
        }
        var out = [UInt8](repeating: 0, count: len)
        guard bytesPointer(message, { p, n in EVP_DigestSign(ctx, &out, &len, p, n) }) == 1 else { throw CryptoError.openssl("eddsa sign") }
        return Array(out.prefix(len))
    }

    public static func generateEC(_ curve: NamedCurve) throws(CryptoError) -> PrivateKey {
        guard let ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nil) else { throw CryptoError.openssl("keygen context") }
        defer { EVP_PKEY_CTX_free(ctx) }
        var key: OpaquePointer? = nil
        guard EVP_PKEY_keygen_init(ctx) == 1, EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx, curve.nid) == 1,
            EVP_PKEY_keygen(ctx, &key) == 1, let key
        else { throw CryptoError.openssl("EC key generation") }
        return PrivateKey(owning: key)
    }

    /// PKCS#8 DER (unencrypted).
    public var pkcs8DER: [UInt8] {
        guard let info = EVP_PKEY2PKCS8(pkey) else { return [] }
        defer { PKCS8_PRIV_KEY_INFO_free(info) }
        var p: UnsafeMutablePointer<UInt8>? = nil
        let n = i2d_PKCS8_PRIV_KEY_INFO(info, &p)
        guard n > 0, let p else { return [] }
        defer {
            OPENSSL_cleanse(p, Int(n))
            copenssl_free(p)
        }
        return Array(UnsafeBufferPointer(start: p, count: Int(n)))
    }

    public var publicKey: PublicKey? { try? PublicKey(spki: spkiDER) }

    /// True when `spki` is this key's public half.
    public func matches(spki: [UInt8]) -> Bool { !spki.isEmpty && spki == spkiDER }

    /// Signing contexts already initialised for a scheme, kept for the next signature of this key
    /// (a fresh EVP_PKEY_CTX and sign_init cost 1.5-2 us of a 14 us P-256 signature in OpenSSL 3.0).
    /// A context is used by one thread at a time: taken out of the pool, put back after success.
    private let signContexts = Locked<[(scheme: SignatureScheme, ctx: OpaquePointer)]>([])
    static let maxPooledContexts = 8

    deinit {
        signContexts.withLock { pool in
            for entry in pool { EVP_PKEY_CTX_free(entry.ctx) }
            pool.removeAll()
        }
    }

    private func signContext(_ scheme: SignatureScheme) throws(CryptoError) -> OpaquePointer {
        let pooled = signContexts.withLock { pool -> OpaquePointer? in
            guard let i = pool.firstIndex(where: { $0.scheme == scheme }) else { return nil }
            return pool.remove(at: i).ctx
        }
        if let pooled { return pooled }
        let ctx = try makeContext()
        do throws(CryptoError) {
            guard EVP_PKEY_sign_init(ctx) == 1 else { throw CryptoError.openssl("sign init") }
            try configureSignature(ctx, scheme)
        } catch {
            EVP_PKEY_CTX_free(ctx)
            throw error
        }
        return ctx
    }

    /// Signs `digest` (already hashed, or raw bytes for pkcs1Raw). ECDSA output is DER.
    public func sign(digest: [UInt8], scheme: SignatureScheme) throws(CryptoError) -> [UInt8] {
        let ctx = try signContext(scheme)
        var len = maxOutputSize
        var out = [UInt8](repeating: 0, count: len)
        let r = bytesPointer(digest) { p, n in EVP_PKEY_sign(ctx, &out, &len, p, n) }
        guard r == 1 else {
            // A context that failed is not reused.
            EVP_PKEY_CTX_free(ctx)
            switch scheme {
            case .pkcs1, .pss:
                ERR_clear_error()
                throw CryptoError("crypto/rsa: input must be hashed message")
            case .pkcs1Raw:
                ERR_clear_error()
                throw CryptoError("crypto/rsa: message too long for RSA key size")
            case .ecdsa, .dsa:
                throw CryptoError.openssl("ecdsa sign")
            }
        }
        let kept = signContexts.withLock { pool -> Bool in
            guard pool.count < PrivateKey.maxPooledContexts else { return false }
            pool.append((scheme, ctx))
            return true
        }
        if !kept { EVP_PKEY_CTX_free(ctx) }
        return Array(out.prefix(len))
    }

    /// Private-key decryption. Any padding failure gives Go's `crypto/rsa: decryption error`.
    public func decrypt(_ ciphertext: [UInt8], padding: EncryptionPadding) throws(CryptoError) -> [UInt8] {
        let ctx = try makeContext()
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_decrypt_init(ctx) == 1 else { throw CryptoError.openssl("decrypt init") }
        try configureEncryption(ctx, padding)
        if padding == .pkcs1 {
            // OpenSSL 3.2+ would return random bytes on bad padding (implicit rejection); we want an error.
            _ = EVP_PKEY_CTX_ctrl_str(ctx, "rsa_pkcs1_implicit_rejection", "0")
        }
        var len = maxOutputSize
        var out = [UInt8](repeating: 0, count: len)
        let r = bytesPointer(ciphertext) { p, n in EVP_PKEY_decrypt(ctx, &out, &len, p, n) }
        ERR_clear_error()
        guard r == 1 else { throw CryptoError("crypto/rsa: decryption error") }
        return Array(out.prefix(len))
    }
}

/// ECDSA signature encodings: DER `SEQUENCE { r, s }` (the wire) <-> raw r||s (PKCS#11).
public enum ECDSASignature {
    public static func derToRaw(_ der: [UInt8], fieldSize: Int) -> [UInt8]? {
        let sig = bytesPointer(der) { p, n -> OpaquePointer? in
            var cursor: UnsafePointer<UInt8>? = p
            return d2i_ECDSA_SIG(nil, &cursor, n)
        }
        guard let s = sig else { return nil }
        defer { ECDSA_SIG_free(s) }
        var out = [UInt8](repeating: 0, count: fieldSize * 2)
        guard let r = ECDSA_SIG_get0_r(s), let ss = ECDSA_SIG_get0_s(s) else { return nil }
        guard BN_bn2binpad(r, &out, Int32(fieldSize)) == Int32(fieldSize) else { return nil }
        let ok = out.withUnsafeMutableBufferPointer { buf in
            BN_bn2binpad(ss, buf.baseAddress.unsafelyUnwrapped + fieldSize, Int32(fieldSize))
        }
        return ok == Int32(fieldSize) ? out : nil
    }

    public static func rawToDER(_ raw: [UInt8]) -> [UInt8]? {
        guard !raw.isEmpty, raw.count % 2 == 0 else { return nil }
        let half = raw.count / 2
        guard let s = ECDSA_SIG_new() else { return nil }
        defer { ECDSA_SIG_free(s) }
        let r = raw.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, Int32(half), nil) }
        let ss = raw.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress.map { $0 + half }, Int32(half), nil) }
        guard let r, let ss, ECDSA_SIG_set0(s, r, ss) == 1 else { return nil }
        var p: UnsafeMutablePointer<UInt8>? = nil
        let n = i2d_ECDSA_SIG(s, &p)
        guard n > 0, let p else { return nil }
        defer { copenssl_free(p) }
        return Array(UnsafeBufferPointer(start: p, count: Int(n)))
    }
}

/// Small X.509 accessors (parsing only; certificates are built with swift-certificates).
public enum X509Info {
    /// DER SubjectPublicKeyInfo of a DER certificate.
    public static func subjectPublicKeyInfo(certificateDER der: [UInt8]) throws(CryptoError) -> [UInt8] {
        let cert = bytesPointer(der) { p, n -> OpaquePointer? in
            var cursor: UnsafePointer<UInt8>? = p
            return d2i_X509(nil, &cursor, n)
        }
        guard let cert else { throw CryptoError.openssl("invalid certificate") }
        defer { X509_free(cert) }
        guard let pub = X509_get0_pubkey(cert) else { throw CryptoError.openssl("certificate without a public key") }
        var p: UnsafeMutablePointer<UInt8>? = nil
        let n = i2d_PUBKEY(pub, &p)
        guard n > 0, let p else { throw CryptoError.openssl("cannot encode public key") }
        defer { copenssl_free(p) }
        return Array(UnsafeBufferPointer(start: p, count: Int(n)))
    }

    /// PEM of DER certificates.
    public static func pem(certificates: [[UInt8]]) -> String {
        certificates.map { pem(der: $0, label: "CERTIFICATE") }.joined()
    }

    public static func pem(der: [UInt8], label: String) -> String {
        let b64 = base64(der)
        var lines = ""
        var i = b64.startIndex
        while i < b64.endIndex {
            let j = b64.index(i, offsetBy: 64, limitedBy: b64.endIndex) ?? b64.endIndex
            lines += b64[i..<j] + "\n"
            i = j
        }
        return "-----BEGIN \(label)-----\n\(lines)-----END \(label)-----\n"
    }

    /// DER blocks of every `-----BEGIN <label>-----` section in a PEM text.
    public static func derBlocks(pem: String, label: String = "CERTIFICATE") -> [[UInt8]] {
        var out: [[UInt8]] = []
        var collecting = false
        var b64 = ""
        for line in pem.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            if line.hasPrefix("-----BEGIN \(label)-----") { collecting = true; b64 = ""; continue }
            if line.hasPrefix("-----END \(label)-----") {
                collecting = false
                if let d = unbase64(b64) { out.append(d) }
                continue
            }
            if collecting { b64 += line }
        }
        return out
    }

    static func base64(_ d: [UInt8]) -> String {
        guard !d.isEmpty else { return "" }
        var out = [UInt8](repeating: 0, count: (d.count + 2) / 3 * 4 + 1)
        let n = EVP_EncodeBlock(&out, d, Int32(d.count))
        return String(decoding: out.prefix(Int(n)), as: UTF8.self)
    }

    static func unbase64(_ s: String) -> [UInt8]? {
        let src = Array(s.utf8)
        guard !src.isEmpty, src.count % 4 == 0 else { return nil }
        var out = [UInt8](repeating: 0, count: src.count / 4 * 3)
        let n = EVP_DecodeBlock(&out, src, Int32(src.count))
        guard n >= 0 else { return nil }
        let pad = src.suffix(2).filter { $0 == UInt8(ascii: "=") }.count
        return Array(out.prefix(Int(n) - pad))
    }
}
