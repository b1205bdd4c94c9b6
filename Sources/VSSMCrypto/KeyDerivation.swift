import COpenSSL

/// Key agreement, key derivation functions and key wrapping (used by the key service only; the
/// key material stays in its process).
extension PrivateKey {
    /// ECDH (SP 800-56A cofactor-less, as PKCS#11 CKM_ECDH1_DERIVE): the shared secret Z, the
    /// x-coordinate of d·Q. `peerPoint` is the peer's uncompressed (04||X||Y) or compressed point
    /// on this key's curve.
    public func ecdhSharedSecret(peerPoint: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard kind == .ec, let curve else { throw CryptoError("ECDH needs an EC key") }
        let peer = try PublicKey(spki: DERBuilder.ecSPKI(curveOID: curve.oidDER, point: peerPoint))
        guard peer.curve == curve else { throw CryptoError("the peer's point is not on this key's curve") }
        let ctx = try makeContext()
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_derive_init(ctx) == 1, EVP_PKEY_derive_set_peer(ctx, peer.pkey) == 1 else {
            ERR_clear_error()
            throw CryptoError("invalid ECDH peer point")
        }
        var len = 0
        guard EVP_PKEY_derive(ctx, nil, &len) == 1, len > 0, len <= 256 else { throw CryptoError.openssl("ecdh size") }
        var out = [UInt8](repeating: 0, count: len)
        guard EVP_PKEY_derive(ctx, &out, &len) == 1 else { throw CryptoError.openssl("ecdh derive") }
        return Array(out.prefix(len))
    }
}

extension KDF {
    /// ANSI X9.63 KDF (PKCS#11 CKD_SHA*_KDF): Hash(Z || counter32 || sharedInfo), counter from 1,
    /// concatenated up to `length` bytes.
    public static func x963(_ hash: DigestAlgorithm, secret: [UInt8], sharedInfo: [UInt8], length: Int) -> [UInt8] {
        var out: [UInt8] = []
        var counter: UInt32 = 1
        while out.count < length {
            let c = [UInt8(counter >> 24), UInt8((counter >> 16) & 0xFF), UInt8((counter >> 8) & 0xFF), UInt8(counter & 0xFF)]
            out += hash.hash(secret + c + sharedInfo)
            counter += 1
        }
        return Array(out.prefix(length))
    }
}

/// AES key wrap (RFC 3394, PKCS#11 CKM_AES_KEY_WRAP) and with padding (RFC 5649, CKM_AES_KEY_WRAP_PAD).
public enum AESKeyWrap {
    public static func wrap(key: [UInt8], _ input: [UInt8], padded: Bool) throws(CryptoError) -> [UInt8] {
        if !padded {
            guard input.count >= 16, input.count % 8 == 0 else {
                throw CryptoError("AES key wrap needs a multiple of 8 bytes, at least 16")
            }
        }
        guard !input.isEmpty else { throw CryptoError("nothing to wrap") }
        return try run(key: key, input, padded: padded, encrypt: true)
    }

    public static func unwrap(key: [UInt8], _ input: [UInt8], padded: Bool) throws(CryptoError) -> [UInt8] {
        guard input.count >= 16, input.count % 8 == 0 else { throw CryptoError("wrapped key must be a multiple of 8 bytes, at least 16") }
        return try run(key: key, input, padded: padded, encrypt: false)
    }

