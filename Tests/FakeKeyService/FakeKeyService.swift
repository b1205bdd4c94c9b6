import Synchronization
public import TokenCore
import VSSMCrypto
import VSSMPostQuantumKeys
public import VSSMWire

/// An in-memory KeyService for TokenCore unit tests: keys in a dictionary, crypto by VSSMCrypto.
/// `ContractTests` run the same checks against it and against a real node, so it stays honest.
/// It implements every call, with the service's usage rules (CKA_DERIVE, CKA_WRAP, CKA_UNWRAP,
/// CKA_EXTRACTABLE, sensitivity carried to what is derived or unwrapped) from the same `KeyFlags`
/// the service reads (a usage flag's refusal is the 403 "Key function not permitted" as the adapter
/// maps it: `.keyFunctionNotPermitted`); it lists the features it implements. A target of its own, so TokenCore's
/// unit tests link neither the server nor the network.
public final class FakeKeyService: KeyService, @unchecked Sendable {
    struct Entry {
        var kind: ServiceKey.Kind
        var secret: [UInt8] = []
        var key: PrivateKey?
        var mldsa: MLDSAKey?
        var mlkem: MLKEMKey?
        var cipher = ""
        var id: [UInt8]?
        var label: String?
        var attributes: [UInt8]?
        var origin: String
    }
    public let password: String
    private let state = Mutex<(keys: [String: Entry], objects: [String: ServiceObject])>(([:], [:]))

    public init(password: String) { self.password = password }

    /// Requests served so far, by call (tests count what an operation sends).
    public var calls: [String: Int] { counter.withLock { $0 } }
    private let counter = Mutex<[String: Int]>([:])
    private func count(_ call: String) { counter.withLock { $0[call, default: 0] += 1 } }
    /// The signature schemes asked for, in order (what the core tells the service).
    public var signSchemes: [SignScheme] { schemes.withLock { $0 } }
    private let schemes = Mutex<[SignScheme]>([])

    public func hasExtensions() throws(TokenError) -> Bool { true }
    public func features() throws(TokenError) -> Set<Feature>? {
        [
            .listKeys, .sign, .signPSS, .signRaw, .decryptOAEP, .symmetricIV, .generateKey, .injectKey, .sessionKeys, .copyKey, .objects,
            .mac,
            .hmacAnyHash, .sha3, .derive, .wrap, .keyValue, .rsaRaw, .eddsa, .dsa, .attributes, .deleteKey, .publicKeyObjects,
            .mlDSA, .mlKEM,
        ]
    }

    private func check(_ admin: String, for name: String) throws(TokenError) {
        if !name.hasPrefix("~") && admin != password { throw .adminPasswordRejected }
    }

    private func entry(_ name: String) throws(TokenError) -> Entry {
        guard let e = state.withLock({ $0.keys[name] }) else { throw .device("Invalid key name: \(name)", status: 404) }
        return e
    }

    public func list(adminPassword: String?, owner: String?) throws(TokenError) -> ServiceListing {
        state.withLock { s in
            let mine = owner.map { "~\($0)/" }
            let keys = s.keys.filter { k in !k.key.hasPrefix("~") || (mine.map { k.key.hasPrefix($0) } ?? false) }
                .sorted { $0.key < $1.key }
                .map { name, e in
                    ServiceKey(
                        name: name, kind: e.kind, publicKey: e.key?.spkiDER ?? e.mldsa?.spkiDER ?? e.mlkem?.spkiDER ?? [],
                        length: e.secret.count,
                        cipher: e.cipher, id: e.id,
                        ephemeral: name.hasPrefix("~"), label: e.label, generated: e.origin == "generated", attributes: e.attributes)
                }
            return ServiceListing(keys: keys, objects: s.objects.values.sorted { $0.uid < $1.uid })
        }
    }

