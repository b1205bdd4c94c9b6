import VSSMWire
import VSSMCrypto

/// Object and key management (PKCS#11 2.40 §5.7, §5.14): needs the admin password (SO login, or a
/// user login where the slot treats the user PIN as the admin password) and a read-write session.
extension Library {
    func managementContext(_ h: UInt) throws(TokenError) -> (Token, any KeyService, String) {
        let (s, t) = try session(h)
        guard s.readWrite else { throw .sessionReadOnly }
        let admin = try t.adminPassword()
        return (t, try t.service(), admin)
    }

    /// Where a new key goes (PKCS#11 §4.4: CKA_TOKEN defaults to FALSE). A token object needs a
    /// read-write session and the admin password; a session object (kept by the service in memory
    /// for this module instance, destroyed with its session) needs neither.
    struct Placement {
        let token: Token
        let service: any KeyService
        let admin: String
        /// The service name, and the CKA_LABEL to store with a session key.
        let name: String
        let label: String?
        let onToken: Bool
        /// A token key named after its CKA_LABEL (the usual case: the service lists it by that name).
        var labelIsName = false
    }

    /// Creates under the placement's name. A token key named after its CKA_LABEL whose name is
    /// taken is stored under a generated name with the label kept as its CKA_LABEL (PKCS#11
    /// labels need not be unique). Returns the service name used.
    func named(_ p: Placement, prefix: String, _ body: (String, String?) throws(TokenError) -> Void) throws(TokenError) -> String {
        do {
            try body(p.name, p.label)
            return p.name
        } catch .device(_, 409) where p.onToken && p.labelIsName {
            let name = Library.generatedName(prefix)
            try body(name, p.name)
            return name
        }
    }

    func placement(_ h: UInt, _ templates: Template..., prefix: String) throws(TokenError) -> Placement {
        var onToken = false
        for t in templates { if let b = try t.bool(.token) { onToken = onToken || b } }
        let label = Library.label(templates)
        if onToken {
            let (t, service, admin) = try managementContext(h)
            return Placement(
                token: t, service: service, admin: admin, name: label ?? Library.generatedName(prefix), label: nil, onToken: true,
                labelIsName: label != nil)
        }
        let (_, t) = try session(h)
        guard try t.hasExtensions() else {
            throw .templateInconsistent("this key service keeps no session objects (original API); set CKA_TOKEN=TRUE")
        }
        return Placement(token: t, service: try t.service(), admin: "", name: t.sessionKeyName(), label: label ?? "", onToken: false)
    }

    /// After a session key was made: remember which session owns it.
    func placed(_ p: Placement, _ h: UInt, name: String, type: KeyType) {
        if !p.onToken { p.token.recordSessionKey(name, type: type, session: h) }
    }

    /// What changing `key` needs: nothing more than the session for a session key; a read-write
    /// session and the admin password for a token key.
    func keyContext(_ h: UInt, _ owning: Token, _ key: ServiceKey) throws(TokenError) -> (Token, any KeyService, String) {
        key.ephemeral ? (owning, try owning.service(), "") : try managementContext(h)
    }

    static func label(_ templates: Template...) -> String? { label(templates) }

    static func label(_ templates: [Template]) -> String? {
        for t in templates { if let l = t.string(.label), !l.isEmpty { return l } }
        return nil
    }

    static func id(_ templates: Template...) -> [UInt8]? {
        for t in templates { if let i = t[.id], !i.isEmpty { return i } }
        return nil
    }

