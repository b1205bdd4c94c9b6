import Synchronization
import TokenCore
import VSSMCrypto
import VSSMWire

/// An in-memory KeyService for TokenCore unit tests: keys in a dictionary, crypto by VSSMCrypto.
/// `ContractTests` run the same checks against it and against a real node, so it stays honest.
/// It offers the base operations and MACs (no derive/wrap/unwrap: those features are not listed).
final class FakeKeyService: KeyService, @unchecked Sendable {
    struct Entry {
        var kind: ServiceKey.Kind
        var secret: [UInt8] = []
        var key: PrivateKey?
        var cipher = ""
        var id: [UInt8]?
        var label: String?
        var attributes: [UInt8]?
        var origin: String
    }
    let password: String
    private let state = Mutex<(keys: [String: Entry], objects: [String: ServiceObject])>(([:], [:]))

    init(password: String) { self.password = password }

    func hasExtensions() throws(TokenError) -> Bool { true }
    func features() throws(TokenError) -> Set<Feature>? {
        [.listKeys, .sign, .signPSS, .signRaw, .decryptOAEP, .symmetricIV, .generateKey, .injectKey, .sessionKeys, .copyKey, .objects, .mac,
         .hmacAnyHash, .sha3]
    }

    private func check(_ admin: String, for name: String) throws(TokenError) {
        if !name.hasPrefix("~") && admin != password { throw .adminPasswordRejected }
    }

    private func entry(_ name: String) throws(TokenError) -> Entry {
        guard let e = state.withLock({ $0.keys[name] }) else { throw .device("Invalid key name: \(name)", status: 404) }
        return e
    }

    func list(adminPassword: String?, owner: String?) throws(TokenError) -> ServiceListing {
        state.withLock { s in
            let mine = owner.map { "~\($0)/" }
            let keys = s.keys.filter { k in !k.key.hasPrefix("~") || (mine.map { k.key.hasPrefix($0) } ?? false) }
                .sorted { $0.key < $1.key }
                .map { name, e in
                    ServiceKey(name: name, kind: e.kind, publicKey: e.key?.spkiDER ?? [], length: e.secret.count, cipher: e.cipher, id: e.id,
                               ephemeral: name.hasPrefix("~"), label: e.label, generated: e.origin == "generated", attributes: e.attributes)
                }
            return ServiceListing(keys: keys, objects: s.objects.values.sorted { $0.uid < $1.uid })
        }
    }

