import VSSMCrypto
import VSSMSync
public import TokenCore
public import VSSMClient
public import VSSMWire

/// `KeyService` over the VSSM REST API. Uses our `/REST/v1/ext/` calls where the service has them
/// and the original API otherwise; transport trouble becomes `.device` (CKR_DEVICE_ERROR).
public final class VSSMKeyService: KeyService {
    let api: VSSMAPIClient
    /// nil: not asked yet; .some(nil): the original API; .some(set): our extensions' features.
    private let ext = Locked<Set<Feature>??>(nil)

    public init(_ configuration: TLSClientConfiguration) throws(TokenError) {
        do { api = try VSSMAPIClient(configuration) } catch {
            throw .functionFailed("key service client: \(error)")
        }
    }

    public func closeConnections() { api.http.closeIdle() }

    /// The namespaces of this client's principal (`ext/whoami`); nil while the service has no
    /// principals or knows no extensions.
    public func principalNamespaces() throws(TokenError) -> [String]? {
        do {
            let r = try api.whoAmI()
            return r.bool("restricted") ? r.strings("namespaces") : nil
        } catch .http(status: 404, message: _) {
            return nil
        } catch {
            throw VSSMKeyService.map(error)
        }
    }

    static func map(_ e: ClientError) -> TokenError {
        switch e {
        case .http(let status, let message):
            // The original Go VSSM answers every error with 500: its message says which it was.
            switch status == 500 ? GoErrors.status(of: message) : status {
            case 403 where message == "Incorrect administrator password.": return .adminPasswordRejected
            // A principal's role or namespace does not allow the call (tenants).
            case 403 where message.hasPrefix("Not permitted: "): return .actionProhibited
            // The key's usage flags (CKA_SIGN, CKA_DECRYPT, …), enforced by the service too.
            case 403 where message.hasPrefix("Key function not permitted: "): return .keyFunctionNotPermitted
            case 429 where message.hasPrefix(RateLimit.messagePrefix): return .rateLimited(message)
            case 429: return .pinLocked(message)
            case let s: return .device(message, status: s)
            }
        case .configuration(let m): return .functionFailed(m)
        default: return .device(e.description, status: 0)
        }
    }

    func call(_ path: String, _ w: WireWriter, _ schema: MessageSchema, idempotent: Bool) throws(TokenError) -> WireObject {
        do { return try api.call(path, w, response: schema, idempotent: idempotent) } catch { throw VSSMKeyService.map(error) }
    }

    /// Requests sent so far (tests count round trips with it).
    public var requestCount: Int { api.http.stats.requestCount }

    public func hasExtensions() throws(TokenError) -> Bool { try features() != nil }

    /// Asked once per instance: `ext/capabilities` answers with the feature list, the original a 404.
    public func features() throws(TokenError) -> Set<Feature>? {
        if let f = ext.withLock({ $0 }) { return f }
        let f: Set<Feature>?
        do {
            let r = try api.call(Route.extCapabilities, WireWriter(), response: ExtSchemas.capabilitiesResponse, idempotent: true)
            f = Feature.set(r.strings("features"))
        } catch .http(status: 404, message: _) {
            f = nil
        } catch {
            throw VSSMKeyService.map(error)
        }
        ext.withLock { $0 = .some(f) }
        return f
    }