    /// Against the original API only the key itself is kept: a CKA_ID or a usage flag other than
    /// what such a key shows would be lost, so the call fails instead (a template attribute is
    /// honoured or the call fails). CKA_LABEL becomes the key's name; CKA_PRIVATE holds, as the
    /// original lists keys only to the admin password.
    static func checkOriginalAPIKeeps(
        _ t: Token, kind: ServiceKey.Kind, id: [UInt8]?, key: [Template], publicHalf: [Template] = []
    ) throws(TokenError) {
        guard !(try t.hasExtensions()) else { return }
        if let id, !id.isEmpty {
            throw .templateInconsistent(
                "this key service (the original VSSM API) cannot keep a CKA_ID; leave it out (the key's CKA_ID is then the SHA-1 of its public key)"
            )
        }
        let defaults = TokenObject.defaultFlags(kind)
        for (templates, shown) in [(key, defaults.key), (publicHalf, defaults.publicHalf)] {
            for template in templates {
                for (type, value) in template.attributes {
                    guard let d = shown[type], let asked = AttributeValue.decodeBool(value), asked != d else { continue }
                    let names: [AttributeType: String] = [
                        .sign: "CKA_SIGN", .decrypt: "CKA_DECRYPT", .derive: "CKA_DERIVE", .unwrap: "CKA_UNWRAP",
                        .wrap: "CKA_WRAP", .encrypt: "CKA_ENCRYPT", .verify: "CKA_VERIFY", .sensitive: "CKA_SENSITIVE",
                        .extractable: "CKA_EXTRACTABLE",
                    ]
                    throw .templateInconsistent(
                        "this key service (the original VSSM API) keeps no attributes: \(names[type] ?? type.description)=\(asked ? "TRUE" : "FALSE") cannot be honoured"
                    )
                }
            }
        }
    }

    static func generatedName(_ prefix: String) -> String { prefix + "-" + SecureRandom.hex(6) }

    /// Runs a management call; a name clash in the service becomes CKR_TEMPLATE_INCONSISTENT.
    func manage<R>(_ h: UInt, _ t: Token, _ body: () throws(TokenError) -> R) throws(TokenError) -> R {
        defer { t.invalidate() }
        do {
            return try recordDevice(h, body)
        } catch .device(let message, 409) {
            throw .templateInconsistent(message)
        } catch .device(let message, 400) {
            throw .templateInconsistent(message)
        }
    }

    func handle(_ t: Token, identity: String) throws(TokenError) -> ObjectHandle {
        try t.refreshIfNeeded(force: true)
        guard let h = t.state.withLock({ $0.handles[identity] }), t.state.withLock({ $0.objects[h] }) != nil else {
            throw .functionFailed("created \(identity) but it is not listed")
        }
        return h
    }

