import VSSMCrypto
import VSSMWire

/// `<CIPHER>/<MODE>/<PADDING>` of the symmetric endpoints.
struct SymmetricAlgorithm {
    enum Mode: String { case ecb = "ECB", cbc = "CBC", ctr = "CTR", gcm = "GCM" }
    let cipher: BlockCipherKind
    let mode: Mode
    let padded: Bool

    init(_ text: String) throws(ServiceError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw .badRequest("Invalid algorithm specification: \(text)") }
        guard let c = BlockCipherKind(rawValue: String(parts[0])) else { throw .badRequest("Invalid cipher: \(parts[0])") }
        guard let m = Mode(rawValue: String(parts[1])) else { throw .badRequest("Unsupported block mode: \(parts[1])") }
        switch parts[2] {
        case "NoPadding": padded = false
        case "PKCS5Padding", "PKCS7Padding": padded = true
        default: throw .badRequest("Unsupported padding mode: \(parts[2])")
        }
        if m == .gcm && c != .aes { throw .badRequest("cipher: NewGCM requires 128-bit block cipher") }
        cipher = c
        mode = m
    }
}

extension KeyServiceNode {
    static let maxCryptoInput = 8 << 20

    func blockCipher(_ entry: SecretKeyEntry, _ alg: SymmetricAlgorithm) throws(ServiceError) -> BlockCipher {
        do { return try BlockCipher(kind: alg.cipher, key: entry.key) } catch { throw .badRequest(error.message) }
    }

    /// Encrypts with the original's layouts: padding first (any mode), then
    /// ECB: ct | CBC, CTR: IV || ct | GCM: nonce(12) || ct || tag(16). A caller IV (extension)
    /// replaces the random one and is then not prefixed.
    func symmetricEncrypt(
        _ alg: SymmetricAlgorithm, cipher: BlockCipher, input: [UInt8], iv callerIV: [UInt8]? = nil,
        aad: [UInt8] = [], tagLength: Int = 16
    ) throws(ServiceError) -> [UInt8] {
        let data = alg.padded ? PKCS7.pad(input, blockSize: alg.cipher.blockSize) : input
        let bs = alg.cipher.blockSize
        do {
            switch alg.mode {
            case .ecb:
                guard data.count % bs == 0 else {
                    throw ServiceError.badRequest("input is not a multiple of the block size (\(bs) bytes); use a padding mode")
                }
                return try cipher.ecbEncrypt(data)
            case .cbc:
                guard data.count % bs == 0 else {
                    throw ServiceError.badRequest("input is not a multiple of the block size (\(bs) bytes); use a padding mode")
                }
                let iv = callerIV ?? SecureRandom.bytes(bs)
                let ct = try cipher.cbcEncrypt(iv: iv, data)
                return callerIV == nil ? iv + ct : ct
            case .ctr:
                let iv = callerIV ?? SecureRandom.bytes(bs)
                let ct = try cipher.ctr(iv: iv, data)
                return callerIV == nil ? iv + ct : ct
            case .gcm:
                let nonce = callerIV ?? SecureRandom.bytes(12)
                let (ct, tag) = try cipher.gcmSeal(nonce: nonce, aad: aad, data, tagLength: tagLength)
                return (callerIV == nil ? nonce : []) + ct + tag
            }
        } catch let e as CryptoError {
            throw .input(e)
        } catch let e as ServiceError {
            throw e
        } catch {
            throw .internalError("\(error)")
        }
    }