    public func list(adminPassword: String?, owner: String?) throws(TokenError) -> ServiceListing {
        // Until the features are known, the extended listing is asked first: it carries them, so
        // a cold start costs one round trip, not two; the original answers 404 (base API only).
        let known = ext.withLock { $0 }
        let originalOnly = known == .some(nil)
        if !originalOnly {
            var req = WireWriter()
            req.string("owner", owner ?? "")
            let r: WireObject
            do {
                r = try api.call(Route.extListKeys, req, response: ExtSchemas.listKeysResponse, idempotent: true)
            } catch .http(status: 404, message: _) where known == nil {
                ext.withLock { $0 = .some(nil) }
                return try list(adminPassword: adminPassword, owner: owner)
            } catch {
                throw VSSMKeyService.map(error)
            }
            if known == nil {
                if r.has("features") { ext.withLock { $0 = .some(Feature.set(r.strings("features"))) } } else { _ = try features() }
            }
            var listing = ServiceListing()
            for k in r.objects("keys") {
                let kind: ServiceKey.Kind
                switch (k.string("keyType"), k.string("keySpec")) {
                case ("ASYMMETRIC", "RSA"): kind = .rsa
                case ("ASYMMETRIC", "EC"): kind = .ec
                case ("ASYMMETRIC", "ED25519"), ("ASYMMETRIC", "ED448"): kind = .eddsa
                case ("ASYMMETRIC", "DSA"): kind = .dsa
                case ("ASYMMETRIC", let spec) where MLDSAParameterSet(rawValue: spec) != nil: kind = .mldsa
                case ("ASYMMETRIC", let spec) where MLKEMParameterSet(rawValue: spec) != nil: kind = .mlkem
                case ("SYMMETRIC", _): kind = .symmetric
                case ("MAC", _): kind = .mac
                default: continue
                }
                guard let length = VSSMKeyService.keyLength(k) else { continue }
                listing.keys.append(
                    ServiceKey(
                        name: k.string("name"), kind: kind, publicKey: k.bytes("publicKey") ?? [],
                        length: length, cipher: k.string("cipher"), id: k.bytes("id"),
                        ephemeral: k.bool("ephemeral"),
                        label: k.bool("ephemeral") || k.has("label") ? k.string("label") : nil,
                        generated: k.string("origin") == "generated" ? true : k.string("origin").isEmpty ? nil : false,
                        attributes: k.bytes("attributes")))
            }
            for o in r.objects("objects") {
                var object = ServiceObject(
                    uid: o.string("uid"), isCertificate: o.string("class") == "CERTIFICATE",
                    label: o.string("label"), id: o.bytes("id") ?? [], value: o.bytes("value") ?? [],
                    application: o.string("application"))
                object.isPublicKey = o.string("class") == "PUBLIC_KEY"
                listing.objects.append(object)
            }
            return listing
        }
        // The original API lists keys only with the admin password.
        guard let adminPassword else { return ServiceListing() }
        var w = WireWriter()
        w.string("adminPassword", adminPassword)
        let r = try call(Route.listKeys, w, Schemas.listKeysResponse, idempotent: true)
        var listing = ServiceListing()
        for k in r.objects("asymmetricKey") {
            listing.keys.append(
                ServiceKey(name: k.string("name"), kind: k.string("keySpec") == "EC" ? .ec : .rsa, publicKey: k.bytes("publicKey") ?? []))
        }
        for k in r.objects("symmetricKey") {
            guard let n = VSSMKeyService.keyLength(k) else { continue }
            listing.keys.append(ServiceKey(name: k.string("name"), kind: .symmetric, length: n, cipher: n == 8 ? "DES" : "AES"))
        }
        for k in r.objects("macKey") {
            guard let n = VSSMKeyService.keyLength(k) else { continue }
            listing.keys.append(ServiceKey(name: k.string("name"), kind: .mac, length: n))
        }
        return listing
    }

    /// `keyLength` from a listing, range-checked before it becomes an Int (a hostile service may send
    /// 2^64-1); entries outside any real key size are left out of the listing.
    static func keyLength(_ k: WireObject) -> Int? {
        guard let n = Int(exactly: k.uint64("keyLength")), n <= 1 << 16 else { return nil }
        return n
    }

