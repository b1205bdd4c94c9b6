/// A mechanism with its decoded parameters (Marshal decodes CK_MECHANISM into this).
public struct Mechanism: Sendable, Equatable {
    public enum Parameters: Sendable, Equatable {
        case none
        case pss(hash: HashAlgorithm, mgf1: HashAlgorithm, saltLength: Int)
        case oaep(hash: HashAlgorithm, mgf1: HashAlgorithm, label: [UInt8])
        case iv([UInt8])
        case gcm(iv: [UInt8], aad: [UInt8], tagBits: Int)
        case raw([UInt8])
        /// Derive parameters (CK_KEY_DERIVATION_STRING_DATA, CK_AES_CBC_ENCRYPT_DATA_PARAMS,
        /// a key handle, CK_EXTRACT_PARAMS, CK_ECDH1_DERIVE_PARAMS).
        case data([UInt8])
        case ivData(iv: [UInt8], data: [UInt8])
        case key(UInt)
        case bitIndex(UInt)
        case ecdh(kdf: UInt, sharedData: [UInt8], publicData: [UInt8])
    }
    public var type: MechanismType
    public var parameters: Parameters
    public init(_ type: MechanismType, _ parameters: Parameters = .none) {
        self.type = type
        self.parameters = parameters
    }
}

/// What C_GetMechanismInfo reports.
public struct MechanismInfo: Sendable {
    public var minKeySize: UInt
    public var maxKeySize: UInt
    public var flags: UInt

    public static let hw: UInt = 0x1, encrypt: UInt = 0x100, decrypt: UInt = 0x200, digest: UInt = 0x400
    public static let sign: UInt = 0x800, verify: UInt = 0x2000, generate: UInt = 0x8000, generateKeyPair: UInt = 0x10000
    public static let wrap: UInt = 0x20000, unwrap: UInt = 0x40000, derive: UInt = 0x80000
    public static let ecFp: UInt = 0x100000, ecNamedCurve: UInt = 0x800000, ecUncompress: UInt = 0x1000000
}

