import VSSMWire
import VSSMCrypto

/// Keys made from keys (PKCS#11 2.40 §5.14 C_DeriveKey, C_WrapKey, C_UnwrapKey) and C_DigestKey.
/// Everything runs in the key service; the module checks what it can answer precisely (usage
/// flags, parameter sizes) and the service enforces the same rules for every client.
extension Library {
    /// The secret key a derive or unwrap template asks for: AES or generic secret.
    static func secretKind(
        _ template: Template, default d: KeyKind = .genericSecret
    ) throws(TokenError) -> (type: KeyType, cipher: String?, prefix: String) {
        switch try template.ulong(.keyType).map({ KeyKind(rawValue: $0) }) ?? d {
        case .aes: return (.symmetric, "AES", "sym")
        case .genericSecret: return (.mac, nil, "mac")
        default: throw .templateInconsistent("derived and unwrapped secret keys are CKK_AES or CKK_GENERIC_SECRET")
        }
    }

    static func length(_ template: Template) throws(TokenError) -> Int {
        guard let n = try template.ulong(.valueLen) else { return 0 }
        guard let len = Int(exactly: n), len <= 1024 else { throw .attributeValueInvalid(.valueLen) }
        return len
    }

    /// C_DeriveKey.
    public func deriveKey(_ h: UInt, mechanism: Mechanism, base: ObjectHandle, template: Template) throws(TokenError) -> ObjectHandle {
        let (_, t) = try session(h)
        guard let o = try? t.object(base), let baseKey = o.key, o.objectClass != .publicKey else { throw .keyHandleInvalid }
        guard o.attributes[.derive] == AttributeValue.bool(true) else { throw .keyFunctionNotPermitted }
        if let cls = try template.ulong(.class), cls != ObjectClass.secretKey.rawValue {
            throw .templateInconsistent("C_DeriveKey makes secret keys")
        }
        let kind = try Library.secretKind(template)
        let length = try Library.length(template)
        let secretLength = baseKey.kind == .symmetric || baseKey.kind == .mac ? baseKey.length : 0
        // The length a mechanism gives, where the module knows it (else the service checks).
        var natural: Int?
        let derive: DeriveMechanism
        func needSecret() throws(TokenError) {
            guard baseKey.kind == .symmetric || baseKey.kind == .mac else { throw .keyTypeInconsistent }
        }
        switch (mechanism.type, mechanism.parameters) {
        case (.aesECBEncryptData, .data(let d)), (.aesECBEncryptData, .raw(let d)):
            guard baseKey.kind == .symmetric else { throw .keyTypeInconsistent }
            guard !d.isEmpty, d.count % 16 == 0 else { throw .mechanismParamInvalid("data must be a non-empty multiple of 16 bytes") }
            (derive, natural) = (.aesECBEncryptData(d), d.count)
        case (.aesCBCEncryptData, .ivData(let iv, let d)):
            guard baseKey.kind == .symmetric else { throw .keyTypeInconsistent }
            guard !d.isEmpty, d.count % 16 == 0, iv.count == 16 else {
                throw .mechanismParamInvalid("a 16-byte IV and a non-empty multiple of 16 bytes of data")
            }
            (derive, natural) = (.aesCBCEncryptData(iv: iv, data: d), d.count)
        case (.concatenateBaseAndKey, .key(let other)):
            try needSecret()
            guard let oo = try? t.object(ObjectHandle(rawValue: other)), let otherKey = oo.key,
                otherKey.kind == .symmetric || otherKey.kind == .mac
            else {
                throw .mechanismParamInvalid("the second key must be a secret key of this token")
            }
            (derive, natural) = (.concatenateBaseAndKey(otherKey), secretLength + otherKey.length)
        case (.concatenateBaseAndData, .data(let d)):
            try needSecret()
            (derive, natural) = (.concatenateBaseAndData(d), secretLength + d.count)
        case (.concatenateDataAndBase, .data(let d)):
            try needSecret()
            (derive, natural) = (.concatenateDataAndBase(d), secretLength + d.count)
        case (.xorBaseAndData, .data(let d)):
            try needSecret()
            guard !d.isEmpty else { throw .mechanismParamInvalid("no data") }
            (derive, natural) = (.xorBaseAndData(d), min(secretLength, d.count))
        case (.extractKeyFromKey, .bitIndex(let bit)):
            try needSecret()
            guard length > 0 else { throw .templateIncomplete("CKA_VALUE_LEN") }
            (derive, natural) = (.extractKeyFromKey(bitIndex: bit), secretLength)
        case (.ecdh1Derive, .ecdh(let kdfType, let shared, let pub)):
            guard baseKey.kind == .ec, o.objectClass == .privateKey else { throw .keyTypeInconsistent }
            let kdf: HashAlgorithm?
            let sha3 = try t.features()?.contains(.sha3) ?? false
            if kdfType == 1 {
                kdf = nil  // CKD_NULL
            } else if let h = HashAlgorithm(kdf: kdfType), !h.isSHA3 || sha3 {
                kdf = h
            } else {
                throw .mechanismParamInvalid("KDF \(kdfType) (CKD_NULL or a CKD_SHA*_KDF the key service has)")
            }
            if kdf == nil && !shared.isEmpty { throw .mechanismParamInvalid("CKD_NULL takes no shared data") }
            if kdf != nil && length == 0 { throw .templateIncomplete("CKA_VALUE_LEN (a KDF output length)") }
            // CKA_EC_POINT style: the raw point, or a DER OCTET STRING around it.
            let bits = (try? PublicKey(spki: baseKey.publicKey))?.bits ?? 0
            let size = (bits + 7) / 8
            // Taken as DER only when that parses exactly to a point of this curve's size.
            let pointSizes = [2 * size + 1, size + 1]
            let point = DER.unwrapOctetString(pub).flatMap { pointSizes.contains($0.count) ? $0 : nil } ?? pub
            guard pointSizes.contains(point.count) else {
                throw .mechanismParamInvalid("the public data is not a point of this key's curve")
            }
            (derive, natural) = (.ecdh(kdf: kdf, sharedData: shared, publicData: point), kdf == nil ? size : nil)
        case (.aesECBEncryptData, _), (.aesCBCEncryptData, _), (.concatenateBaseAndKey, _), (.concatenateBaseAndData, _),
            (.concatenateDataAndBase, _), (.xorBaseAndData, _), (.extractKeyFromKey, _), (.ecdh1Derive, _):
            throw .mechanismParamInvalid("missing or malformed parameter")
        default:
            throw .mechanismInvalid(mechanism.type)
        }
        if let natural, length > natural {
            throw .mechanismParamInvalid("the mechanism gives \(natural) bytes; CKA_VALUE_LEN asks \(length)")
        }
        if kind.type == .symmetric, ![16, 24, 32].contains(length > 0 ? length : natural ?? 16) {
            throw .templateInconsistent("an AES key is 16, 24 or 32 bytes (CKA_VALUE_LEN)")
        }
        return try keyFromKey(h, base: baseKey, derive, template: template, kind: kind, length: length).key
    }