    public func sign(key: String, _ scheme: SignScheme, _ data: [UInt8]) throws(TokenError) -> [UInt8] {
        count("sign")
        schemes.withLock { $0.append(scheme) }
        let e = try entry(key)
        if case .mldsa(let context) = scheme {
            guard let pq = e.mldsa else { throw .device("Algorithm ML-DSA does not fit key \(key)", status: 400) }
            do { return try pq.sign(data, context: context) } catch { throw .device(error.message, status: 400) }
        }
        guard let k = e.key else { throw .device("Key \(key) is not asymmetric", status: 400) }
        let s: SignatureScheme
        do throws(CryptoError) {
            switch scheme {
            case .rsaRaw: return try k.decrypt(data, padding: .none)
            case .eddsa: return try k.signEdDSA(message: data)
            case .rsaPKCS1(let h?): s = .pkcs1(h)
            case .rsaPKCS1(nil): s = .pkcs1Raw
            case .rsaPSS(let h, let mgf1, let salt): s = .pss(h, mgf1: mgf1, saltLength: salt)
            case .ecdsa: s = .ecdsa
            case .dsa: s = .dsa
            case .mldsa: throw CryptoError("not an ML-DSA key")
            }
            return try k.sign(digest: data, scheme: s)
        } catch { throw .device(error.message, status: 400) }
    }

    /// No change feed here: tokens over the fake poll.
    public func waitForChange(since: String, waitMs: Int, cancel: WaitCancellation) throws(TokenError) -> (revision: String, changed: Bool)
    {
        throw .functionNotSupported
    }

    /// No attestation CA here (the contract runs attestation against the real node only).
    public func attest(key: ServiceKey) throws(TokenError) -> [UInt8] { throw .functionNotSupported }

    public func verifyMLDSA(key: String, message: [UInt8], context: [UInt8], signature: [UInt8]) throws(TokenError) -> Bool {
        count("verify")
        guard let pq = try entry(key).mldsa else { throw .device("Algorithm ML-DSA does not fit key \(key)", status: 400) }
        return MLDSAKey.verify(pq.parameterSet, publicKey: pq.publicKey, signature: signature, message: message, context: context)
    }

    public func decrypt(key: String, _ scheme: DecryptScheme, _ input: [UInt8]) throws(TokenError) -> [UInt8] {
        count("decrypt")
        guard let k = try entry(key).key else { throw .device("Key \(key) is not asymmetric", status: 400) }
        let padding: EncryptionPadding =
            switch scheme {
            case .rsaPKCS1: .pkcs1
            case .rsaRaw: .none
            case .rsaOAEP(let h, let mgf1, let label): .oaep(h, mgf1: mgf1, label: label)
            }
        do { return try k.decrypt(input, padding: padding) } catch { throw .device(error.message, status: 400) }
    }

    public func symmetric(encrypt: Bool, key: String, _ scheme: SymmetricScheme, _ input: [UInt8]) throws(TokenError) -> [UInt8] {
        count("symmetric")
        let e = try entry(key)
        guard e.kind == .symmetric, scheme.cipher == e.cipher else {
            throw .device("Key \(key) is not a \(scheme.cipher) key", status: 400)
        }
        do throws(CryptoError) {
            let kind = BlockCipherKind(rawValue: e.cipher) ?? .aes
            let c = try BlockCipher(kind: kind, key: e.secret)
            switch scheme.mode {
            case .ecb: return encrypt ? try c.ecbEncrypt(input) : try c.ecbDecrypt(input)
            case .cbc(let iv, let padded):
                let bs = kind.blockSize
                if padded {
                    return encrypt
                        ? try c.cbcEncrypt(iv: iv, PKCS7.pad(input, blockSize: bs))
                        : try PKCS7.unpad(c.cbcDecrypt(iv: iv, input), blockSize: bs)
                }
                return encrypt ? try c.cbcEncrypt(iv: iv, input) : try c.cbcDecrypt(iv: iv, input)
            case .ctr(let counter): return try c.ctr(iv: counter, input)
            case .gcm(let iv, let aad, let tag):
                if encrypt {
                    let (ct, t) = try c.gcmSeal(nonce: iv, aad: aad, input, tagLength: tag)
                    return ct + t
                }
                guard input.count >= tag else { throw CryptoError("short input") }
                return try c.gcmOpen(nonce: iv, aad: aad, Array(input.dropLast(tag)), tag: Array(input.suffix(tag)))
            }
        } catch { throw .device(error.message, status: 400) }
    }