    /// C_GenerateKeyPair: CKM_RSA_PKCS_KEY_PAIR_GEN (CKA_MODULUS_BITS) or CKM_EC_KEY_PAIR_GEN (CKA_EC_PARAMS).
    public func generateKeyPair(
        _ h: UInt, mechanism: Mechanism, publicTemplate: Template, privateTemplate: Template
    ) throws(TokenError) -> (public: ObjectHandle, private: ObjectHandle) {
        let p = try placement(h, privateTemplate, publicTemplate, prefix: "key")
        let (t, service, admin) = (p.token, p.service, p.admin)
        let id = Library.id(privateTemplate, publicTemplate)
        let kind: ServiceKey.Kind =
            switch mechanism.type {
            case .ecKeyPairGen: .ec
            case .ecEdwardsKeyPairGen: .eddsa
            case .dsaKeyPairGen: .dsa
            case .mlDSAKeyPairGen: .mldsa
            case .mlKEMKeyPairGen: .mlkem
            default: .rsa
            }
        try Library.checkOriginalAPIKeeps(t, kind: kind, id: id, key: [privateTemplate], publicHalf: [publicTemplate])
        let spec: KeyGenSpec
        switch mechanism.type {
        case .rsaPKCSKeyPairGen:
            let pubBits = try publicTemplate.ulong(.modulusBits)
            let privBits = try privateTemplate.ulong(.modulusBits)
            guard let bits = pubBits ?? privBits else {
                throw .templateIncomplete("CKA_MODULUS_BITS")
            }
            if let e = publicTemplate[.publicExponent], Array(e.drop(while: { $0 == 0 })) != [1, 0, 1] {
                throw .templateInconsistent("only public exponent 65537 is supported")
            }
            guard let b = Int(exactly: bits) else { throw .attributeValueInvalid(.modulusBits) }
            spec = .rsa(bits: b)
        case .ecKeyPairGen:
            guard let params = publicTemplate[.ecParams] ?? privateTemplate[.ecParams] else { throw .templateIncomplete("CKA_EC_PARAMS") }
            guard let curve = NamedCurve.allCases.first(where: { $0.oidDER == params }) else { throw .attributeValueInvalid(.ecParams) }
            spec = .ec(bits: curve.bits)
        case .ecEdwardsKeyPairGen:
            guard let params = publicTemplate[.ecParams] ?? privateTemplate[.ecParams] else { throw .templateIncomplete("CKA_EC_PARAMS") }
            // RFC 8410 OIDs, or the PrintableString names PKCS#11 3.0 also allows.
            switch params {
            case [0x06, 0x03, 0x2B, 0x65, 0x70], [0x13, 0x0C] + Array("edwards25519".utf8): spec = .ed25519
            case [0x06, 0x03, 0x2B, 0x65, 0x71], [0x13, 0x0A] + Array("edwards448".utf8): spec = .ed448
            default: throw .attributeValueInvalid(.ecParams)
            }
        case .dsaKeyPairGen:
            // The domain parameters come with the public template (PKCS#11 §2.2.4).
            guard let p = publicTemplate[.prime] ?? privateTemplate[.prime],
                let q = publicTemplate[.subprime] ?? privateTemplate[.subprime],
                let g = publicTemplate[.base] ?? privateTemplate[.base]
            else { throw .templateIncomplete("CKA_PRIME, CKA_SUBPRIME and CKA_BASE") }
            spec = .dsa(p: p, q: q, g: g)
        case .mlDSAKeyPairGen:
            // PKCS#11 3.2: the parameter set in the public template (CKP_ML_DSA_65, CKP_ML_DSA_87).
            let set = try Library.parameterSet(publicTemplate, privateTemplate, "CKP_ML_DSA_65 or CKP_ML_DSA_87")
            guard let offered = MLDSAParameterSet(pkcs11ParameterSet: set) else { throw .attributeValueInvalid(.parameterSet) }
            spec = .mldsa(offered)
        case .mlKEMKeyPairGen:
            // CKP_ML_KEM_768 or CKP_ML_KEM_1024 (ML-KEM-512 is not offered).
            let set = try Library.parameterSet(publicTemplate, privateTemplate, "CKP_ML_KEM_768 or CKP_ML_KEM_1024")
            guard let offered = MLKEMParameterSet(pkcs11ParameterSet: set) else { throw .attributeValueInvalid(.parameterSet) }
            spec = .mlkem(offered)
        default:
            throw .mechanismInvalid(mechanism.type)
        }
        var chosen = try StoredAttributes.collect(publicTemplate, privateTemplate)
        chosen[.private] = try privateTemplate.bool(.private)  // the private half's; the public half is never private
        chosen[StoredAttributes.generatedAsPair] = true
        let flags = StoredAttributes.encode(chosen)
        let name = try manage(h, t) { () throws(TokenError) in
            try named(p, prefix: "key") { (name: String, label: String?) throws(TokenError) in
                try service.generateKey(adminPassword: admin, name: name, spec, id: id, label: label, attributes: flags)
            }
        }
        placed(p, h, name: name, type: .asymmetric)
        return (try handle(t, identity: "pub/\(name)"), try handle(t, identity: "priv/\(name)"))
    }

    /// CKA_PARAMETER_SET of a post-quantum key pair, from either template (required).
    static func parameterSet(_ publicTemplate: Template, _ privateTemplate: Template, _ offered: String) throws(TokenError) -> UInt {
        let fromPublic = try publicTemplate.ulong(.parameterSet)
        let fromPrivate = try privateTemplate.ulong(.parameterSet)
        guard let set = fromPublic ?? fromPrivate else { throw .templateIncomplete("CKA_PARAMETER_SET (\(offered))") }
        return set
    }