    /// The only place a signature scheme becomes a route and an algorithm name: the original API
    /// for what it has, our extensions for the rest (the names the service's audit records carry).
    public func sign(key: String, _ scheme: SignScheme, _ data: [UInt8]) throws(TokenError) -> [UInt8] {
        let features = try features()
        func has(_ f: Feature) -> Bool { features?.contains(f) ?? false }
        /// A hash the service can be told about (else the digest goes unnamed).
        func named(_ h: HashAlgorithm) -> Bool { h.inOriginalAPI || (h.isSHA3 ? has(.sha3) : features != nil) }
        var w = WireWriter()
        let algorithm: String
        var original = false
        switch scheme {
        case .rsaPKCS1(let hash?) where named(hash):
            algorithm = "\(hash.rawValue)withRSA"
            original = hash.inOriginalAPI
        case .rsaPKCS1(let hash):
            // Unnamed: the DigestInfo is made here and signed as given (the original API has no
            // such call: PKCS#1 over arbitrary bytes is not data it can sign).
            guard features != nil else { throw .dataInvalid }
            algorithm = "NONEwithRSA"
            if let hash { return try sign(key: key, .rsaPKCS1(nil), hash.digestInfoPrefix + data) }
        case .rsaPSS(let hash, let mgf1, let salt):
            guard named(hash), named(mgf1) else { throw .mechanismParamInvalid("the key service does not know this PSS hash") }
            algorithm = "\(hash.rawValue)withRSA/PSS"
            w.object("saltLength", .string(String(salt)))
            w.string("mgf1Hash", mgf1.rawValue)
        case .rsaRaw:
            guard features != nil else { throw .mechanismInvalid(MechanismType.rsaX509) }
            algorithm = "RSA-RAW"
        case .ecdsa(let hash):
            // The original API ignores the name when `hashed` is given: a Go node gets its one
            // ECDSA name for every hash; ours is told the hash (its audit record says which).
            if features == nil {
                algorithm = "SHA256withECDSA"
            } else if let hash, named(hash) {
                algorithm = "\(hash.rawValue)withECDSA"
            } else {
                algorithm = "NONEwithECDSA"
            }
            original = algorithm == "SHA256withECDSA" || algorithm == "SHA1withECDSA"
        case .dsa:
            algorithm = "NONEwithDSA"
        case .eddsa:
            algorithm = "EdDSA"
        case .mldsa(let context):
            guard has(.mlDSA) else { throw .mechanismInvalid(MechanismType.mlDSA) }
            algorithm = "ML-DSA"
            if !context.isEmpty { w.bytes("context", context) }
        }
        // EdDSA and ML-DSA sign the message itself (`input`); everything else a digest or prepared bytes (`hashed`).
        let wholeMessage: Bool
        switch scheme {
        case .eddsa, .mldsa: wholeMessage = true
        default: wholeMessage = false
        }
        w.bytes(wholeMessage ? "input" : "hashed", data)
        w.string("keyName", key)
        w.string("algorithm", algorithm)
        return try call(original ? Route.asymmetricSign : Route.extSign, w, ExtSchemas.outputResponse, idempotent: true).bytes("output")
            ?? []
    }

    public func waitForChange(since: String, waitMs: Int, cancel: WaitCancellation) throws(TokenError) -> (revision: String, changed: Bool)
    {
        guard try features()?.contains(.changes) ?? false else { throw .functionNotSupported }
        var w = WireWriter()
        w.string("revision", since)
        w.uint64("waitMs", UInt64(max(0, waitMs)))
        let handle = LongPollHandle()
        cancel.onCancel { handle.cancel() }
        let r: WireObject
        do { r = try api.callWaiting(Route.extChanges, w, response: ExtSchemas.changesResponse, waitMs: waitMs, handle: handle) } catch {
            throw VSSMKeyService.map(error)
        }
        return (r.string("revision"), r.bool("changed"))
    }

    public func attest(key: ServiceKey) throws(TokenError) -> [UInt8] {
        guard try features()?.contains(.attestation) ?? false else { throw .functionNotSupported }
        var w = WireWriter()
        w.string("keyName", key.name)
        return try call(Route.extAttest, w, ExtSchemas.attestResponse, idempotent: true).bytes("certificate") ?? []
    }

    public func verifyMLDSA(key: String, message: [UInt8], context: [UInt8], signature: [UInt8]) throws(TokenError) -> Bool {
        guard try features()?.contains(.mlDSA) ?? false else { throw .mechanismInvalid(MechanismType.mlDSA) }
        var w = WireWriter()
        w.string("keyName", key)
        w.string("algorithm", "ML-DSA")
        w.bytes("input", message)
        w.bytes("signature", signature)
        if !context.isEmpty { w.bytes("context", context) }
        return try call(Route.extVerify, w, ExtSchemas.verifyResponse, idempotent: true).bool("valid")
    }

    public func decrypt(key: String, _ scheme: DecryptScheme, _ input: [UInt8]) throws(TokenError) -> [UInt8] {
        var w = WireWriter()
        w.bytes("input", input)
        w.string("keyName", key)
        let original = scheme.inOriginalAPI
        switch scheme {
        case .rsaPKCS1: w.string("algorithm", "RSA")
        case .rsaRaw: w.string("algorithm", "RSA-RAW")
        case .rsaOAEP(let hash, let mgf1, let label):
            if original {
                w.string("algorithm", "RSA-OAEP/\(hash.rawValue)")
            } else {
                w.string("algorithm", "RSA-OAEP")
                w.string("hash", hash.rawValue)
                w.string("mgf1Hash", mgf1.rawValue)
                w.bytes("label", label)
            }
        }
        return try call(original ? Route.asymmetricDecrypt : Route.extDecrypt, w, ExtSchemas.outputResponse, idempotent: true).bytes(
            "output") ?? []
    }