    /// Inverse of `symmetricEncrypt`; short or partial inputs are 400s (the original panicked).
    /// Returns nil for an empty GCM plaintext, which the original emitted as `{}`.
    func symmetricDecrypt(
        _ alg: SymmetricAlgorithm, cipher: BlockCipher, input: [UInt8], iv callerIV: [UInt8]? = nil,
        aad: [UInt8] = [], tagLength: Int = 16
    ) throws(ServiceError) -> [UInt8]? {
        let bs = alg.cipher.blockSize
        func need(_ n: Int, _ what: String) throws(ServiceError) {
            guard input.count >= n else { throw .badRequest("input too short: \(what) needs at least \(n) bytes, got \(input.count)") }
        }
        var plain: [UInt8]
        do {
            switch alg.mode {
            case .ecb:
                guard input.count % bs == 0 else {
                    throw ServiceError.badRequest("input is not a multiple of the block size (\(bs) bytes)")
                }
                plain = try cipher.ecbDecrypt(input)
            case .cbc:
                let iv: [UInt8]
                let body: [UInt8]
                if let callerIV {
                    iv = callerIV; body = input
                } else {
                    try need(bs, "CBC (IV)")
                    iv = Array(input.prefix(bs)); body = Array(input.dropFirst(bs))
                }
                guard body.count % bs == 0 else {
                    throw ServiceError.badRequest("ciphertext is not a multiple of the block size (\(bs) bytes)")
                }
                plain = try cipher.cbcDecrypt(iv: iv, body)
            case .ctr:
                if let callerIV {
                    plain = try cipher.ctr(iv: callerIV, input)
                } else {
                    try need(bs, "CTR (IV)")
                    plain = try cipher.ctr(iv: Array(input.prefix(bs)), Array(input.dropFirst(bs)))
                }
            case .gcm:
                let nonce: [UInt8]
                let body: [UInt8]
                if let callerIV {
                    nonce = callerIV; body = input
                } else {
                    try need(12 + tagLength, "GCM (nonce and tag)")
                    nonce = Array(input.prefix(12)); body = Array(input.dropFirst(12))
                }
                guard body.count >= tagLength else { throw ServiceError.badRequest("input too short: GCM needs the \(tagLength)-byte tag") }
                plain = try cipher.gcmOpen(nonce: nonce, aad: aad, Array(body.dropLast(tagLength)), tag: Array(body.suffix(tagLength)))
            }
            if alg.padded { plain = try PKCS7.unpad(plain, blockSize: bs) }
        } catch let e as CryptoError {
            throw .input(e)
        } catch let e as ServiceError {
            throw e
        } catch {
            throw .internalError("\(error)")
        }
        return alg.mode == .gcm && plain.isEmpty ? nil : plain
    }

