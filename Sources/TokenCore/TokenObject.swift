public import VSSMCrypto

public struct ObjectHandle: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }
}

/// One PKCS#11 object backed by something in the key service. Immutable; rebuilt on refresh.
public struct TokenObject: Sendable {
    /// Identity that survives refreshes (and maps to the same handle for the process lifetime).
    public let identity: String
    public let objectClass: ObjectClass
    /// The service key behind it (nil for stored objects).
    public let key: ServiceKey?
    public let uid: String?
    /// The parsed public key (asymmetric keys): parsed once per refresh, not per operation.
    public let publicKey: PublicKey?
    public let attributes: [AttributeType: [UInt8]]
    /// Attribute types that exist but whose value is secret (CKR_ATTRIBUTE_SENSITIVE).
    public let sensitive: Set<AttributeType>

    public var label: String { attributes[.label].map { String(decoding: $0, as: UTF8.self) } ?? "" }
    public var id: [UInt8] { attributes[.id] ?? [] }
    public var keyKind: KeyKind? { attributes[.keyType].flatMap(AttributeValue.decodeULong).map { KeyKind(rawValue: $0) } }

    /// True when every attribute of the template matches (C_FindObjectsInit semantics).
    public func matches(_ template: Template) -> Bool {
        for (t, v) in template.attributes {
            guard let mine = attributes[t], mine == v else { return false }
        }
        return true
    }

    /// The usage flags a key shows when nothing was stored with it (keys from the original API,
    /// `vssm admin`): for the private half or the secret key, and for the public half.
    static func defaultFlags(_ kind: ServiceKey.Kind) -> (key: [AttributeType: Bool], publicHalf: [AttributeType: Bool]) {
        let isRSA = kind == .rsa, isMAC = kind == .mac
        let common: [AttributeType: Bool] = [
            .sensitive: true, .extractable: false, .derive: false, .unwrap: false, .alwaysAuthenticate: false,
            .wrapWithTrusted: false,
        ]
        switch kind {
        case .mlkem:
            return (
                common.merging([.sign: false, .signRecover: false, .decrypt: false, .decapsulate: true]) { a, _ in a },
                [.verify: false, .verifyRecover: false, .encrypt: false, .wrap: false, .trusted: false, .encapsulate: true]
            )
        case .rsa, .ec, .eddsa, .dsa, .mldsa:
            return (
                common.merging([.sign: true, .signRecover: false, .decrypt: isRSA]) { a, _ in a },
                [.verify: true, .verifyRecover: false, .encrypt: isRSA, .wrap: false, .trusted: false]
            )
        case .symmetric, .mac:
            return (
                common.merging([.encrypt: !isMAC, .decrypt: !isMAC, .sign: isMAC, .verify: isMAC, .wrap: false, .trusted: false]) { a, _ in
                    a
                }, [:]
            )
        }
    }