    public func mac(key: String, _ scheme: MACScheme, _ input: [UInt8]) throws(TokenError) -> [UInt8] {
        count("mac")
        let e = try entry(key)
        do throws(CryptoError) {
            switch scheme {
            case .hmac(let h):
                guard e.kind == .mac else { throw CryptoError("HMAC needs a MAC key") }
                return h.hmac(key: e.secret, data: input)
            case .aesCMAC(let length), .aesMAC(let length):
                guard e.kind == .symmetric, e.cipher == "AES" else { throw CryptoError("AES MACs need an AES key") }
                let c = try BlockCipher(kind: .aes, key: e.secret)
                let mac = if case .aesCMAC = scheme { try c.cmac(input) } else { try c.cbcMAC(input) }
                return Array(mac.prefix(length))
            }
        } catch { throw .device(error.message, status: 400) }
    }

    public func verifyAdminPassword(_ password: String, asSO: Bool) throws(TokenError) {
        if password != self.password { throw .adminPasswordRejected }
    }

    private func insert(_ name: String, _ e: Entry) throws(TokenError) {
        let taken = state.withLock { s -> Bool in
            if s.keys[name] != nil { return true }
            s.keys[name] = e
            return false
        }
        if taken { throw .device("Key with name \(name) already exists.", status: 409) }
    }

    public func generateKey(
        adminPassword: String, name: String, _ spec: KeyGenSpec, id: [UInt8]?, label: String?, attributes: [UInt8]?
    ) throws(TokenError) {
        try check(adminPassword, for: name)
        var e = Entry(kind: .mac, id: id, label: label, attributes: attributes, origin: "generated")
        do throws(CryptoError) {
            switch spec {
            case .ec(let bits):
                guard let curve = NamedCurve(bits: bits) else { throw CryptoError("Unsupported ECDSA key size: \(bits)") }
                e.kind = .ec
                e.key = try PrivateKey.generateEC(curve)
            case .rsa(let bits):
                e.kind = .rsa
                e.key = try PrivateKey.generateRSA(bits: bits)
            case .ed25519, .ed448:
                e.kind = .eddsa
                e.key = try PrivateKey.generateEdwards(spec == .ed25519 ? .ed25519 : .ed448)
            case .dsa(let p, let q, let g):
                e.kind = .dsa
                e.key = try PrivateKey.generateDSA(p: p, q: q, g: g)
            case .mldsa(let set):
                e.kind = .mldsa
                e.mldsa = try MLDSAKey.generate(set)
            case .mlkem(let set):
                e.kind = .mlkem
                e.mlkem = try MLKEMKey.generate(set)
            case .secret(let cipher, let bytes):
                guard cipher == "AES" ? [16, 24, 32].contains(bytes) : [16, 24].contains(bytes) else {
                    throw CryptoError("Unsupported symmetric key size: \(bytes)")
                }
                e.kind = .symmetric
                e.cipher = cipher
                e.secret = SecureRandom.bytes(bytes)
                if cipher == "3DES" && bytes == 16 { e.secret += e.secret.prefix(8) }
            case .mac(let bytes):
                e.secret = SecureRandom.bytes(bytes)
            }
        } catch { throw .device(error.message, status: 400) }
        try insert(name, e)
    }

    public func injectKey(
        adminPassword: String, name: String, type: KeyType, key: [UInt8], id: [UInt8]?, cipher: String?, label: String?,
        attributes: [UInt8]?
    ) throws(TokenError) {
        try check(adminPassword, for: name)
        var e = Entry(kind: .mac, secret: key, id: id, label: label, attributes: attributes, origin: "injected")
        switch type {
        case .asymmetric:
            do { e.key = try PrivateKey(pkcs8: key) } catch { throw .device("x509: failed to parse private key", status: 400) }
            e.kind = e.key.map { ServiceKey.Kind($0.kind) } ?? .rsa
            e.secret = []
        case .symmetric:
            e.kind = .symmetric
            e.cipher = cipher ?? "AES"
        case .mac: break
        }
        try insert(name, e)
    }