    /// C_GenerateKey: CKM_AES_KEY_GEN or CKM_GENERIC_SECRET_KEY_GEN (CKA_VALUE_LEN bytes).
    public func generateKey(_ h: UInt, mechanism: Mechanism, template: Template) throws(TokenError) -> ObjectHandle {
        if mechanism.type == .dsaParameterGen { return try generateDSAParameters(h, template: template) }
        let p = try placement(h, template, prefix: "secret")
        let (t, service, admin) = (p.token, p.service, p.admin)
        let asked = try template.ulong(.valueLen)
        var length: UInt = 0
        var twoKey = false
        let (type, cipher, prefix): (KeyType, String?, String)
        switch mechanism.type {
        case .des2KeyGen, .des3KeyGen:
            // Fixed sizes (CKA_VALUE_LEN does not apply); a two-key key is generated as 16 bytes
            // and kept as K1 K2 K1.
            twoKey = mechanism.type == .des2KeyGen
            length = twoKey ? 16 : 24
            guard try t.features()?.contains(.generateKey) ?? false else { throw .mechanismInvalid(mechanism.type) }
            (type, cipher, prefix) = (.symmetric, "3DES", "sym")
        case .aesKeyGen:
            guard let asked else { throw .templateIncomplete("CKA_VALUE_LEN") }
            length = asked
            guard [16, 24, 32].contains(length) else { throw .attributeValueInvalid(.valueLen) }
            (type, cipher, prefix) = (.symmetric, "AES", "sym")
        case .genericSecretKeyGen:
            guard let asked else { throw .templateIncomplete("CKA_VALUE_LEN") }
            length = asked
            (type, cipher, prefix) = (.mac, nil, "mac")
        default:
            throw .mechanismInvalid(mechanism.type)
        }
        try Library.checkOriginalAPIKeeps(t, kind: cipher == nil ? .mac : .symmetric, id: Library.id(template), key: [template])
        let flags = try StoredAttributes.secretKey(template, aes: cipher == "AES", extra: twoKey ? [StoredAttributes.twoKeyDES: true] : [:])
        let name = try manage(h, t) { () throws(TokenError) in
            try named(p, prefix: "secret") { (name: String, label: String?) throws(TokenError) in
                let bytes = Int(clamping: length)
                try service.generateKey(
                    adminPassword: admin, name: name, cipher.map { .secret(cipher: $0, bytes: bytes) } ?? .mac(bytes: bytes),
                    id: Library.id(template), label: label, attributes: flags)
            }
        }
        placed(p, h, name: name, type: type)
        return try handle(t, identity: "\(prefix)/\(name)")
    }

    /// CKM_DSA_PARAMETER_GEN: public domain parameters, made here with OpenSSL (no key material),
    /// kept as a session object of this process (CKO_DOMAIN_PARAMETERS).
    func generateDSAParameters(_ h: UInt, template: Template) throws(TokenError) -> ObjectHandle {
        let (_, t) = try session(h)
        guard try t.features()?.contains(.dsa) ?? false else { throw .mechanismInvalid(.dsaParameterGen) }
        guard let bits = try template.ulong(.primeBits) else { throw .templateIncomplete("CKA_PRIME_BITS") }
        let d: (p: [UInt8], q: [UInt8], g: [UInt8])
        do { d = try PrivateKey.generateDSAParameters(bits: Int(clamping: bits)) } catch { throw .attributeValueInvalid(.primeBits) }
        let B = AttributeValue.bool, U = AttributeValue.ulong
        var a: [AttributeType: [UInt8]] = [
            .class: U(ObjectClass.domainParameters.rawValue), .keyType: U(KeyKind.dsa.rawValue), .token: B(false), .private: B(false),
            .modifiable: B(true), .copyable: B(true), .destroyable: B(true), .local: B(true),
            .label: Array((template.string(.label) ?? "").utf8),
            .prime: d.p, .subprime: d.q, .base: d.g, .primeBits: U(bits),
        ]
        for (type, value) in template.attributes where a[type] == nil { a[type] = value }
        let o = TokenObject(
            identity: "local/\(UInt.random(in: 1...UInt.max))", objectClass: .domainParameters, key: nil, uid: nil, publicKey: nil,
            attributes: a, sensitive: [])
        return t.addLocal(o, session: h)
    }