    /// The secret key a derivation or an ML-KEM operation makes in the service, placed as the
    /// template says (session or token key, CKA_ID, label, usage flags); what the service gave
    /// back with it (ML-KEM encapsulation's ciphertext).
    func keyFromKey(
        _ h: UInt, base: ServiceKey, _ mechanism: DeriveMechanism, template: Template,
        kind: (type: KeyType, cipher: String?, prefix: String), length: Int
    ) throws(TokenError) -> (key: ObjectHandle, output: [UInt8]) {
        let p = try placement(h, template, prefix: kind.prefix)
        let flags = try StoredAttributes.secretKey(template, aes: kind.cipher == "AES")
        var output: [UInt8] = []
        let name = try manage(h, p.token) { () throws(TokenError) in
            try named(p, prefix: kind.prefix) { (name: String, label: String?) throws(TokenError) in
                output = try p.service.deriveKey(
                    adminPassword: p.admin, base: base, mechanism: mechanism,
                    new: NewKeySpec(
                        name: name, type: kind.type, cipher: kind.cipher, length: length, id: Library.id(template),
                        label: label, attributes: flags))
            }
        }
        placed(p, h, name: name, type: kind.type)
        return (try handle(p.token, identity: "\(kind.prefix)/\(name)"), output)
    }

    private static func wrapMechanism(_ m: Mechanism) throws(TokenError) -> WrapMechanism {
        switch (m.type, m.parameters) {
        case (.aesKeyWrap, .none): return .aesKeyWrap
        case (.aesKeyWrapPad, .none): return .aesKeyWrapPad
        case (.aesKeyWrap, _), (.aesKeyWrapPad, _):
            throw .mechanismParamInvalid("AES key wrap takes no IV here (the default IV of RFC 3394/5649)")
        case (.rsaPKCS, _): return .rsaPKCS
        case (.rsaPKCSOAEP, .oaep(let hash, let mgf1, let label)): return .rsaOAEP(hash: hash, mgf1: mgf1, label: label)
        default: throw .mechanismInvalid(m.type)
        }
    }