    /// The objects of one service key: private + public for asymmetric keys, one secret key otherwise.
    /// `loginRequired` sets CKA_PRIVATE on private objects. `offered`: the token's mechanisms
    /// (CKA_ALLOWED_MECHANISMS lists only those); `manageable`: the service can change and delete
    /// keys (our extensions; the original API cannot: CKA_MODIFIABLE/DESTROYABLE/COPYABLE FALSE).
    static func objects(
        for key: ServiceKey, loginRequired: Bool, offered: Set<MechanismType>? = nil, manageable: Bool = true
    ) -> [TokenObject] {
        func allowed(_ kind: ServiceKey.Kind, _ cls: ObjectClass) -> [MechanismType] {
            let all = MechanismRegistry.allowed(kind, cls, cipher: kind == .symmetric ? key.cipher : nil)
            guard let offered else { return all }
            return all.filter { offered.contains($0) }
        }
        let defaults = defaultFlags(key.kind)
        let B = AttributeValue.bool
        let U = AttributeValue.ulong
        // How the key was made decides CKA_LOCAL, CKA_KEY_GEN_MECHANISM, CKA_ALWAYS_SENSITIVE and
        // CKA_NEVER_EXTRACTABLE (PKCS#11 §4.7). Unknown origin (older stores, Go peers): not
        // claimed as local, and sensitive/never-extractable as before this was recorded.
        let generated = key.generated ?? true
        let genMechanism: UInt =
            switch key.kind {
            case .rsa: MechanismType.rsaPKCSKeyPairGen.rawValue
            case .ec: MechanismType.ecKeyPairGen.rawValue
            case .eddsa: MechanismType.ecEdwardsKeyPairGen.rawValue
            case .dsa: MechanismType.dsaKeyPairGen.rawValue
            case .mldsa: MechanismType.mlDSAKeyPairGen.rawValue
            case .mlkem: MechanismType.mlKEMKeyPairGen.rawValue
            case .symmetric: MechanismType.aesKeyGen.rawValue
            case .mac: MechanismType.genericSecretKeyGen.rawValue
            }
        var common: [AttributeType: [UInt8]] = [
            .token: B(!key.ephemeral), .label: Array((key.label ?? key.name).utf8), .modifiable: B(manageable), .copyable: B(manageable),
            .destroyable: B(manageable), .local: B(key.generated == true),
            .startDate: [], .endDate: [],
            .keyGenMechanism: U(key.generated == true ? genMechanism : UInt.max),
        ]
        switch key.kind {
        case .rsa, .ec, .eddsa, .dsa, .mldsa, .mlkem:
            // OpenSSL 3.0 reads every public key but ML-DSA's and ML-KEM's, which are read here.
            let pub = try? PublicKey(spki: key.publicKey)
            // A post-quantum key: its CKK_, CKA_PARAMETER_SET and raw public key.
            let pq: (kind: KeyKind, set: UInt, raw: [UInt8])? =
                switch key.kind {
                case .mldsa: MLDSAParameterSet.parse(spki: key.publicKey).map { (.mlDSA, $0.0.pkcs11ParameterSet, $0.1) }
                case .mlkem: MLKEMParameterSet.parse(spki: key.publicKey).map { (.mlKEM, $0.0.pkcs11ParameterSet, $0.1) }
                default: nil
                }
            guard pub != nil || pq != nil else { return [] }
            let bits = DER.subjectPublicKeyBits(spki: key.publicKey) ?? key.publicKey
            let id = key.id ?? DigestAlgorithm.sha1.hash(bits)
            common[.id] = id
            common[.subject] = []
            common[.publicKeyInfo] = key.publicKey
            var kindAttrs: [AttributeType: [UInt8]] = [:]
            if key.kind == .rsa, let pub, let rsa = pub.rsaComponents {
                kindAttrs[.keyType] = U(KeyKind.rsa.rawValue)
                kindAttrs[.modulus] = rsa.modulus
                kindAttrs[.publicExponent] = rsa.exponent
                kindAttrs[.modulusBits] = U(UInt(pub.bits))
            } else if key.kind == .ec, let params = DER.ecCurveParameters(spki: key.publicKey) ?? pub?.curve?.oidDER,
                let point = bits.first == 0x04 ? bits : pub?.ecPoint
            {
                // Taken from the SPKI bytes, not from OpenSSL's key object: in a host that set an
                // engine as default (openssl -engine, nginx ssl_engine) OpenSSL builds legacy keys
                // whose group name and point encoding (compressed) differ.
                kindAttrs[.keyType] = U(KeyKind.ec.rawValue)
                kindAttrs[.ecParams] = params
                kindAttrs[.ecPoint] = DER.octetString(point)
            } else if key.kind == .dsa, let dsa = pub?.dsaComponents {
                kindAttrs[.keyType] = U(KeyKind.dsa.rawValue)
                kindAttrs[.prime] = dsa.p
                kindAttrs[.subprime] = dsa.q
                kindAttrs[.base] = dsa.g
            } else if key.kind == .eddsa, let params = pub?.kind.edwardsOID, let point = pub?.edwardsPublicKey {
                kindAttrs[.keyType] = U(KeyKind.ecEdwards.rawValue)
                kindAttrs[.ecParams] = params
                kindAttrs[.ecPoint] = DER.octetString(point)
            } else if let pq {
                kindAttrs[.keyType] = U(pq.kind.rawValue)
                kindAttrs[.parameterSet] = U(pq.set)
            } else {
                return []
            }
            let isRSA = key.kind == .rsa
            var priv = common.merging(kindAttrs) { a, _ in a }
            priv[.class] = U(ObjectClass.privateKey.rawValue)
            priv[.private] = B(loginRequired)
            for (type, value) in defaults.key { priv[type] = B(value) }
            priv[.allowedMechanisms] = AttributeValue.ulongs(allowed(key.kind, .privateKey).map(\.rawValue))
            var pubAttrs = common.merging(kindAttrs) { a, _ in a }
            pubAttrs[.class] = U(ObjectClass.publicKey.rawValue)
            pubAttrs[.private] = B(false)
            pubAttrs[.derive] = B(false)
            for (type, value) in defaults.publicHalf { pubAttrs[type] = B(value) }
            pubAttrs[.allowedMechanisms] = AttributeValue.ulongs(allowed(key.kind, .publicKey).map(\.rawValue))
            // A DSA public key's CKA_VALUE is y (public); the private key's is secret.
            if key.kind == .dsa, let y = pub?.dsaComponents?.y { pubAttrs[.value] = y }
            // An ML-DSA public key's CKA_VALUE is the raw public key (PKCS#11 3.2).
            if let pq { pubAttrs[.value] = pq.raw }
            let chosen = StoredAttributes.decode(key.attributes)
            for (type, value) in chosen where !StoredAttributes.vendor.contains(type) {
                if StoredAttributes.privateFlags.contains(type) { priv[type] = B(value) }
                if StoredAttributes.publicFlags.contains(type) { pubAttrs[type] = B(value) }
                if StoredAttributes.objectFlags.contains(type) { priv[type] = B(value); pubAttrs[type] = B(value) }
            }
            if loginRequired { priv[.private] = B(true) }
            priv[.alwaysSensitive] = B(generated && priv[.sensitive] == B(true))
            priv[.neverExtractable] = B(generated && priv[.extractable] == B(false))
            let secretParts: Set<AttributeType> =
                isRSA
                ? [.privateExponent, .prime1, .prime2, .exponent1, .exponent2, .coefficient]
                : [.value]
            let privObject = TokenObject(
                identity: "priv/\(key.name)", objectClass: .privateKey, key: key, uid: nil, publicKey: pub, attributes: priv,
                sensitive: secretParts)
            if chosen[StoredAttributes.publicHalfDestroyed] == true { return [privObject] }
            return [
                privObject,
                TokenObject(
                    identity: "pub/\(key.name)", objectClass: .publicKey, key: key, uid: nil, publicKey: pub, attributes: pubAttrs,
                    sensitive: []),
            ]
        case .symmetric, .mac:
            var a = common
            a[.class] = U(ObjectClass.secretKey.rawValue)
            a[.id] = key.id ?? []
            a[.private] = B(loginRequired)
            a[.valueLen] = U(UInt(key.length))
            let isMAC = key.kind == .mac
            let twoKey = StoredAttributes.decode(key.attributes)[StoredAttributes.twoKeyDES] == true
            let kind: KeyKind = isMAC ? .genericSecret : key.cipher == "3DES" ? (twoKey ? .des2 : .des3) : key.cipher == "DES" ? .des : .aes
            if twoKey { a[.valueLen] = U(16) }
            a[.keyType] = U(kind.rawValue)
            for (type, value) in defaults.key { a[type] = B(value) }
            a[.allowedMechanisms] = AttributeValue.ulongs(allowed(key.kind, .secretKey).map(\.rawValue))
            for (type, value) in StoredAttributes.decode(key.attributes) where a[type] != nil || type == .derive {
                if !StoredAttributes.vendor.contains(type) { a[type] = B(value) }
            }
            if loginRequired { a[.private] = B(true) }
            a[.alwaysSensitive] = B(generated && a[.sensitive] == B(true))
            a[.neverExtractable] = B(generated && a[.extractable] == B(false))
            // A key its creator made readable: CKA_VALUE comes from the service on request.
            let readable = a[.sensitive] == B(false) && a[.extractable] == B(true)
            let prefix = isMAC ? "mac" : "sym"
            return [
                TokenObject(
                    identity: "\(prefix)/\(key.name)", objectClass: .secretKey, key: key, uid: nil, publicKey: nil, attributes: a,
                    sensitive: readable ? [] : [.value])
            ]
        }
    }

