import COpenSSL

/// Block ciphers of the API: AES (16/24/32-byte keys), single DES (8) and 3DES (24, EDE3).
public enum BlockCipherKind: String, Sendable {
    case aes = "AES", des = "DES", tripleDES = "3DES"

    public var blockSize: Int { self == .aes ? 16 : 8 }

    public func validKeySize(_ n: Int) -> Bool {
        switch self {
        case .aes: n == 16 || n == 24 || n == 32
        case .des: n == 8
        case .tripleDES: n == 24
        }
    }

    func evp(mode: String, keyLength: Int) -> OpaquePointer? {
        switch (self, mode, keyLength) {
        case (.aes, "ECB", 16): EVP_aes_128_ecb()
        case (.aes, "ECB", 24): EVP_aes_192_ecb()
        case (.aes, "ECB", 32): EVP_aes_256_ecb()
        case (.aes, "CBC", 16): EVP_aes_128_cbc()
        case (.aes, "CBC", 24): EVP_aes_192_cbc()
        case (.aes, "CBC", 32): EVP_aes_256_cbc()
        case (.aes, "GCM", 16): EVP_aes_128_gcm()
        case (.aes, "GCM", 24): EVP_aes_192_gcm()
        case (.aes, "GCM", 32): EVP_aes_256_gcm()
        case (.des, "ECB", 8): EVP_des_ecb()
        case (.des, "CBC", 8): EVP_des_cbc()
        case (.tripleDES, "ECB", 24): EVP_des_ede3_ecb()
        case (.tripleDES, "CBC", 24): EVP_des_ede3_cbc()
        default: nil
        }
    }
}

/// Unpadded block-cipher primitives; padding and output layouts are the caller's business.
public struct BlockCipher: Sendable {
    public let kind: BlockCipherKind
    private let key: [UInt8]

    public init(kind: BlockCipherKind, key: [UInt8]) throws(CryptoError) {
        guard kind.validKeySize(key.count) else {
            let name = kind == .aes ? "crypto/aes" : "crypto/des"
            throw CryptoError("\(name): invalid key size \(key.count)")
        }
        self.kind = kind
        self.key = key
    }