    public func deleteKey(adminPassword: String, name: String, type: KeyType) throws(TokenError) {
        try check(adminPassword, for: name)
        guard state.withLock({ $0.keys.removeValue(forKey: name) }) != nil else { throw .device("Invalid key name: \(name)", status: 404) }
    }

    public func setKeyID(
        adminPassword: String, name: String, type: KeyType, id: [UInt8]?, label: String?, attributes: [UInt8]?
    ) throws(TokenError) {
        try check(adminPassword, for: name)
        var e = try entry(name)
        if let attributes {
            // PKCS#11 §4.9: CKA_SENSITIVE only turns TRUE, CKA_EXTRACTABLE and CKA_COPYABLE only FALSE.
            let before = flags(e), after = KeyFlags(blob: attributes)
            if before.isSensitive && !after.isSensitive || !before.isExtractable && after.isExtractable || !before.canCopy && after.canCopy
            {
                throw .device("a flag cannot be changed back", status: 400)
            }
        }
        e.id = id
        if let label { e.label = label }
        if let attributes { e.attributes = attributes }
        state.withLock { $0.keys[name] = e }
    }

    public func copyKey(
        adminPassword: String, name: String, type: KeyType, newName: String, id: [UInt8]?, label: String?, attributes: [UInt8]?
    ) throws(TokenError) {
        try check(adminPassword, for: name)
        try check(adminPassword, for: newName)
        var e = try entry(name)
        guard flags(e).canCopy else {
            throw TokenError.keyFunctionNotPermitted
        }
        e.id = id
        e.label = label
        if let attributes { e.attributes = attributes }
        try insert(newName, e)
    }

    private func flags(_ e: Entry) -> KeyFlags { KeyFlags(blob: e.attributes) }

    private func secret(_ e: Entry, _ name: String) throws(CryptoError) -> [UInt8] {
        guard e.kind == .symmetric || e.kind == .mac else { throw CryptoError("\(name) is not a secret key") }
        return e.secret
    }

    /// A new key made from others: sensitivity and non-extractability carry over from `sources`.
    private func storeMade(_ value: [UInt8], new: NewKeySpec, origin: String, sources: [Entry], adminPassword: String) throws(TokenError) {
        try check(adminPassword, for: new.name)
        var value = value
        if new.length > 0 {
            guard new.length <= value.count else {
                throw .device("the mechanism gives \(value.count) bytes; \(new.length) were asked", status: 400)
            }
            value = Array(value.prefix(new.length))
        }
        guard !value.isEmpty else { throw .device("the derived key would be empty", status: 400) }
        var f = KeyFlags(blob: new.attributes)
        for s in sources {
            if flags(s).isSensitive { f[KeyFlags.sensitive] = true }
            if !flags(s).isExtractable { f[KeyFlags.extractable] = false }
        }
        var e = Entry(kind: .mac, id: new.id, label: new.label, attributes: f.blob, origin: origin)
        switch new.type {
        case .asymmetric:
            do { e.key = try PrivateKey(pkcs8: value) } catch {
                throw .device("the unwrapped bytes are not a PKCS#8 private key", status: 400)
            }
            e.kind = e.key.map { ServiceKey.Kind($0.kind) } ?? .rsa
        case .symmetric:
            guard BlockCipherKind(rawValue: new.cipher ?? "AES")?.validKeySize(value.count) ?? false else {
                throw .device("\(value.count) bytes is no \(new.cipher ?? "AES") key", status: 400)
            }
            e.kind = .symmetric
            e.cipher = new.cipher ?? "AES"
            e.secret = value
        case .mac:
            e.secret = value
        }
        try insert(new.name, e)
    }