    /// A public key the application imported as a session object (C_CreateObject, CKA_TOKEN
    /// FALSE): kept in this process; verify and encrypt with it run locally.
    static func localPublicKey(_ t: Template, serial: UInt) throws(TokenError) -> TokenObject {
        let spki: [UInt8]
        let kind: ServiceKey.Kind
        switch try t.ulong(.keyType).map({ KeyKind(rawValue: $0) }) {
        case .rsa?:
            guard let n = t[.modulus], !n.isEmpty, let e = t[.publicExponent], !e.isEmpty else {
                throw .templateIncomplete("CKA_MODULUS and CKA_PUBLIC_EXPONENT")
            }
            spki = DER.rsaSPKI(n: n, e: e)
            kind = .rsa
        case .ec?:
            guard let params = t[.ecParams], NamedCurve.allCases.contains(where: { $0.oidDER == params }) else {
                throw .templateIncomplete("CKA_EC_PARAMS (a named curve)")
            }
            guard let raw = t[.ecPoint], !raw.isEmpty else { throw .templateIncomplete("CKA_EC_POINT") }
            // CKA_EC_POINT is a DER OCTET STRING; some applications pass the bare point.
            let point = DER.unwrapOctetString(raw) ?? raw
            spki = DER.ecSPKI(curveOID: params, point: point)
            kind = .ec
        case .dsa?:
            guard let p = t[.prime], let q = t[.subprime], let g = t[.base], let y = t[.value], !p.isEmpty, !q.isEmpty, !g.isEmpty,
                !y.isEmpty
            else {
                throw .templateIncomplete("CKA_PRIME, CKA_SUBPRIME, CKA_BASE and CKA_VALUE")
            }
            spki = DER.dsaSPKI(p: p, q: q, g: g, y: y)
            kind = .dsa
        default:
            throw .templateIncomplete("CKA_KEY_TYPE (CKK_RSA, CKK_EC or CKK_DSA)")
        }
        guard (try? PublicKey(spki: spki)) != nil else { throw .attributeValueInvalid(kind == .rsa ? .modulus : .ecPoint) }
        let key = ServiceKey(
            name: "local/\(serial)", kind: kind, publicKey: spki, id: t[.id] ?? [], ephemeral: true, label: t.string(.label) ?? "")
        guard var pub = objects(for: key, loginRequired: false).first(where: { $0.objectClass == .publicKey }) else {
            throw .attributeValueInvalid(.keyType)
        }
        var a = pub.attributes
        for flag in [AttributeType.verify, .encrypt, .wrap, .verifyRecover, .derive, .private] { if let v = t[flag] { a[flag] = v } }
        pub = TokenObject(
            identity: "local/\(serial)", objectClass: .publicKey, key: key, uid: nil, publicKey: pub.publicKey, attributes: a, sensitive: []
        )
        return pub
    }