    private func run(mode: String, encrypt: Bool, iv: [UInt8]?, input: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard input.count % kind.blockSize == 0 else { throw CryptoError("crypto/cipher: input not full blocks") }
        guard let cipher = kind.evp(mode: mode, keyLength: key.count) else { throw CryptoError("unsupported cipher") }
        guard let ctx = EVP_CIPHER_CTX_new() else { throw CryptoError("out of memory") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        let ivBytes = iv ?? []
        let ok = bytesPointer(key) { kp, _ in
            bytesPointer(ivBytes) { ip, _ in
                EVP_CipherInit_ex(ctx, cipher, nil, kp, iv == nil ? nil : ip, encrypt ? 1 : 0)
            }
        }
        guard ok == 1 else { throw CryptoError.openssl("cipher init") }
        EVP_CIPHER_CTX_set_padding(ctx, 0)
        if input.isEmpty { return [] }
        var out = [UInt8](repeating: 0, count: input.count + kind.blockSize)
        var n1: Int32 = 0
        var n2: Int32 = 0
        let upd = bytesPointer(input) { p, n in EVP_CipherUpdate(ctx, &out, &n1, p, Int32(n)) }
        guard upd == 1 else { throw CryptoError.openssl("cipher update") }
        let fin = out.withUnsafeMutableBufferPointer { buf in
            EVP_CipherFinal_ex(ctx, buf.baseAddress.map { $0 + Int(n1) }, &n2)
        }
        guard fin == 1 else { throw CryptoError.openssl("cipher final") }
        return Array(out.prefix(Int(n1 + n2)))
    }

    public func ecbEncrypt(_ input: [UInt8]) throws(CryptoError) -> [UInt8] { try run(mode: "ECB", encrypt: true, iv: nil, input: input) }
    public func ecbDecrypt(_ input: [UInt8]) throws(CryptoError) -> [UInt8] { try run(mode: "ECB", encrypt: false, iv: nil, input: input) }

    public func cbcEncrypt(iv: [UInt8], _ input: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard iv.count == kind.blockSize else { throw CryptoError("IV length must equal block size") }
        return try run(mode: "CBC", encrypt: true, iv: iv, input: input)
    }

    public func cbcDecrypt(iv: [UInt8], _ input: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard iv.count == kind.blockSize else { throw CryptoError("IV length must equal block size") }
        return try run(mode: "CBC", encrypt: false, iv: iv, input: input)
    }

    /// CTR with the whole block as a big-endian counter (Go's `cipher.NewCTR`, OpenSSL's CTR128).
    public func ctr(iv: [UInt8], _ input: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard iv.count == kind.blockSize else { throw CryptoError("IV length must equal block size") }
        if input.isEmpty { return [] }
        let blocks = (input.count + kind.blockSize - 1) / kind.blockSize
        var counters: [UInt8] = []
        counters.reserveCapacity(blocks * kind.blockSize)
        var counter = iv
        for _ in 0..<blocks {
            counters += counter
            var i = counter.count - 1
            while i >= 0 {
                counter[i] &+= 1
                if counter[i] != 0 { break }
                i -= 1
            }
        }
        let stream = try ecbEncrypt(counters)
        var out = input
        for i in 0..<out.count { out[i] ^= stream[i] }
        return out
    }

    /// AES-GCM seal: returns ciphertext and tag separately.
    public func gcmSeal(
        nonce: [UInt8], aad: [UInt8], _ input: [UInt8], tagLength: Int = 16
    ) throws(CryptoError) -> (ciphertext: [UInt8], tag: [UInt8]) {
        try gcm(encrypt: true, nonce: nonce, aad: aad, input: input, tag: [], tagLength: tagLength)
    }

    /// AES-GCM open; throws `cipher: message authentication failed` on a bad tag (Go's text).
    public func gcmOpen(nonce: [UInt8], aad: [UInt8], _ input: [UInt8], tag: [UInt8]) throws(CryptoError) -> [UInt8] {
        try gcm(encrypt: false, nonce: nonce, aad: aad, input: input, tag: tag, tagLength: tag.count).ciphertext
    }

    private func gcm(
        encrypt: Bool, nonce: [UInt8], aad: [UInt8], input: [UInt8], tag: [UInt8], tagLength: Int
    ) throws(CryptoError) -> (ciphertext: [UInt8], tag: [UInt8]) {
        guard kind == .aes else { throw CryptoError("cipher: NewGCM requires 128-bit block cipher") }
        guard !nonce.isEmpty, nonce.count <= 128 else { throw CryptoError("invalid GCM nonce length") }
        guard (4...16).contains(tagLength) else { throw CryptoError("invalid GCM tag length") }
        guard let cipher = kind.evp(mode: "GCM", keyLength: key.count) else { throw CryptoError("unsupported cipher") }
        guard let ctx = EVP_CIPHER_CTX_new() else { throw CryptoError("out of memory") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        guard EVP_CipherInit_ex(ctx, cipher, nil, nil, nil, encrypt ? 1 : 0) == 1,
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, Int32(nonce.count), nil) == 1
        else { throw CryptoError.openssl("gcm init") }
        let ok = bytesPointer(key) { kp, _ in bytesPointer(nonce) { np, _ in EVP_CipherInit_ex(ctx, nil, nil, kp, np, -1) } }
        guard ok == 1 else { throw CryptoError.openssl("gcm key") }
        var n: Int32 = 0
        if !aad.isEmpty {
            let r = bytesPointer(aad) { p, c in EVP_CipherUpdate(ctx, nil, &n, p, Int32(c)) }
            guard r == 1 else { throw CryptoError.openssl("gcm aad") }
        }
        var out = [UInt8](repeating: 0, count: input.count + 16)
        var n1: Int32 = 0
        if !input.isEmpty {
            let r = bytesPointer(input) { p, c in EVP_CipherUpdate(ctx, &out, &n1, p, Int32(c)) }
            guard r == 1 else { throw CryptoError.openssl("gcm update") }
        }
        if !encrypt {
            var t = tag
            guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(t.count), &t) == 1 else {
                throw CryptoError("cipher: message authentication failed")
            }
        }
        var n2: Int32 = 0
        let fin = out.withUnsafeMutableBufferPointer { buf in EVP_CipherFinal_ex(ctx, buf.baseAddress.map { $0 + Int(n1) }, &n2) }
        guard fin == 1 else {
            ERR_clear_error()
            throw CryptoError("cipher: message authentication failed")
        }
        let ct = Array(out.prefix(Int(n1 + n2)))
        if encrypt {
            var t = [UInt8](repeating: 0, count: tagLength)
            guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(tagLength), &t) == 1 else {
                throw CryptoError.openssl("gcm tag")
            }
            return (ct, t)
        }
        return (ct, [])
    }
}

/// PKCS#7 padding at the cipher block size (the original's PKCS5Padding and PKCS7Padding).
public enum PKCS7 {
    public static func pad(_ data: [UInt8], blockSize: Int) -> [UInt8] {
        let n = blockSize - data.count % blockSize
        return data + [UInt8](repeating: UInt8(n), count: n)
    }

    public static func unpad(_ data: [UInt8], blockSize: Int) throws(CryptoError) -> [UInt8] {
        guard let last = data.last, !data.isEmpty, data.count % blockSize == 0 else {
            throw CryptoError("invalid PKCS7 data (empty or not padded)")
        }
        let n = Int(last)
        guard n >= 1, n <= blockSize, n <= data.count else { throw CryptoError("invalid padding on input") }
        for b in data.suffix(n) where b != last { throw CryptoError("invalid padding on input") }
        return Array(data.dropLast(n))
    }
}

/// Loads OpenSSL's legacy provider (single DES lives there in OpenSSL 3) next to the default one.
/// Only the key service calls this; the PKCS#11 module never changes the host's providers.
public enum CryptoProviders {
    public static func enableLegacyCiphers() {
        _ = OSSL_PROVIDER_load(nil, "default")
        _ = OSSL_PROVIDER_load(nil, "legacy")
    }
}
