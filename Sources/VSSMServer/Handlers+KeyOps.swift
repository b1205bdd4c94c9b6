import VSSMCrypto
import VSSMWire

/// Keys made from keys, inside the service (PKCS#11 C_DeriveKey, C_WrapKey, C_UnwrapKey) and the
/// value of keys their creator made readable. The service enforces what protects stored keys:
/// a key is derived from only with CKA_DERIVE, wrapped only when CKA_EXTRACTABLE and only by a key
/// with CKA_WRAP, unwrapped into only by a key with CKA_UNWRAP; a key whose value a derivation
/// exposes (concatenate, XOR, extract) stays sensitive and unextractable when its base was; a
/// key's value is returned only when it is CKA_SENSITIVE=FALSE and CKA_EXTRACTABLE=TRUE (readable), which
/// `limits.readableKeys` allows for session keys only by default. Keys from the original API carry
/// no flags and are therefore sensitive, unextractable and underivable.
extension KeyServiceNode {
    struct KeyMaterial {
        let name: String
        let type: KeyType
        let attributes: KeyAttributes
        let secret: [UInt8]?
        let asym: AsymmetricKeyEntry?
        var flags: KeyFlags { KeyFlags(blob: attributes.pkcs11) }
    }

    /// A failure of crypto work mixed with request checks: bad input from the crypto layer is the
    /// caller's (400), a ServiceError stays as it is, anything else is ours.
    static func serviceError(_ error: any Error) -> ServiceError {
        switch error {
        case let e as CryptoError: .input(e)
        case let e as ServiceError: e
        default: .internalError("\(error)")
        }
    }

    func keyMaterial(_ name: String, _ typeName: String, _ ctx: RequestContext, for use: KeyUse) throws(ServiceError) -> KeyMaterial {
        let type = try KeyPolicy.keyType(typeName)
        switch type {
        case .symmetric:
            let e = try symmetricKey(name, ctx, for: use)
            return KeyMaterial(name: name, type: type, attributes: e.attributes, secret: e.key, asym: nil)
        case .mac:
            let e = try macKey(name, ctx, for: use)
            return KeyMaterial(name: name, type: type, attributes: e.attributes, secret: e.key, asym: nil)
        case .asymmetric:
            let e = try asymmetricKey(name, ctx, for: use)
            return KeyMaterial(name: name, type: type, attributes: e.attributes, secret: nil, asym: e)
        }
    }

    /// A readable key (CKA_SENSITIVE=FALSE with CKA_EXTRACTABLE=TRUE: PKCS#11 §5.7 returns the
    /// value of such a key only) where `limits.readableKeys` allows it.
    func checkReadable(_ blob: [UInt8]?, session: Bool) throws(ServiceError) {
        let f = KeyFlags(blob: blob)
        guard !f.isSensitive && f.isExtractable else { return }
        guard config.limits.readableKeys >= (session ? 1 : 2) else {
            throw .badRequest(
                session
                    ? "This key service makes no key readable (limits.readableKeys is 0): CKA_SENSITIVE=FALSE with CKA_EXTRACTABLE=TRUE is refused."
                    : "Stored keys are never readable here (limits.readableKeys allows readable session keys only): CKA_SENSITIVE=FALSE with CKA_EXTRACTABLE=TRUE is refused."
            )
        }
    }

    /// PKCS#11 §4.9: CKA_SENSITIVE only turns TRUE, CKA_EXTRACTABLE only turns FALSE.
    static func checkFlagChange(from old: [UInt8]?, to new: [UInt8]?) throws(ServiceError) {
        let before = KeyFlags(blob: old), after = KeyFlags(blob: new)
        if before.isSensitive && !after.isSensitive { throw .badRequest("CKA_SENSITIVE cannot be changed from TRUE to FALSE") }
        if !before.isExtractable && after.isExtractable { throw .badRequest("CKA_EXTRACTABLE cannot be changed from FALSE to TRUE") }
        if !before.canCopy && after.canCopy { throw .badRequest("CKA_COPYABLE cannot be changed from FALSE to TRUE") }
    }

    /// The new key of a derive or unwrap request: session keys need no admin password.
    private func newKeyTarget(_ r: WireObject, _ ctx: RequestContext) throws(ServiceError) -> (name: String, type: KeyType, session: Bool) {
        let name = try newStoredName(r.string("newName"), ctx)
        let session = name.startsWithByte("~")
        if !session { try checkPassword(r, ctx) }
        return (name, try KeyPolicy.keyType(r.string("newType")), session)
    }