    /// C_CreateObject: certificates, data objects and public keys are stored; private keys (RSA
    /// from CRT components, EC from CKA_EC_PARAMS + CKA_VALUE) and secret keys are injected.
    public func createObject(_ h: UInt, template: Template) throws(TokenError) -> ObjectHandle {
        guard let cls = try template.ulong(.class).map({ ObjectClass(rawValue: $0) }) else { throw .templateIncomplete("CKA_CLASS") }
        let label = Library.label(template)
        let id = template[.id] ?? []
        let onToken = try template.bool(.token) ?? false
        if !onToken && (cls == .certificate || cls == .data || cls == .publicKey) {
            // No secret material: a session object kept in this process (PKCS#11 §4.4: CKA_TOKEN
            // defaults to FALSE), destroyed with its session.
            let (_, t) = try session(h)
            let serial = UInt.random(in: 1...UInt.max)
            if cls == .certificate, let ct = try template.ulong(.certificateType), ct != 0 {
                throw .templateInconsistent("only X.509 certificates")
            }
            let o =
                cls == .publicKey
                ? try TokenObject.localPublicKey(template, serial: serial)
                : try TokenObject.localStored(template, certificate: cls == .certificate, serial: serial)
            return t.addLocal(o, session: h)
        }
        switch cls {
        case .certificate, .data:
            let (t, service, admin) = try managementContext(h)
            guard try t.hasExtensions() else {
                throw .templateInconsistent(
                    "this key service (the original VSSM API) stores no certificates or data objects; with CKA_TOKEN=FALSE this process keeps one"
                )
            }
            guard let value = template[.value] else { throw .templateIncomplete("CKA_VALUE") }
            if cls == .certificate, let ct = try template.ulong(.certificateType), ct != 0 {
                throw .templateInconsistent("only X.509 certificates")
            }
            let uid = try manage(h, t) { () throws(TokenError) in
                try service.createObject(
                    adminPassword: admin, objectClass: cls == .certificate ? "CERTIFICATE" : "DATA",
                    label: label ?? "", id: id, value: value, application: template.string(.application) ?? "")
            }
            return try handle(t, identity: "obj/\(uid)")
        case .secretKey:
            guard let value = template[.value] else { throw .templateIncomplete("CKA_VALUE") }
            let kind = try template.ulong(.keyType).map { KeyKind(rawValue: $0) } ?? .genericSecret
            let p = try placement(h, template, prefix: "secret")
            let (t, service, admin) = (p.token, p.service, p.admin)
            let (type, cipher, prefix): (KeyType, String?, String) =
                switch kind {
                case .aes: (.symmetric, "AES", "sym")
                case .des3: (.symmetric, "3DES", "sym")
                case .genericSecret: (.mac, nil, "mac")
                default: throw .templateInconsistent("unsupported secret key type")
                }
            try Library.checkOriginalAPIKeeps(t, kind: kind == .genericSecret ? .mac : .symmetric, id: id, key: [template])
            let flags = try StoredAttributes.secretKey(template, aes: kind == .aes)
            let name = try manage(h, t) { () throws(TokenError) in
                try named(p, prefix: "secret") { (name: String, label: String?) throws(TokenError) in
                    try service.injectKey(
                        adminPassword: admin, name: name, type: type, key: value, id: id.isEmpty ? nil : id, cipher: cipher,
                        label: label, attributes: flags)
                }
            }
            placed(p, h, name: name, type: type)
            return try handle(t, identity: "\(prefix)/\(name)")
        case .privateKey:
            let p = try placement(h, template, prefix: "key")
            let (t, service, admin) = (p.token, p.service, p.admin)
            var pkcs8 = try Library.pkcs8(from: template)
            defer { zeroize(&pkcs8) }
            let keyKind = try template.ulong(.keyType).map { KeyKind(rawValue: $0) }
            try Library.checkOriginalAPIKeeps(
                t, kind: keyKind == .ec ? .ec : keyKind == .ecEdwards ? .eddsa : .rsa, id: id, key: [template])
            let flags = StoredAttributes.encode(try StoredAttributes.collect(template))
            let name = try manage(h, t) { () throws(TokenError) in
                try named(p, prefix: "key") { (name: String, label: String?) throws(TokenError) in
                    try service.injectKey(
                        adminPassword: admin, name: name, type: .asymmetric, key: pkcs8, id: id.isEmpty ? nil : id, cipher: nil,
                        label: label, attributes: flags)
                }
            }
            placed(p, h, name: name, type: .asymmetric)
            return try handle(t, identity: "priv/\(name)")
        case .publicKey:
            // A public key stored on its own (CKA_TOKEN=TRUE): a SubjectPublicKeyInfo object in the
            // service, listed to every process (a key service of this version).
            let (t, service, admin) = try managementContext(h)
            guard try t.features()?.contains(.publicKeyObjects) ?? false else {
                throw .templateInconsistent(
                    "this key service keeps public keys only as the half of a key pair; with CKA_TOKEN=FALSE this process keeps one")
            }
            let local = try TokenObject.localPublicKey(template, serial: 0)
            guard let spki = local.key?.publicKey else { throw .attributeValueInvalid(.keyType) }
            let uid = try manage(h, t) { () throws(TokenError) in
                try service.createObject(
                    adminPassword: admin, objectClass: "PUBLIC_KEY", label: label ?? "", id: id, value: spki, application: "")
            }
            return try handle(t, identity: "obj/\(uid)")
        default:
            throw .attributeValueInvalid(.class)
        }
    }