    /// With the extensions the IV, AAD and tag length are fields; the original API decrypts with
    /// the IV (GCM: the 12-byte nonce, no AAD, a 16-byte tag) before the ciphertext and encrypts
    /// with IVs of its own choosing only, so a caller's IV cannot be used there for encryption.
    public func symmetric(encrypt: Bool, key: String, _ scheme: SymmetricScheme, _ input: [UInt8]) throws(TokenError) -> [UInt8] {
        let ext = try hasExtensions()
        let c = scheme.cipher
        var w = WireWriter()
        var data = input
        var fields = false
        let algorithm: String
        func prefixed(_ iv: [UInt8]) throws(TokenError) {
            guard !encrypt else { throw .mechanismParamInvalid("encryption with a caller's IV needs the service's extensions") }
            data = iv + input
        }
        switch scheme.mode {
        case .ecb:
            algorithm = "\(c)/ECB/NoPadding"
        case .cbc(let iv, let padded):
            algorithm = padded ? "\(c)/CBC/PKCS5Padding" : "\(c)/CBC/NoPadding"
            if ext { w.bytes("iv", iv); fields = true } else { try prefixed(iv) }
        case .ctr(let counter):
            algorithm = "\(c)/CTR/NoPadding"
            if ext { w.bytes("iv", counter); fields = true } else { try prefixed(counter) }
        case .gcm(let iv, let aad, let tagLength):
            algorithm = "\(c)/GCM/NoPadding"
            if ext {
                w.bytes("iv", iv)
                w.bytes("aad", aad)
                w.object("tagLength", .string(String(tagLength)))
                fields = true
            } else {
                guard iv.count == 12, aad.isEmpty, tagLength == 16 else {
                    throw .mechanismParamInvalid("GCM with these parameters needs the service's extensions")
                }
                try prefixed(iv)
            }
        }
        w.bytes("input", data)
        w.string("keyName", key)
        w.string("algorithm", algorithm)
        let path =
            fields
            ? (encrypt ? Route.extSymmetricEncrypt : Route.extSymmetricDecrypt)
            : (encrypt ? Route.symmetricEncrypt : Route.symmetricDecrypt)
        return try call(path, w, ExtSchemas.outputResponse, idempotent: true).bytes("output") ?? []
    }

    /// HMAC with the original's four hashes on its `hmac/create`; other hashes and the AES MACs
    /// on `ext/mac`.
    public func mac(key: String, _ scheme: MACScheme, _ input: [UInt8]) throws(TokenError) -> [UInt8] {
        var w = WireWriter()
        w.string("keyName", key)
        w.bytes("input", input)
        switch scheme {
        case .hmac(let hash) where hash.inOriginalAPI:
            w.string("algorithm", hash.rawValue)
            return try call(Route.hmacCreate, w, Schemas.hmacCreateResponse, idempotent: true).bytes("output") ?? []
        case .hmac(let hash):
            guard try features()?.contains(hash.isSHA3 ? .sha3 : .hmacAnyHash) ?? false else { throw .functionNotSupported }
            w.string("algorithm", "HMAC/\(hash.rawValue)")
        case .aesCMAC(let length), .aesMAC(let length):
            guard try hasExtensions() else { throw .functionNotSupported }
            if case .aesCMAC = scheme { w.string("algorithm", "AES-CMAC") } else { w.string("algorithm", "AES-MAC") }
            w.uint64("length", UInt64(length))
        }
        return try call(Route.extMAC, w, ExtSchemas.outputResponse, idempotent: true).bytes("output") ?? []
    }

    public func verifyAdminPassword(_ password: String, asSO: Bool) throws(TokenError) {
        var w = WireWriter()
        w.string("adminPassword", password)
        if asSO { w.bool("so", true) }
        if try hasExtensions() {
            _ = try call(Route.extVerifyPassword, w, Schemas.empty, idempotent: true)
        } else {
            _ = try call(Route.listKeys, w, Schemas.listKeysResponse, idempotent: true)
        }
    }