    @discardableResult
    public func deriveKey(
        adminPassword: String, base: ServiceKey, mechanism: DeriveMechanism, new: NewKeySpec
    ) throws(TokenError)
        -> [UInt8]
    {
        count("derive")
        let b = try entry(base.name)
        switch mechanism {
        case .mlkemEncapsulate, .mlkemDecapsulate(_):
            // Judged by CKA_ENCAPSULATE / CKA_DECAPSULATE (default TRUE), as the service does.
            guard let pq = b.mlkem else { throw .device("ML-KEM needs an ML-KEM key", status: 400) }
            var ciphertext: [UInt8] = []
            let secret: [UInt8]
            do {
                if case .mlkemDecapsulate(let c) = mechanism {
                    guard flags(b).canDecapsulate else { throw TokenError.keyFunctionNotPermitted }
                    secret = try pq.decapsulate(c)
                } else {
                    guard flags(b).canEncapsulate else { throw TokenError.keyFunctionNotPermitted }
                    (secret, ciphertext) = try pq.encapsulate()
                }
            } catch let e as TokenError { throw e } catch { throw .device("\(error)", status: 400) }
            try storeMade(secret, new: new, origin: "derived", sources: [], adminPassword: adminPassword)
            return ciphertext
        default: break
        }
        guard flags(b).canDerive else {
            throw TokenError.keyFunctionNotPermitted
        }
        var sources = [b]
        var other: Entry?
        if case .concatenateBaseAndKey(let o) = mechanism { other = try entry(o.name) }
        let value: [UInt8]
        do throws(CryptoError) {
            switch mechanism {
            case .aesECBEncryptData(let d):
                value = try BlockCipher(kind: .aes, key: try secret(b, base.name)).ecbEncrypt(d)
                sources = []
            case .aesCBCEncryptData(let iv, let d):
                value = try BlockCipher(kind: .aes, key: try secret(b, base.name)).cbcEncrypt(iv: iv, d)
                sources = []
            case .concatenateBaseAndKey(let o):
                guard let other else { throw CryptoError("no other key") }
                value = try secret(b, base.name) + secret(other, o.name)
                sources.append(other)
            case .concatenateBaseAndData(let d): value = try secret(b, base.name) + d
            case .concatenateDataAndBase(let d): value = d + (try secret(b, base.name))
            case .xorBaseAndData(let d):
                guard !d.isEmpty else { throw CryptoError("data must not be empty") }
                value = zip(try secret(b, base.name), d).map { $0 ^ $1 }
            case .extractKeyFromKey(let bitIndex):
                let s = try secret(b, base.name)
                guard new.length > 0, new.length <= s.count else { throw CryptoError("length must be 1 to \(s.count) bytes") }
                let bits = s.count * 8
                let start = Int(bitIndex % UInt(bits))
                var v = [UInt8](repeating: 0, count: new.length)
                for k in 0..<(new.length * 8) {
                    let i = (start + k) % bits
                    if s[i / 8] & (0x80 >> UInt8(i % 8)) != 0 { v[k / 8] |= 0x80 >> UInt8(k % 8) }
                }
                value = v
            case .ecdh(let kdf, let shared, let pub):
                guard let k = b.key, k.kind == .ec else { throw CryptoError("ECDH1 needs an EC private key") }
                let z = try k.ecdhSharedSecret(peerPoint: pub)
                value = kdf.map { KDF.x963($0, secret: z, sharedInfo: shared, length: new.length) } ?? z
                sources = []
            case .mlkemEncapsulate, .mlkemDecapsulate: throw CryptoError("handled above")
            }
        } catch { throw .device(error.message, status: 400) }
        try storeMade(value, new: new, origin: "derived", sources: sources, adminPassword: adminPassword)
        return []
    }

    private static func padding(_ m: WrapMechanism) -> EncryptionPadding? {
        switch m {
        case .rsaPKCS: .pkcs1
        case .rsaOAEP(let h, let mgf1, let label): .oaep(h, mgf1: mgf1, label: label)
        case .aesKeyWrap, .aesKeyWrapPad: nil
        }
    }