    /// C_CopyObject (PKCS#11 2.40 §5.7). A key is copied inside the service — session to token
    /// (as Java's keystore stores a generated key), token to session, or within either — so its
    /// bytes never leave; the copy takes the template's CKA_TOKEN, CKA_LABEL, CKA_ID and flags,
    /// else the source's. A process-local object (public key, certificate, data) is re-created
    /// from its attributes with the template's changes (stored in the service for CKA_TOKEN=TRUE).
    public func copyObject(_ h: UInt, object: ObjectHandle, template: Template) throws(TokenError) -> ObjectHandle {
        let (_, t) = try session(h)
        let o = try t.object(object)
        if o.attributes[.copyable] == AttributeValue.bool(false) { throw .actionProhibited }
        let basic: [AttributeType] = [.token, .label, .id, .private, .modifiable, .copyable, .destroyable, .application]
        let changeable = Set(basic + StoredAttributes.all)
        for (type, _) in template.attributes where !changeable.contains(type) {
            if o.attributes[type] != nil && o.attributes[type] != template[type] { throw .attributeReadOnly(type) }
        }
        var merged = template.attributes
        func keep(_ type: AttributeType) { if template[type] == nil, let v = o.attributes[type] { merged.append((type, v)) } }
        keep(.token)
        keep(.label)
        keep(.id)
        let full = Template(merged)
        guard let key = o.key, !t.isLocal(object), o.uid == nil else {
            // Re-create a local object from all its attributes (the template's win).
            var all = merged
            for (type, v) in o.attributes where full[type] == nil && type != .publicKeyInfo && type != .allowedMechanisms {
                all.append((type, v))
            }
            return try createObject(h, template: Template(all))
        }
        let p = try placement(h, full, prefix: "key")
        var flags = StoredAttributes.decode(key.attributes)
        for (type, value) in try StoredAttributes.collect(template) { flags[type] = value }
        flags[StoredAttributes.generatedAsPair] = false  // a copy is the one object copied (written: nil keeps the source's)
        let type = key.serviceType
        let newName = try manage(h, p.token) { () throws(TokenError) in
            try named(p, prefix: "key") { (name: String, label: String?) throws(TokenError) in
                try p.service.copyKey(
                    adminPassword: p.admin, name: key.name, type: type, newName: name, id: full[.id],
                    label: label, attributes: StoredAttributes.encode(flags))
            }
        }
        placed(p, h, name: newName, type: type)
        let prefix =
            switch o.objectClass {
            case .privateKey: "priv"
            case .publicKey: "pub"
            default: key.kind == .mac ? "mac" : "sym"
            }
        return try handle(p.token, identity: "\(prefix)/\(newName)")
    }