    public func generateKey(
        adminPassword: String, name: String, _ spec: KeyGenSpec, id: [UInt8]?, label: String?, attributes: [UInt8]?
    ) throws(TokenError) {
        var w = WireWriter()
        w.string("adminPassword", adminPassword)
        w.string("keyName", name)
        w.string("keyType", spec.type.rawValue)
        var cipher: String?
        var needsExtensions = false
        switch spec {
        case .rsa(let bits): w.string("keySpec", "RSA"); w.uint64("keySize", UInt64(clamping: bits))
        case .ec(let bits): w.string("keySpec", "EC"); w.uint64("keySize", UInt64(clamping: bits))
        case .ed25519: w.string("keySpec", "ED25519"); w.uint64("keySize", 0)
        case .ed448: w.string("keySpec", "ED448"); w.uint64("keySize", 0)
        case .mldsa(let set):
            guard try features()?.contains(.mlDSA) ?? false else { throw .mechanismInvalid(MechanismType.mlDSAKeyPairGen) }
            w.string("keySpec", set.rawValue)
            w.uint64("keySize", 0)
            needsExtensions = true
        case .mlkem(let set):
            guard try features()?.contains(.mlKEM) ?? false else { throw .mechanismInvalid(MechanismType.mlKEMKeyPairGen) }
            w.string("keySpec", set.rawValue)
            w.uint64("keySize", 0)
            needsExtensions = true
        case .dsa(let p, let q, let g):
            guard try features()?.contains(.dsa) ?? false else { throw .functionNotSupported }
            w.string("keySpec", "DSA")
            w.bytes("dsaP", p)
            w.bytes("dsaQ", q)
            w.bytes("dsaG", g)
            needsExtensions = true
        case .secret(let c, let bytes): w.string("keySpec", ""); w.uint64("keySize", UInt64(clamping: bytes)); cipher = c
        case .mac(let bytes): w.string("keySpec", ""); w.uint64("keySize", UInt64(clamping: bytes))
        }
        let useExt = try writeExtensionFields(&w, id: id, cipher: cipher, label: label, attributes: attributes)
        _ = try call(useExt || needsExtensions ? Route.extGenerateKey : Route.generateKey, w, Schemas.empty, idempotent: false)
    }

    /// The extension fields of a create request (CKA_ID, cipher, label, stored attributes), when
    /// the service has the extensions; false: the original API, which takes none of them.
    private func writeExtensionFields(
        _ w: inout WireWriter, id: [UInt8]?, cipher: String?, label: String?, attributes: [UInt8]?
    ) throws(TokenError) -> Bool {
        guard try hasExtensions() else { return false }
        w.bytes("id", id)
        w.string("cipher", cipher ?? "")
        if let label { w.object("label", .string(label)) }
        w.bytes("attributes", attributes)
        return true
    }

    public func injectKey(
        adminPassword: String, name: String, type: KeyType, key: [UInt8], id: [UInt8]?, cipher: String?, label: String?,
        attributes: [UInt8]?
    ) throws(TokenError) {
        var w = WireWriter()
        w.string("adminPassword", adminPassword)
        w.string("keyName", name)
        w.string("keyType", type.rawValue)
        w.bytes("key", key)
        let useExt = try writeExtensionFields(&w, id: id, cipher: cipher, label: label, attributes: attributes)
        _ = try call(useExt ? Route.extInjectKey : Route.injectKey, w, Schemas.empty, idempotent: false)
    }

    public func deleteKey(adminPassword: String, name: String, type: KeyType) throws(TokenError) {
        var w = WireWriter()
        w.string("adminPassword", adminPassword)
        w.string("keyName", name)
        w.string("keyType", type.rawValue)
        _ = try call(Route.extDeleteKey, w, Schemas.empty, idempotent: false)
    }

    public func setKeyID(
        adminPassword: String, name: String, type: KeyType, id: [UInt8]?, label: String?, attributes: [UInt8]?
    ) throws(TokenError) {
        var w = WireWriter()
        w.string("adminPassword", adminPassword)
        w.string("keyName", name)
        w.string("keyType", type.rawValue)
        w.bytes("id", id)
        if let label { w.object("label", .string(label)) }
        w.bytes("attributes", attributes)
        _ = try call(Route.extSetAttributes, w, Schemas.empty, idempotent: true)
    }

