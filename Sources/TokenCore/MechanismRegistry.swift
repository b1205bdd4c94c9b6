import VSSMWire
/// What a mechanism does: the operation code switches on this, never on mechanism numbers.
enum MechanismFamily: Sendable, Equatable {
    /// CKM_RSA_PKCS (hash nil: the caller's DigestInfo or raw data) and CKM_SHA*_RSA_PKCS.
    case rsaPKCS1(HashAlgorithm?)
    case rsaPSS(HashAlgorithm?)
    /// CKM_RSA_X_509.
    case rsaRaw
    case rsaOAEP
    case ecdsa(HashAlgorithm?)
    case dsa(HashAlgorithm?)
    /// PureEdDSA over the whole message.
    case eddsa
    /// Pure ML-DSA over the whole message (PKCS#11 3.2 CKM_ML_DSA).
    case mldsa
    /// Key encapsulation (PKCS#11 3.2 CKM_ML_KEM).
    case kem
    case hmac(HashAlgorithm)
    /// AES-MAC (8 bytes) and AES-CMAC (16 bytes).
    case blockMAC(length: Int, cmac: Bool)
    case blockCipher
    case digest(HashAlgorithm)
    case keyGeneration
    case derive
    case wrap
}

/// One mechanism: everything the token says and does about it. C_GetMechanismList/Info,
/// CKA_ALLOWED_MECHANISMS, the service features it needs and the operation family all come from
/// here; adding a mechanism is one entry plus its operation (see `MechanismFamily`).
struct MechanismEntry: Sendable {
    let type: MechanismType
    let family: MechanismFamily
    let minKeySize: UInt
    let maxKeySize: UInt
    /// CKF_* flags against the original API (nil: not offered there).
    let baseFlags: UInt?
    /// CKF_* flags when the service has `feature` (nil: as baseFlags).
    let featureFlags: UInt?
    /// The service capability (`ext/capabilities` features) this mechanism needs beyond the
    /// original API.
    let feature: Feature?
    /// Keys whose CKA_ALLOWED_MECHANISMS list it (nil class: every object of that kind).
    let keys: [(ServiceKey.Kind, ObjectClass?)]
    /// For secret keys: the block cipher the key must be ("AES", "3DES"); nil: any.
    var cipher: String? = nil
}

enum MechanismRegistry {
    static let signVerify = MechanismInfo.sign | MechanismInfo.verify
    static let encDec = MechanismInfo.encrypt | MechanismInfo.decrypt
    static let wrapping = MechanismInfo.wrap | MechanismInfo.unwrap
    static let ecFlags = MechanismInfo.ecFp | MechanismInfo.ecNamedCurve | MechanismInfo.ecUncompress
    static let rsaKeys: [(ServiceKey.Kind, ObjectClass?)] = [(.rsa, nil)]
    static let ecKeys: [(ServiceKey.Kind, ObjectClass?)] = [(.ec, nil)]
    static let aesKeys: [(ServiceKey.Kind, ObjectClass?)] = [(.symmetric, nil)]
    static let secretKeys: [(ServiceKey.Kind, ObjectClass?)] = [(.symmetric, nil), (.mac, nil)]

    static func rsa(_ t: MechanismType, _ f: MechanismFamily, base: UInt?, feature: Feature? = nil, ext: UInt? = nil) -> MechanismEntry {
        MechanismEntry(
            type: t, family: f, minKeySize: 2048, maxKeySize: 8192, baseFlags: base, featureFlags: ext, feature: feature, keys: rsaKeys)
    }

    static func ec(_ t: MechanismType, _ hash: HashAlgorithm?) -> MechanismEntry {
        MechanismEntry(
            type: t, family: .ecdsa(hash), minKeySize: 192, maxKeySize: 521, baseFlags: signVerify | ecFlags, featureFlags: nil,
            feature: nil, keys: ecKeys)
    }

    static func aes(_ t: MechanismType, _ f: MechanismFamily, base: UInt?, feature: Feature?, ext: UInt? = nil) -> MechanismEntry {
        MechanismEntry(
            type: t, family: f, minKeySize: 16, maxKeySize: 32, baseFlags: base, featureFlags: ext, feature: feature, keys: aesKeys,
            cipher: "AES")
    }

    static func des3(_ t: MechanismType, _ f: MechanismFamily, base: UInt?, feature: Feature?, ext: UInt? = nil) -> MechanismEntry {
        MechanismEntry(
            type: t, family: f, minKeySize: 16, maxKeySize: 24, baseFlags: base, featureFlags: ext, feature: feature, keys: aesKeys,
            cipher: "3DES")
    }

    static func derive(
        _ t: MechanismType, keys: [(ServiceKey.Kind, ObjectClass?)], min: UInt = 1, max: UInt = 1024, extra: UInt = 0,
        cipher: String? = nil
    ) -> MechanismEntry {
        MechanismEntry(
            type: t, family: .derive, minKeySize: min, maxKeySize: max, baseFlags: nil, featureFlags: MechanismInfo.derive | extra,
            feature: .derive, keys: keys, cipher: cipher)
    }