    func symmetricEncrypt(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, Schemas.symmetricEncryptRequest)
        let key = try symmetricKey(r.string("keyName"), ctx, for: .encrypt)
        let alg = try SymmetricAlgorithm(r.string("algorithm"))
        let out = try symmetricEncrypt(alg, cipher: try blockCipher(key, alg), input: r.bytes("input") ?? [])
        var w = WireWriter()
        w.bytes("output", out)
        return ok(w)
    }

    func symmetricDecrypt(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, Schemas.symmetricDecryptRequest)
        let key = try symmetricKey(r.string("keyName"), ctx, for: .decrypt)
        let alg = try SymmetricAlgorithm(r.string("algorithm"))
        let out = try symmetricDecrypt(alg, cipher: try blockCipher(key, alg), input: r.bytes("input") ?? [])
        var w = WireWriter()
        w.bytes("output", out)
        return ok(w)
    }

    /// `RSA` (PKCS#1 v1.5) or `RSA-OAEP/<hash>` (MGF1 with the same hash, empty label).
    static func baseEncryptionPadding(_ text: String) throws(ServiceError) -> EncryptionPadding {
        if text == "RSA" { return .pkcs1 }
        if text.hasPrefix("RSA-OAEP/") {
            let h = String(text.dropFirst(9))
            guard let d = DigestAlgorithm(rawValue: h), d.inOriginalAPI else {
                if h.contains("/") { throw .invalidAlgorithm(text) }
                throw .badRequest("Invalid hash algorithm: \(h)")
            }
            return .oaep(d, mgf1: d, label: [])
        }
        throw .invalidAlgorithm(text)
    }

    func requireRSA(_ key: AsymmetricKeyEntry) throws(ServiceError) {
        guard key.key.kind == .rsa else { throw .badRequest("Key \(key.name) is an \(key.keyType) key; this operation needs an RSA key") }
    }

    func asymmetricEncrypt(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, Schemas.asymmetricEncryptRequest)
        let key = try asymmetricKey(r.string("keyName"), ctx, for: .encrypt)
        let padding = try KeyServiceNode.baseEncryptionPadding(r.string("algorithm"))
        try requireRSA(key)
        var w = WireWriter()
        do { w.bytes("output", try key.key.encrypt(r.bytes("input") ?? [], padding: padding)) } catch { throw .input(error) }
        return ok(w)
    }

    func asymmetricDecrypt(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, Schemas.asymmetricDecryptRequest)
        let key = try asymmetricKey(r.string("keyName"), ctx, for: .decrypt)
        let padding = try KeyServiceNode.baseEncryptionPadding(r.string("algorithm"))
        try requireRSA(key)
        var w = WireWriter()
        do { w.bytes("output", try key.key.decrypt(r.bytes("input") ?? [], padding: padding)) } catch { throw .input(error) }
        return ok(w)
    }

    /// Signature algorithms of the original API.
    static let baseSignAlgorithms: [String: (AsymmetricKind, DigestAlgorithm)] = [
        "SHA1withRSA": (.rsa, .sha1), "SHA256withRSA": (.rsa, .sha256), "SHA384withRSA": (.rsa, .sha384),
        "SHA512withRSA": (.rsa, .sha512), "SHA1withECDSA": (.ec, .sha1), "SHA256withECDSA": (.ec, .sha256),
    ]

    /// The digest to sign: `input` hashed when non-empty, else `hashed` as given (original rule).
    static func digest(_ r: WireObject, _ hash: DigestAlgorithm) -> [UInt8] {
        if let input = r.bytes("input"), !input.isEmpty { return hash.hash(input) }
        return r.bytes("hashed") ?? []
    }

    func signatureScheme(
        kind: AsymmetricKind, hash: DigestAlgorithm, key: AsymmetricKeyEntry, algorithm: String
    ) throws(ServiceError) -> SignatureScheme {
        guard key.key.kind == kind else {
            throw .badRequest("Algorithm \(algorithm) does not fit key \(key.name), an \(key.keyType) key")
        }
        return kind == .rsa ? .pkcs1(hash) : .ecdsa
    }

    func asymmetricSign(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, Schemas.asymmetricSignRequest)
        let key = try asymmetricKey(r.string("keyName"), ctx, for: .sign)
        let name = r.string("algorithm")
        guard let (kind, hash) = KeyServiceNode.baseSignAlgorithms[name] else { throw .invalidAlgorithm(name) }
        let scheme = try signatureScheme(kind: kind, hash: hash, key: key, algorithm: name)
        var w = WireWriter()
        do { w.bytes("output", try key.key.sign(digest: KeyServiceNode.digest(r, hash), scheme: scheme)) } catch { throw .input(error) }
        return ok(w)
    }

    func asymmetricVerify(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, Schemas.asymmetricVerifyRequest)
        let key = try asymmetricKey(r.string("keyName"), ctx, for: .verify)
        let name = r.string("algorithm")
        guard let (kind, hash) = KeyServiceNode.baseSignAlgorithms[name] else { throw .invalidAlgorithm(name) }
        let scheme = try signatureScheme(kind: kind, hash: hash, key: key, algorithm: name)
        let digest = KeyServiceNode.digest(r, hash)
        if kind == .rsa && digest.count != hash.size { throw .badRequest("crypto/rsa: input must be hashed message") }
        var w = WireWriter()
        w.bool("valid", key.key.verify(signature: r.bytes("signature") ?? [], digest: digest, scheme: scheme))
        return ok(w)
    }

    static func hmacDigest(_ name: String) throws(ServiceError) -> DigestAlgorithm {
        guard let d = DigestAlgorithm(rawValue: name), d.inOriginalAPI else { throw .invalidAlgorithm(name) }
        return d
    }

    func hmacCreate(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, Schemas.hmacCreateRequest)
        // The MAC serves C_Sign and C_Verify alike (the module compares it itself).
        let key = try macKey(r.string("keyName"), ctx, for: .mac)
        let d = try KeyServiceNode.hmacDigest(r.string("algorithm"))
        var w = WireWriter()
        w.bytes("output", d.hmac(key: key.key, data: r.bytes("input") ?? []))
        return ok(w)
    }

    func hmacVerify(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, Schemas.hmacVerifyRequest)
        let key = try macKey(r.string("keyName"), ctx, for: .verify)
        let d = try KeyServiceNode.hmacDigest(r.string("algorithm"))
        let mac = d.hmac(key: key.key, data: r.bytes("input") ?? [])
        var w = WireWriter()
        w.bool("valid", constantTimeEqual(mac, r.bytes("hmac") ?? []))
        return ok(w)
    }
}