    static func pkcs8(from t: Template) throws(TokenError) -> [UInt8] {
        switch try t.ulong(.keyType).map({ KeyKind(rawValue: $0) }) {
        case .rsa?:
            func need(_ a: AttributeType) throws(TokenError) -> [UInt8] {
                guard let v = t[a], !v.isEmpty else { throw .templateIncomplete("RSA private key needs all CRT components") }
                return v
            }
            return DER.rsaPKCS8(
                n: try need(.modulus), e: try need(.publicExponent), d: try need(.privateExponent),
                p: try need(.prime1), q: try need(.prime2), dp: try need(.exponent1), dq: try need(.exponent2),
                qinv: try need(.coefficient))
        case .ec?:
            guard let params = t[.ecParams], let curve = NamedCurve.allCases.first(where: { $0.oidDER == params }) else {
                throw .templateIncomplete("CKA_EC_PARAMS (a named curve)")
            }
            guard let scalar = t[.value], !scalar.isEmpty else { throw .templateIncomplete("CKA_VALUE") }
            return DER.ecPKCS8(curveOID: params, scalar: scalar, fieldSize: (curve.bits + 7) / 8)
        case .ecEdwards?:
            // CKA_EC_PARAMS: the RFC 8410 OID; CKA_VALUE: the 32- or 57-byte private key.
            guard let params = t[.ecParams], params == [0x06, 0x03, 0x2B, 0x65, 0x70] || params == [0x06, 0x03, 0x2B, 0x65, 0x71] else {
                throw .templateIncomplete("CKA_EC_PARAMS (the Ed25519 or Ed448 OID)")
            }
            guard let key = t[.value], key.count == (params.last == 0x70 ? 32 : 57) else { throw .templateIncomplete("CKA_VALUE") }
            return DER.edwardsPKCS8(curveOID: params, key: key)
        default:
            throw .templateIncomplete("CKA_KEY_TYPE (CKK_RSA or CKK_EC)")
        }
    }

    /// C_DestroyObject: a key object destroys the key in the service (both halves of a pair).
    public func destroyObject(_ h: UInt, object: ObjectHandle) throws(TokenError) {
        let (_, owning) = try session(h)
        let o = try owning.object(object)
        if o.attributes[.destroyable] == AttributeValue.bool(false) { throw .actionProhibited }
        if owning.isLocal(object) {
            _ = owning.removeLocal(object)
            return
        }
        if let key = o.key, o.uid == nil, o.objectClass == .publicKey, key.kind == .rsa || key.kind == .ec || key.kind == .eddsa {
            // The public half of a pair: only that object goes (the private key stays usable);
            // recorded with the key so every process sees the same.
            var flags = StoredAttributes.decode(key.attributes)
            flags[StoredAttributes.publicHalfDestroyed] = true
            let (_, service, admin) = try keyContext(h, owning, key)
            try manage(h, owning) { () throws(TokenError) in
                try service.setKeyID(
                    adminPassword: admin, name: key.name, type: key.serviceType, id: key.id, label: nil,
                    attributes: StoredAttributes.encode(flags))
            }
            try owning.refreshIfNeeded(force: true)
            return
        }
        if let key = o.key, key.ephemeral {
            // A session key: any session of this application may destroy it; no admin password.
            let publicHalf = o.objectClass == .privateKey ? keptPublicHalf(owning, key) : nil
            try manage(h, owning) { () throws(TokenError) in
                try owning.service().deleteKey(adminPassword: "", name: key.name, type: key.serviceType)
            }
            if let (handle, pub) = publicHalf {
                // Its public half stays, under the same handle, in this process (as session
                // public keys do): the halves of a pair are objects of their own.
                owning.keepLocal(
                    handle,
                    TokenObject(
                        identity: "local/pub/\(key.name)", objectClass: .publicKey, key: key, uid: nil, publicKey: pub.publicKey,
                        attributes: pub.attributes, sensitive: []), session: owning.session(ofKey: key.name) ?? h)
            }
            owning.forgetSessionKey(key.name)
            try owning.refreshIfNeeded(force: true)
            return
        }
        let (t, service, admin) = try managementContext(h)
        try manage(h, t) { () throws(TokenError) in
            if let uid = o.uid {
                try service.deleteObject(adminPassword: admin, uid: uid)
            } else if let key = o.key {
                // A private key's public half stays, in the service, as a public key object of its
                // own (CA software keeps a retired key's public key to verify what it signed).
                if o.objectClass == .privateKey, let (handle, pub) = keptPublicHalf(t, key),
                    try t.features()?.contains(.publicKeyObjects) ?? false
                {
                    let uid = try service.createObject(
                        adminPassword: admin, objectClass: "PUBLIC_KEY",
                        label: pub.attributes[.label].map { String(decoding: $0, as: UTF8.self) } ?? "",
                        id: pub.attributes[.id] ?? [], value: key.publicKey, application: "")
                    t.alias(identity: "obj/\(uid)", to: handle)
                }
                try service.deleteKey(adminPassword: admin, name: key.name, type: key.serviceType)
            }
        }
        try t.refreshIfNeeded(force: true)
    }