    /// C_WrapKey: the wrapped bytes (each call asks the service; wrapping is deterministic for
    /// AES key wrap, and a size query with RSA gets the modulus size).
    public func wrapKey(
        _ h: UInt, mechanism: Mechanism, wrapping: ObjectHandle, key: ObjectHandle, capacity: Int?
    ) throws(TokenError) -> SizedOutput {
        let (_, t) = try session(h)
        let wm = try Library.wrapMechanism(mechanism)
        guard let w = try? t.object(wrapping), let wrappingKey = w.key, w.objectClass != .privateKey else {
            throw .wrappingKeyHandleInvalid
        }
        guard let o = try? t.object(key), let target = o.key, o.objectClass != .publicKey else { throw .keyHandleInvalid }
        guard w.attributes[.wrap] == AttributeValue.bool(true) else { throw .keyFunctionNotPermitted }
        guard o.attributes[.extractable] == AttributeValue.bool(true) else { throw .keyUnextractable }
        switch wm {
        case .aesKeyWrap, .aesKeyWrapPad: guard wrappingKey.kind == .symmetric else { throw .keyTypeInconsistent }
        case .rsaPKCS, .rsaOAEP: guard wrappingKey.kind == .rsa else { throw .keyTypeInconsistent }
        }
        if wm == .aesKeyWrap, target.kind == .symmetric || target.kind == .mac, target.length % 8 != 0 || target.length < 16 {
            throw .keyNotWrappable
        }
        let out = try recordDevice(h) { () throws(TokenError) in
            do throws(TokenError) { return try t.service().wrapKey(key: wrappingKey, mechanism: wm, target: target) } catch .device(_, 400)
            {
                throw .keyNotWrappable
            }
        }
        guard let capacity else { return .length(out.count) }
        guard capacity >= out.count else { throw .bufferTooSmall(required: out.count) }
        return .bytes(out)
    }

    /// C_UnwrapKey: a secret key (CKK_AES, CKK_GENERIC_SECRET) or a private key (PKCS#8).
    public func unwrapKey(
        _ h: UInt, mechanism: Mechanism, unwrapping: ObjectHandle, wrapped: [UInt8], template: Template
    ) throws(TokenError) -> ObjectHandle {
        let (_, t) = try session(h)
        let wm = try Library.wrapMechanism(mechanism)
        guard let u = try? t.object(unwrapping), let unwrappingKey = u.key, u.objectClass != .publicKey else {
            throw .unwrappingKeyHandleInvalid
        }
        guard u.attributes[.unwrap] == AttributeValue.bool(true) else { throw .keyFunctionNotPermitted }
        let cls = try template.ulong(.class).map { ObjectClass(rawValue: $0) } ?? .secretKey
        let kind: (type: KeyType, cipher: String?, prefix: String)
        switch cls {
        case .secretKey: kind = try Library.secretKind(template)
        case .privateKey: kind = (.asymmetric, nil, "priv")
        default: throw .templateInconsistent("C_UnwrapKey makes secret or private keys")
        }
        let length = cls == .secretKey ? try Library.length(template) : 0
        let p = try placement(h, template, prefix: kind.prefix)
        let flags = try StoredAttributes.secretKey(template, aes: kind.cipher == "AES")
        let name = try manage(h, p.token) { () throws(TokenError) in
            try named(p, prefix: kind.prefix) { (name: String, label: String?) throws(TokenError) in
                do throws(TokenError) {
                    try p.service.unwrapKey(
                        adminPassword: p.admin, key: unwrappingKey, mechanism: wm, wrapped: wrapped,
                        new: NewKeySpec(
                            name: name, type: kind.type, cipher: kind.cipher, length: length, id: Library.id(template),
                            label: label, attributes: flags))
                } catch .device(_, 400) {
                    throw .wrappedKeyInvalid
                }
            }
        }
        placed(p, h, name: name, type: kind.type)
        return try handle(p.token, identity: "\(kind.prefix)/\(name)")
    }

    /// C_DigestKey: a key its creator made readable is digested like data; every other key is
    /// CKR_KEY_INDIGESTIBLE (its value never leaves the service).
    public func digestKey(_ h: UInt, key: ObjectHandle) throws(TokenError) {
        let (_, t) = try session(h)
        _ = try currentDigest(h)
        guard let o = try? t.object(key), let k = o.key, o.objectClass == .secretKey else { throw .keyHandleInvalid }
        guard o.attributes[.sensitive] == AttributeValue.bool(false), o.attributes[.extractable] == AttributeValue.bool(true) else {
            throw .keyIndigestible
        }
        let value = try recordDevice(h) { () throws(TokenError) in try t.service().keyValue(k) }
        try digestUpdate(h, part: value)
        try currentDigest(h).saved = nil  // a key's value is never part of a saved state
    }

    /// CKA_VALUE of a readable secret key, from the service.
    func readableValue(_ h: UInt, _ t: Token, _ o: TokenObject) throws(TokenError) -> [UInt8]? {
        guard o.objectClass == .secretKey, let k = o.key, !o.sensitive.contains(.value) else { return nil }
        return try recordDevice(h) { () throws(TokenError) in try t.service().keyValue(k) }
    }
}