    /// Stores a derived or unwrapped secret as a SYMMETRIC or MAC key.
    private func storeSecret(
        _ value: [UInt8], name: String, type: KeyType, session: Bool, cipher: String, attributes: KeyAttributes,
        client: String
    ) throws(ServiceError) {
        var a = attributes
        switch type {
        case .symmetric: a.cipher = try KeyPolicy.cipher(forLength: value.count, requested: cipher)
        case .mac: try KeyPolicy.checkMacSize(UInt64(value.count), session: session)
        case .asymmetric: throw .badRequest("newType must be SYMMETRIC or MAC")
        }
        try store(NewKey(type: type, name: name, attributes: a, client: client), secret: value, asym: nil)
    }

    func extDerive(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.deriveRequest)
        let mechanism = r.string("mechanism")
        // ML-KEM makes a key from a shared secret: judged by CKA_ENCAPSULATE/DECAPSULATE, not CKA_DERIVE.
        let use: KeyUse =
            switch mechanism {
            case "ML-KEM-ENCAPSULATE": .encapsulate
            case "ML-KEM-DECAPSULATE": .decapsulate
            default: .derive
            }
        let base = try keyMaterial(r.string("keyName"), r.string("keyType"), ctx, for: use)
        let target = try newKeyTarget(r, ctx)
        var response = WireWriter()
        let data = r.bytes("data") ?? []
        var sources = [base]
        func secret(_ k: KeyMaterial) throws(ServiceError) -> [UInt8] {
            guard let s = k.secret else { throw .badRequest("\(mechanism) needs a secret key; \(k.name) is \(k.type.rawValue)") }
            return s
        }
        var value: [UInt8]
        switch mechanism {
        case "AES-ECB-ENCRYPT-DATA", "AES-CBC-ENCRYPT-DATA":
            guard base.type == .symmetric, (base.attributes.cipher ?? "AES") == "AES" else {
                throw .badRequest("\(mechanism) needs an AES key")
            }
            guard !data.isEmpty, data.count % 16 == 0 else { throw .badRequest("data must be a non-empty multiple of 16 bytes") }
            do {
                let cipher = try BlockCipher(kind: .aes, key: try secret(base))
                if mechanism == "AES-ECB-ENCRYPT-DATA" {
                    value = try cipher.ecbEncrypt(data)
                } else {
                    let iv = r.bytes("iv") ?? []
                    guard iv.count == 16 else { throw ServiceError.badRequest("iv must be 16 bytes") }
                    value = try cipher.cbcEncrypt(iv: iv, data)
                }
            } catch { throw KeyServiceNode.serviceError(error) }
            sources = []  // AES(K, data) does not expose K
        case "CONCATENATE-BASE-AND-KEY":
            let other = try keyMaterial(r.string("otherKeyName"), r.string("otherKeyType"), ctx, for: .concatenate)
            value = try secret(base) + secret(other)
            sources.append(other)
        case "CONCATENATE-BASE-AND-DATA":
            value = try secret(base) + data
        case "CONCATENATE-DATA-AND-BASE":
            value = data + (try secret(base))
        case "XOR-BASE-AND-DATA":
            guard !data.isEmpty else { throw .badRequest("data must not be empty") }
            value = zip(try secret(base), data).map { $0 ^ $1 }
        case "EXTRACT-KEY-FROM-KEY":
            let s = try secret(base)
            let length = r.uint64("length")
            guard length > 0, length <= UInt64(s.count) else { throw .badRequest("length must be 1 to \(s.count) bytes") }
            let bits = s.count * 8
            let start = Int(r.uint64("bitIndex") % UInt64(bits))
            value = [UInt8](repeating: 0, count: Int(length))
            for k in 0..<(Int(length) * 8) {
                let i = (start + k) % bits
                if s[i / 8] & (0x80 >> UInt8(i % 8)) != 0 { value[k / 8] |= 0x80 >> UInt8(k % 8) }
            }
        case "ECDH1":
            guard let e = base.asym, e.key.kind == .ec else { throw .badRequest("ECDH1 needs an EC private key") }
            let z: [UInt8]
            do { z = try e.key.ecdhSharedSecret(peerPoint: r.bytes("publicData") ?? []) } catch { throw .input(error) }
            let kdf = r.string("kdf")
            if kdf.isEmpty || kdf == "NULL" {
                guard r.bytes("sharedData")?.isEmpty ?? true else { throw .badRequest("the NULL KDF takes no sharedData") }
                value = z
            } else {
                let length = r.uint64("length")
                guard length > 0, length <= 1024 else { throw .badRequest("a KDF needs a length of 1 to 1024 bytes") }
                value = KDF.x963(try KeyServiceNode.hash(kdf), secret: z, sharedInfo: r.bytes("sharedData") ?? [], length: Int(length))
            }
            sources = []  // the shared secret does not expose the private key
        case "ML-KEM-ENCAPSULATE", "ML-KEM-DECAPSULATE":
            guard case .mlkem(let k)? = base.asym?.key else { throw .badRequest("\(mechanism) needs an ML-KEM key") }
            do {
                if mechanism == "ML-KEM-ENCAPSULATE" {
                    let (secret, ciphertext) = try k.encapsulate()
                    value = secret
                    response.bytes("ciphertext", ciphertext)
                } else {
                    value = try k.decapsulate(r.bytes("data") ?? [])
                }
            } catch { throw .input(error) }
            sources = []  // the shared secret does not expose the private key
        default:
            throw .invalidAlgorithm(mechanism)
        }
        let length = r.uint64("length")
        if length > 0 {
            guard length <= UInt64(value.count) else { throw .badRequest("\(mechanism) gives \(value.count) bytes; \(length) were asked") }
            value = Array(value.prefix(Int(length)))
        }
        guard !value.isEmpty else { throw .badRequest("the derived key would be empty") }
        // What a derivation exposes keeps its sources' protection (PKCS#11 §2.43).
        var flags = KeyFlags(blob: r.bytes("attributes"))
        for s in sources {
            if s.flags.isSensitive { flags[KeyFlags.sensitive] = true }
            if !s.flags.isExtractable { flags[KeyFlags.extractable] = false }
        }
        audit.info("Deriving \(target.type.rawValue) key \(target.name) from \(base.name) with \(mechanism)...")
        var attributes = KeyAttributes(
            id: r.bytes("id"), label: r.has("label") ? r.string("label") : nil, origin: "derived", pkcs11: flags.blob)
        attributes.cipher = nil
        try storeSecret(
            value, name: target.name, type: target.type, session: target.session, cipher: r.string("cipher"), attributes: attributes,
            client: ctx.clientFingerprint)
        zeroize(&value)
        return ok(response)
    }

    private static func rsaPadding(_ r: WireObject) throws(ServiceError) -> EncryptionPadding? {
        switch r.string("mechanism") {
        case "RSA": return .pkcs1
        case "RSA-OAEP":
            let h = try hash(r.string("hash"), default: .sha1)
            return .oaep(h, mgf1: try hash(r.string("mgf1Hash"), default: h), label: r.bytes("label") ?? [])
        default: return nil
        }
    }

    func extWrap(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.wrapRequest)
        let wrapping = try keyMaterial(r.string("keyName"), r.string("keyType"), ctx, for: .wrap)
        let target = try keyMaterial(r.string("targetName"), r.string("targetType"), ctx, for: .wrapped)
        // A key that wraps and can also decrypt or unwrap hands out what it wraps (wrap, then decrypt
        // the blob or unwrap it as a readable key): only an officer says so, by making it a token key.
        if wrapping.name.startsWithByte("~") && (wrapping.flags.canDecrypt || wrapping.flags.canUnwrap) {
            throw .forbidden(
                """
                Session key \(wrapping.name) may not wrap: it can also decrypt or unwrap (set CKA_DECRYPT and CKA_UNWRAP \
                to FALSE on a wrapping session key; an officer can make a token key that does both).
                """)
        }
        if target.flags.wrapsWithTrustedOnly && !wrapping.flags.isTrusted {
            throw .forbidden("Key \(target.name) may be wrapped only by a trusted key (CKA_WRAP_WITH_TRUSTED).")
        }
        let plain = target.secret ?? target.asym?.pkcs8 ?? []
        var w = WireWriter()
        audit.info("Wrapping key \(target.name) with \(wrapping.name) (\(r.string("mechanism")))...")
        do {
            switch r.string("mechanism") {
            case "AES-KEY-WRAP", "AES-KEY-WRAP-PAD":
                guard wrapping.type == .symmetric, let k = wrapping.secret else {
                    throw ServiceError.badRequest("AES key wrap needs an AES key")
                }
                w.bytes("output", try AESKeyWrap.wrap(key: k, plain, padded: r.string("mechanism").hasSuffix("PAD")))
            default:
                guard let padding = try KeyServiceNode.rsaPadding(r) else { throw ServiceError.invalidAlgorithm(r.string("mechanism")) }
                guard let e = wrapping.asym else { throw ServiceError.badRequest("RSA wrapping needs an RSA key") }
                try requireRSA(e)
                w.bytes("output", try e.key.encrypt(plain, padding: padding))
            }
        } catch { throw KeyServiceNode.serviceError(error) }
        return ok(w)
    }

    func extUnwrap(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.unwrapRequest)
        let unwrapping = try keyMaterial(r.string("keyName"), r.string("keyType"), ctx, for: .unwrap)
        let target = try newKeyTarget(r, ctx)
        let input = r.bytes("input") ?? []
        let plain: [UInt8]
        do {
            switch r.string("mechanism") {
            case "AES-KEY-WRAP", "AES-KEY-WRAP-PAD":
                guard unwrapping.type == .symmetric, let k = unwrapping.secret else {
                    throw ServiceError.badRequest("AES key unwrap needs an AES key")
                }
                plain = try AESKeyWrap.unwrap(key: k, input, padded: r.string("mechanism").hasSuffix("PAD"))
            default:
                guard let padding = try KeyServiceNode.rsaPadding(r) else { throw ServiceError.invalidAlgorithm(r.string("mechanism")) }
                guard let e = unwrapping.asym else { throw ServiceError.badRequest("RSA unwrapping needs an RSA key") }
                try requireRSA(e)
                plain = try e.key.decrypt(input, padding: padding)
            }
        } catch { throw KeyServiceNode.serviceError(error) }
        audit.info("Unwrapping a \(target.type.rawValue) key \(target.name) with \(unwrapping.name)...")
        // What was sensitive stays sensitive: the value of a sensitive key that is here, wrapped and
        // unwrapped again, becomes a sensitive key whatever the template asked.
        var flags = r.bytes("attributes")
        if isSensitiveMaterial(plain, asymmetric: target.type == .asymmetric) {
            var f = KeyFlags(blob: flags)
            if !f.isSensitive {
                audit.info("The unwrapped key \(target.name) is the value of a sensitive key here: it is made sensitive.")
            }
            f.values[KeyFlags.sensitive] = true
            flags = f.blob
        }
        let attributes = KeyAttributes(
            id: r.bytes("id"), label: r.has("newLabel") ? r.string("newLabel") : nil, origin: "unwrapped", pkcs11: flags)
        if target.type == .asymmetric {
            let key: AsymmetricKey
            do { key = try AsymmetricKey(pkcs8: plain) } catch { throw .badRequest("the unwrapped bytes are not a PKCS#8 private key") }
            try KeyPolicy.checkAsymmetric(key, session: target.session, minStored: config.limits.minStoredRSABits)
            try store(
                NewKey(type: .asymmetric, name: target.name, attributes: attributes, client: ctx.clientFingerprint), secret: nil, asym: key,
                pkcs8: plain)
        } else {
            try storeSecret(
                plain, name: target.name, type: target.type, session: target.session, cipher: r.string("cipher"), attributes: attributes,
                client: ctx.clientFingerprint)
        }
        return ok(WireWriter())
    }

    /// Whether `material` (a secret key's bytes, or a PKCS#8 private key) is the value of a
    /// sensitive key held here: stored (any namespace) or a session key (any owner).
    func isSensitiveMaterial(_ material: [UInt8], asymmetric: Bool) -> Bool {
        let states = [state.withLock { $0 }] + ephemeral.allKeys
        if asymmetric {
            guard let spki = (try? AsymmetricKey(pkcs8: material))?.spkiDER else { return false }
            return states.contains { s in
                s.asymmetric.values.contains { $0.spki == spki && KeyFlags(blob: $0.attributes.pkcs11).isSensitive }
            }
        }
        return states.contains { s in
            (Array(s.symmetric.values) + Array(s.mac.values)).contains {
                $0.key == material && KeyFlags(blob: $0.attributes.pkcs11).isSensitive
            }
        }
    }

    func extKeyValue(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.keyValueRequest)
        let k = try keyMaterial(r.string("keyName"), r.string("keyType"), ctx, for: .readValue)
        guard let secret = k.secret else { throw .badRequest("Key \(k.name) is not a secret key: its value never leaves the service.") }
        try checkReadable(k.attributes.pkcs11, session: k.name.startsWithByte("~"))
        var w = WireWriter()
        w.bytes("output", secret)
        return ok(w)
    }
}