    private static func run(key: [UInt8], _ input: [UInt8], padded: Bool, encrypt: Bool) throws(CryptoError) -> [UInt8] {
        guard [16, 24, 32].contains(key.count) else { throw CryptoError("crypto/aes: invalid key size \(key.count)") }
        let name = "AES-\(key.count * 8)-WRAP" + (padded ? "-PAD" : "")
        guard let cipher = EVP_CIPHER_fetch(nil, name, nil) else { throw CryptoError.openssl("cipher \(name)") }
        defer { EVP_CIPHER_free(cipher) }
        guard let ctx = EVP_CIPHER_CTX_new() else { throw CryptoError("out of memory") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        let ok = bytesPointer(key) { kp, _ in EVP_CipherInit_ex2(ctx, cipher, kp, nil, encrypt ? 1 : 0, nil) }
        guard ok == 1 else { throw CryptoError.openssl("key wrap init") }
        var out = [UInt8](repeating: 0, count: input.count + 16)
        var n1: Int32 = 0
        var n2: Int32 = 0
        let upd = bytesPointer(input) { p, n in EVP_CipherUpdate(ctx, &out, &n1, p, Int32(n)) }
        guard upd == 1 else {
            ERR_clear_error()
            throw CryptoError(encrypt ? "key wrap failed" : "wrapped key integrity check failed")
        }
        let fin = out.withUnsafeMutableBufferPointer { buf in EVP_CipherFinal_ex(ctx, buf.baseAddress.map { $0 + Int(n1) }, &n2) }
        guard fin == 1 else {
            ERR_clear_error()
            throw CryptoError(encrypt ? "key wrap failed" : "wrapped key integrity check failed")
        }
        return Array(out.prefix(Int(n1 + n2)))
    }
}

/// DER lengths and TLVs (shared with TokenCore's PKCS#8/SPKI builders).
public enum DERBuilder {
    public static func length(_ n: Int) -> [UInt8] {
        if n < 0x80 { return [UInt8(n)] }
        var bytes: [UInt8] = []
        var v = n
        while v > 0 { bytes.insert(UInt8(v & 0xFF), at: 0); v >>= 8 }
        return [0x80 | UInt8(bytes.count)] + bytes
    }

    public static func tlv(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] { [tag] + length(content.count) + content }

    /// SubjectPublicKeyInfo of an EC public key (id-ecPublicKey, named curve).
    public static func ecSPKI(curveOID: [UInt8], point: [UInt8]) -> [UInt8] {
        let ecPublicKey: [UInt8] = [0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01]
        return tlv(0x30, tlv(0x30, ecPublicKey + curveOID) + tlv(0x03, [0] + point))
    }
}

/// Block-cipher MACs (PKCS#11 CKM_AES_CMAC, CKM_AES_MAC), computed where the key lives.
extension BlockCipher {
    /// CMAC (NIST SP 800-38B, RFC 4493), full block.
    public func cmac(_ message: [UInt8]) throws(CryptoError) -> [UInt8] {
        let bs = kind.blockSize
        let zero = [UInt8](repeating: 0, count: bs)
        let rb: UInt8 = bs == 16 ? 0x87 : 0x1B
        func double(_ b: [UInt8]) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: bs)
            for i in 0..<bs { out[i] = (b[i] << 1) | (i + 1 < bs ? b[i + 1] >> 7 : 0) }
            if b[0] & 0x80 != 0 { out[bs - 1] ^= rb }
            return out
        }
        let l = try ecbEncrypt(zero)
        let k1 = double(l), k2 = double(k1)
        let complete = !message.isEmpty && message.count % bs == 0
        var m = message
        if !complete { m += [0x80] + [UInt8](repeating: 0, count: bs - 1 - message.count % bs) }
        let last = m.count - bs
        for i in 0..<bs { m[last + i] ^= complete ? k1[i] : k2[i] }
        return Array(try cbcEncrypt(iv: zero, m).suffix(bs))
    }

    /// CBC-MAC with a zero IV over the message padded with zeros to whole blocks (PKCS#11
    /// CKM_AES_MAC_GENERAL; CKM_AES_MAC takes its first half).
    public func cbcMAC(_ message: [UInt8]) throws(CryptoError) -> [UInt8] {
        let bs = kind.blockSize
        var m = message
        if m.isEmpty || m.count % bs != 0 { m += [UInt8](repeating: 0, count: bs - m.count % bs) }
        return Array(try cbcEncrypt(iv: [UInt8](repeating: 0, count: bs), m).suffix(bs))
    }
}