    /// A key pair's public half kept in the service on its own (its private key was destroyed): the
    /// public key object it was, now a stored object (its uid; destroying it deletes the object).
    static func storedPublicKey(_ o: ServiceObject) -> TokenObject? {
        guard let parsed = try? PublicKey(spki: o.value) else { return nil }
        let key = ServiceKey(name: "obj/\(o.uid)", kind: ServiceKey.Kind(parsed.kind), publicKey: o.value, id: o.id, label: o.label)
        guard let pub = objects(for: key, loginRequired: false).first(where: { $0.objectClass == .publicKey }) else { return nil }
        var a = pub.attributes
        a[.token] = AttributeValue.bool(true)
        a[.label] = Array(o.label.utf8)
        a[.id] = o.id
        a[.local] = AttributeValue.bool(false)
        return TokenObject(
            identity: "obj/\(o.uid)", objectClass: .publicKey, key: key, uid: o.uid, publicKey: pub.publicKey, attributes: a, sensitive: [])
    }

    /// A certificate or data object the application created as a session object (kept in this process).
    static func localStored(_ t: Template, certificate: Bool, serial: UInt) throws(TokenError) -> TokenObject {
        // A data object's CKA_VALUE defaults to empty (PKCS#11 §4.5); a certificate needs one.
        guard let value = t[.value] ?? (certificate ? nil : []) else { throw .templateIncomplete("CKA_VALUE") }
        let o = ServiceObject(
            uid: "local-\(serial)", isCertificate: certificate, label: t.string(.label) ?? "", id: t[.id] ?? [],
            value: value, application: t.string(.application) ?? "")
        let base = object(for: o)
        var a = base.attributes
        a[.token] = AttributeValue.bool(false)
        // What the application set that we do not derive (CKA_TRUSTED, CKA_CERTIFICATE_CATEGORY, hashes, CKA_OBJECT_ID…) is kept as given.
        for (type, v) in t.attributes
        where a[type] == nil || [.trusted, .certificateCategory, .objectID, .subject, .issuer, .serialNumber, .private].contains(type) {
            a[type] = v
        }
        return TokenObject(
            identity: "local/\(serial)", objectClass: base.objectClass, key: nil, uid: nil, publicKey: nil, attributes: a, sensitive: [])
    }