    /// The public half of a key pair made by C_GenerateKeyPair (both halves objects), when this
    /// process has it as an object (not destroyed on its own before): its handle and object.
    func keptPublicHalf(_ t: Token, _ key: ServiceKey) -> (ObjectHandle, TokenObject)? {
        guard [.rsa, .ec, .eddsa, .dsa].contains(key.kind),
            StoredAttributes.decode(key.attributes)[StoredAttributes.generatedAsPair] == true,
            let handle = t.existingHandle(identity: "pub/\(key.name)"), let pub = try? t.object(handle)
        else { return nil }
        return (handle, pub)
    }

    /// C_SetAttributeValue: CKA_ID of keys; CKA_LABEL and CKA_ID of stored objects. Everything else is read-only.
    public func setAttributes(_ h: UInt, object: ObjectHandle, template: Template) throws(TokenError) {
        let (_, owning) = try session(h)
        let o = try owning.object(object)
        if owning.isLocal(object) {
            // A process-local session object: CKA_LABEL, CKA_ID and the flags the spec lets change.
            var a = o.attributes
            for (type, value) in template.attributes {
                switch type {
                case .label, .id, .verify, .encrypt, .wrap, .derive, .trusted, .application, .subject, .startDate, .endDate: a[type] = value
                default:
                    if a[type] == value { continue }
                    throw a[type] == nil ? .attributeTypeInvalid(type) : .attributeReadOnly(type)
                }
            }
            owning.replaceLocal(
                object,
                TokenObject(
                    identity: o.identity, objectClass: o.objectClass, key: o.key, uid: o.uid,
                    publicKey: o.publicKey, attributes: a, sensitive: o.sensitive))
            return
        }
        let (t, service, admin) = if let key = o.key { try keyContext(h, owning, key) } else { try managementContext(h) }
        if o.attributes[.modifiable] == AttributeValue.bool(false) { throw .attributeReadOnly(template.attributes.first?.0 ?? .label) }
        // Usage flags a key keeps in the service (PKCS#11 §4.9: settable after creation).
        var flags = StoredAttributes.decode(o.key?.attributes)
        var flagsChanged = false
        for (type, value) in template.attributes {
            switch type {
            case .id: continue
            case .label where o.uid != nil || o.key != nil: continue
            case let f where o.key != nil && StoredAttributes.all.contains(f) && f != .alwaysAuthenticate:
                guard let b = AttributeValue.decodeBool(value) else { throw .attributeValueInvalid(f) }
                // PKCS#11 §4.9: CKA_SENSITIVE only turns TRUE, CKA_EXTRACTABLE only FALSE; CKA_PRIVATE stays.
                let current = o.attributes[f].flatMap(AttributeValue.decodeBool)
                if (f == .sensitive && current == true && !b) || (f == .extractable && current == false && b)
                    || (f == .private && current != b)
                {
                    throw .attributeReadOnly(f)
                }
                flags[f] = b
                flagsChanged = true
                continue
            default:
                if o.attributes[type] == value { continue }  // setting the current value is harmless
                throw o.attributes[type] == nil ? .attributeTypeInvalid(type) : .attributeReadOnly(type)
            }
        }
        try manage(h, t) { () throws(TokenError) in
            if let uid = o.uid {
                try service.updateObject(adminPassword: admin, uid: uid, label: template.string(.label), id: template[.id])
            } else if let key = o.key, template[.id] != nil || template[.label] != nil || flagsChanged {
                try service.setKeyID(
                    adminPassword: admin, name: key.name, type: key.serviceType, id: template[.id] ?? key.id,
                    label: template.string(.label),
                    attributes: flagsChanged ? StoredAttributes.encode(flags) ?? [] : nil)
            }
        }
        // Reads right after a change see it (the index is rebuilt from the service).
        try t.refreshIfNeeded(force: true)
    }
}