    public func copyKey(
        adminPassword: String, name: String, type: KeyType, newName: String, id: [UInt8]?, label: String?, attributes: [UInt8]?
    ) throws(TokenError) {
        guard try hasExtensions() else { throw .functionNotSupported }
        var w = WireWriter()
        w.string("adminPassword", adminPassword)
        w.string("keyName", name)
        w.string("keyType", type.rawValue)
        w.string("newName", newName)
        w.bytes("id", id)
        if let label { w.object("label", .string(label)) }
        w.bytes("attributes", attributes)
        _ = try call(Route.extCopyKey, w, Schemas.empty, idempotent: false)
    }

    private static func write(_ new: NewKeySpec, labelField: String, _ w: inout WireWriter) {
        w.string("newName", new.name)
        w.string("newType", new.type.rawValue)
        w.string("cipher", new.cipher ?? "")
        w.uint64("length", UInt64(new.length))
        w.bytes("id", new.id)
        if let label = new.label { w.object(labelField, .string(label)) }
        w.bytes("attributes", new.attributes)
    }

    private static func write(_ m: WrapMechanism, _ w: inout WireWriter) {
        switch m {
        case .aesKeyWrap: w.string("mechanism", "AES-KEY-WRAP")
        case .aesKeyWrapPad: w.string("mechanism", "AES-KEY-WRAP-PAD")
        case .rsaPKCS: w.string("mechanism", "RSA")
        case .rsaOAEP(let hash, let mgf1, let label):
            w.string("mechanism", "RSA-OAEP")
            w.string("hash", hash.rawValue)
            w.string("mgf1Hash", mgf1.rawValue)
            w.bytes("label", label)
        }
    }

    @discardableResult
    public func deriveKey(
        adminPassword: String, base: ServiceKey, mechanism: DeriveMechanism, new: NewKeySpec
    ) throws(TokenError)
        -> [UInt8]
    {
        guard try hasExtensions() else { throw .functionNotSupported }
        var w = WireWriter()
        w.string("adminPassword", adminPassword)
        w.string("keyName", base.name)
        w.string("keyType", base.serviceType.rawValue)
        switch mechanism {
        case .aesECBEncryptData(let d): w.string("mechanism", "AES-ECB-ENCRYPT-DATA"); w.bytes("data", d)
        case .aesCBCEncryptData(let iv, let d): w.string("mechanism", "AES-CBC-ENCRYPT-DATA"); w.bytes("iv", iv); w.bytes("data", d)
        case .concatenateBaseAndKey(let other):
            w.string("mechanism", "CONCATENATE-BASE-AND-KEY")
            w.string("otherKeyName", other.name)
            w.string("otherKeyType", other.serviceType.rawValue)
        case .concatenateBaseAndData(let d): w.string("mechanism", "CONCATENATE-BASE-AND-DATA"); w.bytes("data", d)
        case .concatenateDataAndBase(let d): w.string("mechanism", "CONCATENATE-DATA-AND-BASE"); w.bytes("data", d)
        case .xorBaseAndData(let d): w.string("mechanism", "XOR-BASE-AND-DATA"); w.bytes("data", d)
        case .extractKeyFromKey(let bit): w.string("mechanism", "EXTRACT-KEY-FROM-KEY"); w.uint64("bitIndex", UInt64(bit))
        case .ecdh(let kdf, let shared, let pub):
            w.string("mechanism", "ECDH1")
            w.string("kdf", kdf?.rawValue ?? "NULL")
            w.bytes("sharedData", shared)
            w.bytes("publicData", pub)
        case .mlkemEncapsulate:
            guard try features()?.contains(.mlKEM) ?? false else { throw .mechanismInvalid(MechanismType.mlKEM) }
            w.string("mechanism", "ML-KEM-ENCAPSULATE")
        case .mlkemDecapsulate(let ciphertext):
            guard try features()?.contains(.mlKEM) ?? false else { throw .mechanismInvalid(MechanismType.mlKEM) }
            w.string("mechanism", "ML-KEM-DECAPSULATE")
            w.bytes("data", ciphertext)
        }
        VSSMKeyService.write(new, labelField: "label", &w)
        return try call(Route.extDerive, w, ExtSchemas.deriveResponse, idempotent: false).bytes("ciphertext") ?? []
    }