    static func local(_ t: MechanismType, _ f: MechanismFamily, min: UInt, max: UInt, flags: UInt) -> MechanismEntry {
        MechanismEntry(type: t, family: f, minKeySize: min, maxKeySize: max, baseFlags: flags, featureFlags: nil, feature: nil, keys: [])
    }

    static func dsa(_ t: MechanismType, _ hash: HashAlgorithm?) -> MechanismEntry {
        MechanismEntry(
            type: t, family: .dsa(hash), minKeySize: 1024, maxKeySize: 3072, baseFlags: nil, featureFlags: signVerify, feature: .dsa,
            keys: [(.dsa, nil)])
    }

    static let all: [MechanismEntry] = fixed + HashAlgorithm.allCases.flatMap(hashed)

    /// The mechanisms that are not one per hash.
    static let fixed: [MechanismEntry] = [
        dsa(.dsa, nil),
        rsa(.rsaX509, .rsaRaw, base: nil, feature: .rsaRaw, ext: signVerify | encDec),
        rsa(.rsaPKCS, .rsaPKCS1(nil), base: signVerify | encDec, feature: .wrap, ext: signVerify | encDec | wrapping),
        rsa(.rsaPKCSPSS, .rsaPSS(nil), base: nil, feature: .signPSS, ext: signVerify),
        rsa(.rsaPKCSOAEP, .rsaOAEP, base: encDec, feature: .wrap, ext: encDec | wrapping),
        ec(.ecdsa, nil),
        derive(.ecdh1Derive, keys: [(.ec, .privateKey)], min: 192, max: 521, extra: ecFlags),
        MechanismEntry(
            type: .dsaKeyPairGen, family: .keyGeneration, minKeySize: 1024, maxKeySize: 3072, baseFlags: nil,
            featureFlags: MechanismInfo.generateKeyPair, feature: .dsa, keys: []),
        // Domain parameters are public: generated in this process (no key material involved).
        MechanismEntry(
            type: .dsaParameterGen, family: .keyGeneration, minKeySize: 1024, maxKeySize: 3072, baseFlags: nil,
            featureFlags: MechanismInfo.generate, feature: .dsa, keys: []),
        MechanismEntry(
            type: .eddsa, family: .eddsa, minKeySize: 255, maxKeySize: 448, baseFlags: nil, featureFlags: signVerify,
            feature: .eddsa, keys: [(.eddsa, nil)]),
        MechanismEntry(
            type: .ecEdwardsKeyPairGen, family: .keyGeneration, minKeySize: 255, maxKeySize: 448, baseFlags: nil,
            featureFlags: MechanismInfo.generateKeyPair, feature: .eddsa, keys: []),
        // ML-DSA-65 and ML-DSA-87; the key sizes are the CKP_ parameter sets offered.
        MechanismEntry(
            type: .mlDSA, family: .mldsa, minKeySize: 2, maxKeySize: 3, baseFlags: nil, featureFlags: signVerify, feature: .mlDSA,
            keys: [(.mldsa, nil)]),
        MechanismEntry(
            type: .mlDSAKeyPairGen, family: .keyGeneration, minKeySize: 2, maxKeySize: 3, baseFlags: nil,
            featureFlags: MechanismInfo.generateKeyPair, feature: .mlDSA, keys: []),
        // ML-KEM-768 and ML-KEM-1024 (PKCS#11 3.2 C_EncapsulateKey / C_DecapsulateKey).
        MechanismEntry(
            type: .mlKEM, family: .kem, minKeySize: 2, maxKeySize: 3, baseFlags: nil,
            featureFlags: MechanismInfo.encapsulate | MechanismInfo.decapsulate, feature: .mlKEM, keys: [(.mlkem, nil)]),
        MechanismEntry(
            type: .mlKEMKeyPairGen, family: .keyGeneration, minKeySize: 2, maxKeySize: 3, baseFlags: nil,
            featureFlags: MechanismInfo.generateKeyPair, feature: .mlKEM, keys: []),
        MechanismEntry(
            type: .rsaPKCSKeyPairGen, family: .keyGeneration, minKeySize: 2048, maxKeySize: 8192,
            baseFlags: MechanismInfo.generateKeyPair, featureFlags: nil, feature: nil, keys: []),
        MechanismEntry(
            type: .ecKeyPairGen, family: .keyGeneration, minKeySize: 192, maxKeySize: 521,
            baseFlags: MechanismInfo.generateKeyPair | ecFlags, featureFlags: nil, feature: nil, keys: []),
        aes(.aesKeyGen, .keyGeneration, base: MechanismInfo.generate, feature: nil),
        MechanismEntry(
            type: .genericSecretKeyGen, family: .keyGeneration, minKeySize: 16, maxKeySize: 1024,
            baseFlags: MechanismInfo.generate, featureFlags: nil, feature: nil, keys: []),
        aes(.aesECB, .blockCipher, base: encDec, feature: nil),
        // A caller-chosen IV for encryption needs the extensions; the original decrypts with the IV prefixed.
        aes(.aesCBC, .blockCipher, base: MechanismInfo.decrypt, feature: .symmetricIV, ext: encDec),
        aes(.aesCBCPad, .blockCipher, base: MechanismInfo.decrypt, feature: .symmetricIV, ext: encDec),
        aes(.aesCTR, .blockCipher, base: MechanismInfo.decrypt, feature: .symmetricIV, ext: encDec),
        aes(.aesGCM, .blockCipher, base: MechanismInfo.decrypt, feature: .symmetricIV, ext: encDec),
        aes(.aesMAC, .blockMAC(length: 8, cmac: false), base: nil, feature: .mac, ext: signVerify),
        aes(.aesCMAC, .blockMAC(length: 16, cmac: true), base: nil, feature: .mac, ext: signVerify),
        // Triple-DES (two-key keys are stored as K1 K2 K1); keys are made with the extensions.
        des3(.des2KeyGen, .keyGeneration, base: nil, feature: .generateKey, ext: MechanismInfo.generate),
        des3(.des3KeyGen, .keyGeneration, base: nil, feature: .generateKey, ext: MechanismInfo.generate),
        des3(.des3ECB, .blockCipher, base: encDec, feature: nil),
        des3(.des3CBC, .blockCipher, base: MechanismInfo.decrypt, feature: .symmetricIV, ext: encDec),
        des3(.des3CBCPad, .blockCipher, base: MechanismInfo.decrypt, feature: .symmetricIV, ext: encDec),
        aes(.aesKeyWrap, .wrap, base: nil, feature: .wrap, ext: wrapping),
        aes(.aesKeyWrapPad, .wrap, base: nil, feature: .wrap, ext: wrapping),
        derive(.aesECBEncryptData, keys: aesKeys, min: 16, max: 32, cipher: "AES"),
        derive(.aesCBCEncryptData, keys: aesKeys, min: 16, max: 32, cipher: "AES"),
        derive(.concatenateBaseAndKey, keys: secretKeys),
        derive(.concatenateBaseAndData, keys: secretKeys),
        derive(.concatenateDataAndBase, keys: secretKeys),
        derive(.xorBaseAndData, keys: secretKeys),
        derive(.extractKeyFromKey, keys: secretKeys),
    ]