    public func wrapKey(key: ServiceKey, mechanism: WrapMechanism, target: ServiceKey) throws(TokenError) -> [UInt8] {
        count("wrap")
        let w = try entry(key.name), t = try entry(target.name)
        guard flags(w).canWrap else { throw TokenError.keyFunctionNotPermitted }
        guard flags(t).isExtractable else {
            throw TokenError.keyFunctionNotPermitted
        }
        let plain = t.key?.pkcs8DER ?? t.secret
        do throws(CryptoError) {
            if let padding = FakeKeyService.padding(mechanism) {
                guard let pub = w.key?.publicKey, w.kind == .rsa else { throw CryptoError("RSA wrapping needs an RSA key") }
                return try pub.encrypt(plain, padding: padding)
            }
            return try AESKeyWrap.wrap(key: try secret(w, key.name), plain, padded: mechanism == .aesKeyWrapPad)
        } catch { throw .device(error.message, status: 400) }
    }

    public func unwrapKey(
        adminPassword: String, key: ServiceKey, mechanism: WrapMechanism, wrapped: [UInt8], new: NewKeySpec
    ) throws(TokenError) {
        count("unwrap")
        let u = try entry(key.name)
        guard flags(u).canUnwrap else { throw TokenError.keyFunctionNotPermitted }
        let plain: [UInt8]
        do throws(CryptoError) {
            if let padding = FakeKeyService.padding(mechanism) {
                guard let k = u.key, u.kind == .rsa else { throw CryptoError("RSA unwrapping needs an RSA key") }
                plain = try k.decrypt(wrapped, padding: padding)
            } else {
                plain = try AESKeyWrap.unwrap(key: try secret(u, key.name), wrapped, padded: mechanism == .aesKeyWrapPad)
            }
        } catch { throw .device(error.message, status: 400) }
        // What was the value of a sensitive key here stays sensitive.
        let wasSensitive = state.withLock { s in
            s.keys.values.contains { flags($0).isSensitive && ($0.secret == plain || $0.key?.pkcs8DER == plain) }
        }
        var spec = new
        if wasSensitive {
            var f = KeyFlags(blob: new.attributes)
            f[KeyFlags.sensitive] = true
            spec.attributes = f.blob
        }
        try storeMade(plain, new: spec, origin: "unwrapped", sources: [], adminPassword: adminPassword)
    }

    public func keyValue(_ key: ServiceKey) throws(TokenError) -> [UInt8] {
        let e = try entry(key.name)
        guard e.kind == .symmetric || e.kind == .mac, !flags(e).isSensitive, flags(e).isExtractable else {
            throw TokenError.keyFunctionNotPermitted
        }
        return e.secret
    }

    public func releaseSession(owner: String) throws(TokenError) {
        state.withLock { s in s.keys = s.keys.filter { !$0.key.hasPrefix("~\(owner)/") } }
    }

    public func createObject(
        adminPassword: String, objectClass: String, label: String, id: [UInt8], value: [UInt8], application: String
    ) throws(TokenError) -> String {
        try check(adminPassword, for: "object")
        guard ["CERTIFICATE", "DATA", "PUBLIC_KEY"].contains(objectClass) else {
            throw .device("Invalid object class: \(objectClass)", status: 400)
        }
        if objectClass == "PUBLIC_KEY", (try? PublicKey(spki: value)) == nil {
            throw .device("PUBLIC_KEY value is not a DER SubjectPublicKeyInfo", status: 400)
        }
        let uid = SecureRandom.hex(16)
        var object = ServiceObject(
            uid: uid, isCertificate: objectClass == "CERTIFICATE", label: label, id: id, value: value, application: application)
        object.isPublicKey = objectClass == "PUBLIC_KEY"
        state.withLock { $0.objects[uid] = object }
        return uid
    }

    public func updateObject(adminPassword: String, uid: String, label: String?, id: [UInt8]?) throws(TokenError) {
        try check(adminPassword, for: "object")
        let found = state.withLock { s -> Bool in
            guard var o = s.objects[uid] else { return false }
            if let label { o.label = label }
            if let id { o.id = id }
            s.objects[uid] = o
            return true
        }
        if !found { throw .device("No object with uid \(uid).", status: 404) }
    }

    public func deleteObject(adminPassword: String, uid: String) throws(TokenError) {
        try check(adminPassword, for: "object")
        guard state.withLock({ $0.objects.removeValue(forKey: uid) }) != nil else {
            throw .device("No object with uid \(uid).", status: 404)
        }
    }
}