    public func wrapKey(key: ServiceKey, mechanism: WrapMechanism, target: ServiceKey) throws(TokenError) -> [UInt8] {
        guard try hasExtensions() else { throw .functionNotSupported }
        var w = WireWriter()
        w.string("keyName", key.name)
        w.string("keyType", key.serviceType.rawValue)
        VSSMKeyService.write(mechanism, &w)
        w.string("targetName", target.name)
        w.string("targetType", target.serviceType.rawValue)
        return try call(Route.extWrap, w, ExtSchemas.outputResponse, idempotent: true).bytes("output") ?? []
    }

    public func unwrapKey(
        adminPassword: String, key: ServiceKey, mechanism: WrapMechanism, wrapped: [UInt8], new: NewKeySpec
    ) throws(TokenError) {
        guard try hasExtensions() else { throw .functionNotSupported }
        var w = WireWriter()
        w.string("adminPassword", adminPassword)
        w.string("keyName", key.name)
        w.string("keyType", key.serviceType.rawValue)
        VSSMKeyService.write(mechanism, &w)
        w.bytes("input", wrapped)
        VSSMKeyService.write(new, labelField: "newLabel", &w)
        _ = try call(Route.extUnwrap, w, Schemas.empty, idempotent: false)
    }

    public func keyValue(_ key: ServiceKey) throws(TokenError) -> [UInt8] {
        guard try hasExtensions() else { throw .functionNotSupported }
        var w = WireWriter()
        w.string("keyName", key.name)
        w.string("keyType", key.serviceType.rawValue)
        return try call(Route.extKeyValue, w, ExtSchemas.outputResponse, idempotent: true).bytes("output") ?? []
    }

    public func releaseSession(owner: String) throws(TokenError) {
        guard try hasExtensions() else { return }
        var w = WireWriter()
        w.string("owner", owner)
        _ = try call(Route.extReleaseSession, w, ExtSchemas.releaseSessionResponse, idempotent: true)
    }

    public func createObject(
        adminPassword: String, objectClass: String, label: String, id: [UInt8], value: [UInt8], application: String
    ) throws(TokenError) -> String {
        var w = WireWriter()
        w.string("adminPassword", adminPassword)
        w.string("class", objectClass)
        w.string("label", label)
        w.bytes("id", id)
        w.bytes("value", value)
        w.string("application", application)
        return try call(Route.extCreateObject, w, ExtSchemas.createObjectResponse, idempotent: false).string("uid")
    }

    public func updateObject(adminPassword: String, uid: String, label: String?, id: [UInt8]?) throws(TokenError) {
        var w = WireWriter()
        w.string("adminPassword", adminPassword)
        w.string("uid", uid)
        if let label { w.object("label", .string(label)) }
        w.bytes("id", id)
        _ = try call(Route.extUpdateObject, w, Schemas.empty, idempotent: true)
    }

    public func deleteObject(adminPassword: String, uid: String) throws(TokenError) {
        var w = WireWriter()
        w.string("adminPassword", adminPassword)
        w.string("uid", uid)
        _ = try call(Route.extDeleteObject, w, Schemas.empty, idempotent: false)
    }
}

/// The original Go VSSM's error messages (all sent with HTTP 500), classified as our statuses
/// say: 403 wrong admin password, 404 unknown key, 409 name taken, 400 the caller's input (bad
/// padding, tag, ciphertext, algorithm, JSON); anything else stays 500 (a service failure).
enum GoErrors {
    static func status(of message: String) -> Int {
        if message == "Incorrect administrator password." { return 403 }
        if message.hasPrefix("Invalid key name: ") || message == "No key by that name exists." { return 404 }
        if message.hasPrefix("Key with name ") && message.hasSuffix(" already exists.") { return 409 }
        let input = [
            "crypto/rsa: decryption error", "cipher: message authentication failed", "invalid padding on input",
            "crypto/cipher: input not full blocks", "crypto/rsa: input must be hashed message", "crypto/rsa: message too long",
            "Invalid algorithm", "Invalid hash algorithm", "Invalid cipher", "Unsupported ", "Key name cannot be blank.",
            "Invalid key type", "illegal base64", "unknown field", "invalid character", "unexpected EOF", "x509: failed to parse",
            "asn1: ", "slice bounds out of range",
        ]
        return input.contains { message.hasPrefix($0) } ? 400 : 500
    }
}