    func sign(key: String, _ scheme: SignScheme, _ data: [UInt8]) throws(TokenError) -> [UInt8] {
        guard let k = try entry(key).key else { throw .device("Key \(key) is not asymmetric", status: 400) }
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
            }
            return try k.sign(digest: data, scheme: s)
        } catch { throw .device(error.message, status: 400) }
    }

    func decrypt(key: String, _ scheme: DecryptScheme, _ input: [UInt8]) throws(TokenError) -> [UInt8] {
        guard let k = try entry(key).key else { throw .device("Key \(key) is not asymmetric", status: 400) }
        let padding: EncryptionPadding = switch scheme {
        case .rsaPKCS1: .pkcs1
        case .rsaRaw: .none
        case .rsaOAEP(let h, let mgf1, let label): .oaep(h, mgf1: mgf1, label: label)
        }
        do { return try k.decrypt(input, padding: padding) } catch { throw .device(error.message, status: 400) }
    }

    func symmetric(encrypt: Bool, key: String, _ scheme: SymmetricScheme, _ input: [UInt8]) throws(TokenError) -> [UInt8] {
        let e = try entry(key)
        guard e.kind == .symmetric, scheme.cipher == e.cipher else { throw .device("Key \(key) is not a \(scheme.cipher) key", status: 400) }
        do throws(CryptoError) {
            let kind = BlockCipherKind(rawValue: e.cipher) ?? .aes
            let c = try BlockCipher(kind: kind, key: e.secret)
            switch scheme.mode {
            case .ecb: return encrypt ? try c.ecbEncrypt(input) : try c.ecbDecrypt(input)
            case .cbc(let iv, let padded):
                let bs = kind.blockSize
                if padded { return encrypt ? try c.cbcEncrypt(iv: iv, PKCS7.pad(input, blockSize: bs)) : try PKCS7.unpad(c.cbcDecrypt(iv: iv, input), blockSize: bs) }
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

    func mac(key: String, _ scheme: MACScheme, _ input: [UInt8]) throws(TokenError) -> [UInt8] {
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

    func verifyAdminPassword(_ password: String, asSO: Bool) throws(TokenError) {
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

    func generateKey(adminPassword: String, name: String, _ spec: KeyGenSpec, id: [UInt8]?, label: String?, attributes: [UInt8]?) throws(TokenError) {
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
            case .secret(let cipher, let bytes):
                guard cipher == "AES" ? [16, 24, 32].contains(bytes) : [16, 24].contains(bytes) else { throw CryptoError("Unsupported symmetric key size: \(bytes)") }
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

    func injectKey(adminPassword: String, name: String, type: KeyType, key: [UInt8], id: [UInt8]?, cipher: String?, label: String?, attributes: [UInt8]?) throws(TokenError) {
        try check(adminPassword, for: name)
        var e = Entry(kind: .mac, secret: key, id: id, label: label, attributes: attributes, origin: "injected")
        switch type {
        case .asymmetric:
            do { e.key = try PrivateKey(pkcs8: key) } catch { throw .device("x509: failed to parse private key", status: 400) }
            e.kind = FakeKeyService.kind(of: e.key)
            e.secret = []
        case .symmetric:
            e.kind = .symmetric
            e.cipher = cipher ?? "AES"
        case .mac: break
        }
        try insert(name, e)
    }

    static func kind(of key: PrivateKey?) -> ServiceKey.Kind {
        switch key?.kind {
        case .ec?: .ec
        case .dsa?: .dsa
        case .ed25519?, .ed448?: .eddsa
        default: .rsa
        }
    }

    func deleteKey(adminPassword: String, name: String, type: KeyType) throws(TokenError) {
        try check(adminPassword, for: name)
        guard state.withLock({ $0.keys.removeValue(forKey: name) }) != nil else { throw .device("Invalid key name: \(name)", status: 404) }
    }

    func setKeyID(adminPassword: String, name: String, type: KeyType, id: [UInt8]?, label: String?, attributes: [UInt8]?) throws(TokenError) {
        try check(adminPassword, for: name)
        var e = try entry(name)
        e.id = id
        if let label { e.label = label }
        if let attributes { e.attributes = attributes }
        state.withLock { $0.keys[name] = e }
    }

    func copyKey(adminPassword: String, name: String, type: KeyType, newName: String, id: [UInt8]?, label: String?, attributes: [UInt8]?) throws(TokenError) {
        try check(adminPassword, for: name)
        try check(adminPassword, for: newName)
        var e = try entry(name)
        e.id = id
        e.label = label
        if let attributes { e.attributes = attributes }
        try insert(newName, e)
    }

    func deriveKey(adminPassword: String, base: ServiceKey, mechanism: DeriveMechanism, new: NewKeySpec) throws(TokenError) { throw .functionNotSupported }
    func wrapKey(key: ServiceKey, mechanism: WrapMechanism, target: ServiceKey) throws(TokenError) -> [UInt8] { throw .functionNotSupported }
    func unwrapKey(adminPassword: String, key: ServiceKey, mechanism: WrapMechanism, wrapped: [UInt8], new: NewKeySpec) throws(TokenError) { throw .functionNotSupported }
    func keyValue(_ key: ServiceKey) throws(TokenError) -> [UInt8] { throw .device("never readable in the fake", status: 403) }

    func releaseSession(owner: String) throws(TokenError) {
        state.withLock { s in s.keys = s.keys.filter { !$0.key.hasPrefix("~\(owner)/") } }
    }

    func createObject(adminPassword: String, objectClass: String, label: String, id: [UInt8], value: [UInt8], application: String) throws(TokenError) -> String {
        try check(adminPassword, for: "object")
        let uid = SecureRandom.hex(16)
        state.withLock { $0.objects[uid] = ServiceObject(uid: uid, isCertificate: objectClass == "CERTIFICATE", label: label, id: id, value: value, application: application) }
        return uid
    }

    func updateObject(adminPassword: String, uid: String, label: String?, id: [UInt8]?) throws(TokenError) {
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

    func deleteObject(adminPassword: String, uid: String) throws(TokenError) {
        try check(adminPassword, for: "object")
        guard state.withLock({ $0.objects.removeValue(forKey: uid) }) != nil else { throw .device("No object with uid \(uid).", status: 404) }
    }
}