    /// The mechanisms one hash row makes: its digest (here), HMAC, and hash-and-sign with RSA
    /// PKCS#1 v1.5, RSA-PSS, ECDSA and DSA. The service feature each needs comes from the row:
    /// ECDSA and DSA send the digest, so every hash works wherever the family does.
    static func hashed(_ h: HashAlgorithm) -> [MechanismEntry] {
        let m = h.mechanisms
        let pkcs1 = h.feature(for: .sign)
        let hmac = h.feature(for: .hmacAnyHash)
        return [
            local(m.digest, .digest(h), min: 0, max: 0, flags: MechanismInfo.digest),
            rsa(m.rsaPKCS, .rsaPKCS1(h), base: pkcs1 == nil ? signVerify : nil, feature: pkcs1, ext: signVerify),
            rsa(m.rsaPSS, .rsaPSS(h), base: nil, feature: h.feature(for: .signPSS), ext: signVerify),
            ec(m.ecdsa, h),
            dsa(m.dsa, h),
            MechanismEntry(
                type: m.hmac, family: .hmac(h), minKeySize: 16, maxKeySize: 1024, baseFlags: hmac == nil ? signVerify : nil,
                featureFlags: signVerify, feature: hmac, keys: [(.mac, nil)]),
        ]
    }

    static let byType: [MechanismType: MechanismEntry] = Dictionary(all.map { ($0.type, $0) }, uniquingKeysWith: { a, _ in a })

    /// What a token offers given the service's features (nil: the original API, no extensions).
    /// CKF_HW: performed by the device, here the key service (all but the digests, which run here).
    static func offered(features: Set<Feature>?) -> [MechanismType: MechanismInfo] {
        var t: [MechanismType: MechanismInfo] = [:]
        for e in all {
            let has = e.feature.map { features?.contains($0) ?? false } ?? false
            guard let flags = has ? (e.featureFlags ?? e.baseFlags) : e.baseFlags else { continue }
            let hw = flags & MechanismInfo.digest == 0 ? MechanismInfo.hw : 0
            t[e.type] = MechanismInfo(minKeySize: e.minKeySize, maxKeySize: e.maxKeySize, flags: flags | hw)
        }
        return t
    }

    /// CKA_ALLOWED_MECHANISMS of a key object, in registry order (`cipher`: of a secret key).
    static func allowed(_ kind: ServiceKey.Kind, _ cls: ObjectClass, cipher: String? = nil) -> [MechanismType] {
        all.filter { e in
            e.family != .keyGeneration && e.keys.contains { $0.0 == kind && ($0.1 == nil || $0.1 == cls) }
                && (e.cipher == nil || cipher == nil || e.cipher == cipher)
        }.map(\.type)
    }

    static func family(_ m: MechanismType) -> MechanismFamily? { byType[m]?.family }
}