/// The mechanism registry: what a token offers, with or without the service's extensions.
enum MechanismTable {
    static func offered(extensions: Bool) -> [MechanismType: MechanismInfo] {
        let rsa = UInt(2048), rsaMax = UInt(8192)
        let signVerify = MechanismInfo.sign | MechanismInfo.verify
        let ecFlags = MechanismInfo.ecFp | MechanismInfo.ecNamedCurve | MechanismInfo.ecUncompress
        var t: [MechanismType: MechanismInfo] = [
            .rsaPKCS: .init(minKeySize: rsa, maxKeySize: rsaMax, flags: signVerify | MechanismInfo.decrypt | MechanismInfo.encrypt),
            .sha1RSAPKCS: .init(minKeySize: rsa, maxKeySize: rsaMax, flags: signVerify),
            .sha256RSAPKCS: .init(minKeySize: rsa, maxKeySize: rsaMax, flags: signVerify),
            .sha384RSAPKCS: .init(minKeySize: rsa, maxKeySize: rsaMax, flags: signVerify),
            .sha512RSAPKCS: .init(minKeySize: rsa, maxKeySize: rsaMax, flags: signVerify),
            .ecdsa: .init(minKeySize: 224, maxKeySize: 521, flags: signVerify | ecFlags),
            .ecdsaSHA1: .init(minKeySize: 224, maxKeySize: 521, flags: signVerify | ecFlags),
            .ecdsaSHA224: .init(minKeySize: 224, maxKeySize: 521, flags: signVerify | ecFlags),
            .ecdsaSHA256: .init(minKeySize: 224, maxKeySize: 521, flags: signVerify | ecFlags),
            .ecdsaSHA384: .init(minKeySize: 224, maxKeySize: 521, flags: signVerify | ecFlags),
            .ecdsaSHA512: .init(minKeySize: 224, maxKeySize: 521, flags: signVerify | ecFlags),
            .sha1: .init(minKeySize: 0, maxKeySize: 0, flags: MechanismInfo.digest),
            .sha224: .init(minKeySize: 0, maxKeySize: 0, flags: MechanismInfo.digest),
            .sha256: .init(minKeySize: 0, maxKeySize: 0, flags: MechanismInfo.digest),
            .sha384: .init(minKeySize: 0, maxKeySize: 0, flags: MechanismInfo.digest),
            .sha512: .init(minKeySize: 0, maxKeySize: 0, flags: MechanismInfo.digest),
        ]
        let gen = MechanismInfo.generate
        let both = MechanismInfo.encrypt | MechanismInfo.decrypt
        t[.rsaPKCSKeyPairGen] = .init(minKeySize: rsa, maxKeySize: rsaMax, flags: MechanismInfo.generateKeyPair)
        t[.ecKeyPairGen] = .init(minKeySize: 192, maxKeySize: 521, flags: MechanismInfo.generateKeyPair | ecFlags)
        t[.aesKeyGen] = .init(minKeySize: 16, maxKeySize: 32, flags: gen)
        t[.genericSecretKeyGen] = .init(minKeySize: 16, maxKeySize: 1024, flags: gen)
        t[.rsaPKCSOAEP] = .init(minKeySize: rsa, maxKeySize: rsaMax, flags: both)
        t[.aesECB] = .init(minKeySize: 16, maxKeySize: 32, flags: both)
        // A caller-chosen IV for encryption needs the extensions; the original API decrypts with the IV prefixed.
        let ivFlags = extensions ? both : MechanismInfo.decrypt
        for m in [MechanismType.aesCBC, .aesCBCPad, .aesCTR, .aesGCM] { t[m] = .init(minKeySize: 16, maxKeySize: 32, flags: ivFlags) }
        for m in [MechanismType.sha1HMAC, .sha256HMAC, .sha384HMAC, .sha512HMAC] {
            t[m] = .init(minKeySize: 16, maxKeySize: 1024, flags: signVerify)
        }
        if extensions {
            t[.sha224RSAPKCS] = .init(minKeySize: rsa, maxKeySize: rsaMax, flags: signVerify)
            for m in [MechanismType.rsaPKCSPSS, .sha1RSAPKCSPSS, .sha224RSAPKCSPSS, .sha256RSAPKCSPSS, .sha384RSAPKCSPSS, .sha512RSAPKCSPSS] {
                t[m] = .init(minKeySize: rsa, maxKeySize: rsaMax, flags: signVerify)
            }
            // Keys from keys, executed in the service (C_DeriveKey, C_WrapKey, C_UnwrapKey).
            let derive = MechanismInfo.derive, wrapping = MechanismInfo.wrap | MechanismInfo.unwrap
            for m in [MechanismType.aesECBEncryptData, .aesCBCEncryptData] { t[m] = .init(minKeySize: 16, maxKeySize: 32, flags: derive) }
            for m in [MechanismType.concatenateBaseAndKey, .concatenateBaseAndData, .concatenateDataAndBase, .xorBaseAndData, .extractKeyFromKey] {
                t[m] = .init(minKeySize: 1, maxKeySize: 1024, flags: derive)
            }
            t[.ecdh1Derive] = .init(minKeySize: 192, maxKeySize: 521, flags: derive | ecFlags)
            for m in [MechanismType.aesKeyWrap, .aesKeyWrapPad] { t[m] = .init(minKeySize: 16, maxKeySize: 32, flags: wrapping) }
            t[.rsaPKCS]?.flags |= wrapping
            for m in [MechanismType.aesMAC, .aesCMAC] { t[m] = .init(minKeySize: 16, maxKeySize: 32, flags: signVerify) }
            // Raw RSA: the private operation in the service, the public one here.
            t[.rsaX509] = .init(minKeySize: rsa, maxKeySize: rsaMax, flags: signVerify | both)
            t[.rsaPKCSOAEP]?.flags |= wrapping
        }
        // CKF_HW: performed by the device, here the key service (everything but the digests,
        // which run in this process).
        for (m, info) in t where info.flags & MechanismInfo.digest == 0 { t[m]?.flags = info.flags | MechanismInfo.hw }
        return t
    }

    /// Hash of a hashed signature mechanism (nil: the caller supplies the digest or raw data).
    static func hash(of m: MechanismType) -> HashAlgorithm? {
        switch m {
        case .sha1RSAPKCS, .sha1RSAPKCSPSS, .ecdsaSHA1: .sha1
        case .sha224RSAPKCS, .sha224RSAPKCSPSS, .ecdsaSHA224: .sha224
        case .sha256RSAPKCS, .sha256RSAPKCSPSS, .ecdsaSHA256: .sha256
        case .sha384RSAPKCS, .sha384RSAPKCSPSS, .ecdsaSHA384: .sha384
        case .sha512RSAPKCS, .sha512RSAPKCSPSS, .ecdsaSHA512: .sha512
        default: nil
        }
    }

    static func hmacHash(of m: MechanismType) -> HashAlgorithm? {
        switch m {
        case .sha1HMAC: .sha1
        case .sha256HMAC: .sha256
        case .sha384HMAC: .sha384
        case .sha512HMAC: .sha512
        default: nil
        }
    }

    /// MACs with an AES key, computed in the service (length of the MAC).
    static func blockMACLength(of m: MechanismType) -> Int? {
        switch m {
        case .aesMAC: 8
        case .aesCMAC: 16
        default: nil
        }
    }

    static func isECDSA(_ m: MechanismType) -> Bool {
        [.ecdsa, .ecdsaSHA1, .ecdsaSHA224, .ecdsaSHA256, .ecdsaSHA384, .ecdsaSHA512].contains(m)
    }

    static func isPSS(_ m: MechanismType) -> Bool {
        [.rsaPKCSPSS, .sha1RSAPKCSPSS, .sha224RSAPKCSPSS, .sha256RSAPKCSPSS, .sha384RSAPKCSPSS, .sha512RSAPKCSPSS].contains(m)
    }
}