    /// A key's attestation statement: a certificate object with the key's CKA_ID, labelled
    /// `attestation:<label>`, made by the service (neither changed nor destroyed here).
    static func attestation(for key: ServiceKey, statement: [UInt8]) -> TokenObject {
        let bits = DER.subjectPublicKeyBits(spki: key.publicKey) ?? key.publicKey
        let o = object(
            for: ServiceObject(
                uid: "attest/\(key.name)", isCertificate: true, label: "attestation:" + (key.label ?? key.name),
                id: key.id ?? DigestAlgorithm.sha1.hash(bits), value: statement, application: ""))
        var a = o.attributes
        for flag in [AttributeType.modifiable, .copyable, .destroyable] { a[flag] = AttributeValue.bool(false) }
        return TokenObject(
            identity: "attest/\(key.name)", objectClass: .certificate, key: nil, uid: nil, publicKey: nil, attributes: a, sensitive: [])
    }

    static func object(for o: ServiceObject) -> TokenObject {
        if o.isPublicKey, let pub = storedPublicKey(o) { return pub }
        let B = AttributeValue.bool
        let U = AttributeValue.ulong
        var a: [AttributeType: [UInt8]] = [
            .token: B(true), .private: B(false), .modifiable: B(true), .copyable: B(true), .destroyable: B(true),
            .label: Array(o.label.utf8), .value: o.value,
        ]
        if o.isCertificate {
            a[.class] = U(ObjectClass.certificate.rawValue)
            a[.certificateType] = U(0)  // CKC_X_509
            a[.certificateCategory] = U(0)
            a[.trusted] = B(false)
            a[.id] = o.id
            a[.checkValue] = []
            if let f = DER.certificateFields(o.value) {
                a[.subject] = f.subject
                a[.issuer] = f.issuer
                a[.serialNumber] = f.serial
                a[.publicKeyInfo] = f.spki
            }
            a[.startDate] = []
            a[.endDate] = []
            return TokenObject(
                identity: "obj/\(o.uid)", objectClass: .certificate, key: nil, uid: o.uid, publicKey: nil, attributes: a, sensitive: [])
        }
        a[.class] = U(ObjectClass.data.rawValue)
        a[.application] = Array(o.application.utf8)
        a[.objectID] = []
        return TokenObject(identity: "obj/\(o.uid)", objectClass: .data, key: nil, uid: o.uid, publicKey: nil, attributes: a, sensitive: [])
    }
}

extension AttributeType {
    public static let checkValue = AttributeType(0x90)
}
