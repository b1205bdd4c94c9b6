public import VSSMWire
public import VSSMCrypto

/// PKCS#11 constants as small typed values (no C types in the core). Raw values are those of the
/// OASIS specification; a bridge test in PKCS11ModuleTests checks each against the C header.

public struct AttributeType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }
    public init(_ v: UInt) { rawValue = v }
    public var description: String { "0x" + String(rawValue, radix: 16) }

    public static let `class` = AttributeType(0x0)
    public static let token = AttributeType(0x1)
    public static let `private` = AttributeType(0x2)
    public static let label = AttributeType(0x3)
    public static let uniqueID = AttributeType(0x4)
    public static let application = AttributeType(0x10)
    public static let value = AttributeType(0x11)
    public static let prime = AttributeType(0x130)
    public static let subprime = AttributeType(0x131)
    public static let base = AttributeType(0x132)
    public static let primeBits = AttributeType(0x133)
    public static let objectID = AttributeType(0x12)
    public static let certificateType = AttributeType(0x80)
    public static let issuer = AttributeType(0x81)
    public static let serialNumber = AttributeType(0x82)
    public static let trusted = AttributeType(0x86)
    public static let certificateCategory = AttributeType(0x87)
    public static let keyType = AttributeType(0x100)
    public static let subject = AttributeType(0x101)
    public static let id = AttributeType(0x102)
    public static let sensitive = AttributeType(0x103)
    public static let encrypt = AttributeType(0x104)
    public static let decrypt = AttributeType(0x105)
    public static let wrap = AttributeType(0x106)
    public static let unwrap = AttributeType(0x107)
    public static let sign = AttributeType(0x108)
    public static let signRecover = AttributeType(0x109)
    public static let verify = AttributeType(0x10A)
    public static let verifyRecover = AttributeType(0x10B)
    public static let derive = AttributeType(0x10C)
    public static let startDate = AttributeType(0x110)
    public static let endDate = AttributeType(0x111)
    public static let modulus = AttributeType(0x120)
    public static let modulusBits = AttributeType(0x121)
    public static let publicExponent = AttributeType(0x122)
    public static let privateExponent = AttributeType(0x123)
    public static let prime1 = AttributeType(0x124)
    public static let prime2 = AttributeType(0x125)
    public static let exponent1 = AttributeType(0x126)
    public static let exponent2 = AttributeType(0x127)
    public static let coefficient = AttributeType(0x128)
    public static let publicKeyInfo = AttributeType(0x129)
    /// PKCS#11 3.2: the ML-DSA / ML-KEM parameter set (CKP_…).
    public static let parameterSet = AttributeType(0x61d)
    public static let encapsulate = AttributeType(0x633)
    public static let decapsulate = AttributeType(0x634)
    public static let valueLen = AttributeType(0x161)
    public static let extractable = AttributeType(0x162)
    public static let local = AttributeType(0x163)
    public static let neverExtractable = AttributeType(0x164)
    public static let alwaysSensitive = AttributeType(0x165)
    public static let keyGenMechanism = AttributeType(0x166)
    public static let modifiable = AttributeType(0x170)
    public static let copyable = AttributeType(0x171)
    public static let destroyable = AttributeType(0x172)
    public static let ecParams = AttributeType(0x180)
    public static let ecPoint = AttributeType(0x181)
    public static let alwaysAuthenticate = AttributeType(0x202)
    public static let wrapWithTrusted = AttributeType(0x210)
    public static let allowedMechanisms = AttributeType(0x4000_0600)
}

public struct ObjectClass: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }
    public static let data = ObjectClass(rawValue: 0)
    public static let certificate = ObjectClass(rawValue: 1)
    public static let publicKey = ObjectClass(rawValue: 2)
    public static let privateKey = ObjectClass(rawValue: 3)
    public static let secretKey = ObjectClass(rawValue: 4)
    public static let domainParameters = ObjectClass(rawValue: 6)
}

public struct KeyKind: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }
    public static let rsa = KeyKind(rawValue: 0)
    public static let dsa = KeyKind(rawValue: 1)
    public static let ec = KeyKind(rawValue: 3)
    public static let ecEdwards = KeyKind(rawValue: 0x40)
    /// PKCS#11 3.2 post-quantum keys.
    public static let mlKEM = KeyKind(rawValue: 0x49)
    public static let mlDSA = KeyKind(rawValue: 0x4a)
    public static let genericSecret = KeyKind(rawValue: 0x10)
    public static let des = KeyKind(rawValue: 0x13)
    public static let des2 = KeyKind(rawValue: 0x14)
    public static let des3 = KeyKind(rawValue: 0x15)
    public static let aes = KeyKind(rawValue: 0x1F)
}

public struct MechanismType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }
    public init(_ v: UInt) { rawValue = v }
    public var description: String { "0x" + String(rawValue, radix: 16) }

    public static let rsaPKCSKeyPairGen = MechanismType(0x0)
    public static let dsaKeyPairGen = MechanismType(0x10)
    public static let dsa = MechanismType(0x11)
    public static let dsaSHA1 = MechanismType(0x12)
    public static let dsaSHA224 = MechanismType(0x13)
    public static let dsaSHA256 = MechanismType(0x14)
    public static let dsaSHA384 = MechanismType(0x15)
    public static let dsaSHA512 = MechanismType(0x16)
    public static let dsaParameterGen = MechanismType(0x2000)
    public static let rsaPKCS = MechanismType(0x1)
    public static let rsaX509 = MechanismType(0x3)
    public static let rsaPKCSOAEP = MechanismType(0x9)
    public static let rsaPKCSPSS = MechanismType(0xD)
    public static let sha1RSAPKCS = MechanismType(0x6)
    public static let sha1RSAPKCSPSS = MechanismType(0xE)
    public static let sha256RSAPKCS = MechanismType(0x40)
    public static let sha384RSAPKCS = MechanismType(0x41)
    public static let sha512RSAPKCS = MechanismType(0x42)
    public static let sha256RSAPKCSPSS = MechanismType(0x43)
    public static let sha384RSAPKCSPSS = MechanismType(0x44)
    public static let sha512RSAPKCSPSS = MechanismType(0x45)
    public static let sha224RSAPKCS = MechanismType(0x46)
    public static let sha224RSAPKCSPSS = MechanismType(0x47)
    public static let sha1 = MechanismType(0x220)
    public static let sha1HMAC = MechanismType(0x221)
    public static let sha256 = MechanismType(0x250)
    public static let sha256HMAC = MechanismType(0x251)
    public static let sha224 = MechanismType(0x255)
    public static let sha224HMAC = MechanismType(0x256)
    public static let sha384 = MechanismType(0x260)
    public static let sha384HMAC = MechanismType(0x261)
    public static let sha512 = MechanismType(0x270)
    public static let sha512HMAC = MechanismType(0x271)
    public static let sha3_256 = MechanismType(0x2B0)
    public static let sha3_256HMAC = MechanismType(0x2B1)
    public static let sha3_224 = MechanismType(0x2B5)
    public static let sha3_224HMAC = MechanismType(0x2B6)
    public static let sha3_384 = MechanismType(0x2C0)
    public static let sha3_384HMAC = MechanismType(0x2C1)
    public static let sha3_512 = MechanismType(0x2D0)
    public static let sha3_512HMAC = MechanismType(0x2D1)
    public static let sha3_256RSAPKCS = MechanismType(0x60)
    public static let sha3_384RSAPKCS = MechanismType(0x61)
    public static let sha3_512RSAPKCS = MechanismType(0x62)
    public static let sha3_256RSAPKCSPSS = MechanismType(0x63)
    public static let sha3_384RSAPKCSPSS = MechanismType(0x64)
    public static let sha3_512RSAPKCSPSS = MechanismType(0x65)
    public static let sha3_224RSAPKCS = MechanismType(0x66)
    public static let sha3_224RSAPKCSPSS = MechanismType(0x67)
    public static let ecdsaSHA3_224 = MechanismType(0x1047)
    public static let ecdsaSHA3_256 = MechanismType(0x1048)
    public static let ecdsaSHA3_384 = MechanismType(0x1049)
    public static let ecdsaSHA3_512 = MechanismType(0x104A)
    public static let dsaSHA3_224 = MechanismType(0x18)
    public static let dsaSHA3_256 = MechanismType(0x19)
    public static let dsaSHA3_384 = MechanismType(0x1A)
    public static let dsaSHA3_512 = MechanismType(0x1B)
    public static let genericSecretKeyGen = MechanismType(0x350)
    public static let ecKeyPairGen = MechanismType(0x1040)
    public static let ecdsa = MechanismType(0x1041)
    public static let ecdsaSHA1 = MechanismType(0x1042)
    public static let ecdsaSHA224 = MechanismType(0x1043)
    public static let ecdsaSHA256 = MechanismType(0x1044)
    public static let ecdsaSHA384 = MechanismType(0x1045)
    public static let ecdsaSHA512 = MechanismType(0x1046)
    public static let des2KeyGen = MechanismType(0x130)
    public static let des3KeyGen = MechanismType(0x131)
    public static let des3ECB = MechanismType(0x132)
    public static let des3CBC = MechanismType(0x133)
    public static let des3CBCPad = MechanismType(0x136)
    public static let aesKeyGen = MechanismType(0x1080)
    public static let aesECB = MechanismType(0x1081)
    public static let aesCBC = MechanismType(0x1082)
    public static let aesCBCPad = MechanismType(0x1085)
    public static let aesCTR = MechanismType(0x1086)
    public static let aesGCM = MechanismType(0x1087)
    public static let ecEdwardsKeyPairGen = MechanismType(0x1055)
    public static let eddsa = MechanismType(0x1057)
    /// PKCS#11 3.2: ML-DSA (FIPS 204) and ML-KEM (FIPS 203).
    public static let mlKEMKeyPairGen = MechanismType(0xf)
    public static let mlKEM = MechanismType(0x17)
    public static let mlDSAKeyPairGen = MechanismType(0x1c)
    public static let mlDSA = MechanismType(0x1d)
    public static let aesMAC = MechanismType(0x1083)
    public static let aesCMAC = MechanismType(0x108A)
    public static let concatenateBaseAndKey = MechanismType(0x360)
    public static let concatenateBaseAndData = MechanismType(0x362)
    public static let concatenateDataAndBase = MechanismType(0x363)
    public static let xorBaseAndData = MechanismType(0x364)
    public static let extractKeyFromKey = MechanismType(0x365)
    public static let ecdh1Derive = MechanismType(0x1050)
    public static let aesECBEncryptData = MechanismType(0x1104)
    public static let aesCBCEncryptData = MechanismType(0x1105)
    public static let aesKeyWrap = MechanismType(0x2109)
    public static let aesKeyWrapPad = MechanismType(0x210A)
}

public struct UserType: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }
    public static let so = UserType(rawValue: 0)
    public static let user = UserType(rawValue: 1)
    public static let contextSpecific = UserType(rawValue: 2)
}

/// Hash algorithms: VSSMCrypto's rows (wire name, OpenSSL name, size, DigestInfo), with their
/// PKCS#11 row here (`mechanisms`).
public typealias HashAlgorithm = DigestAlgorithm

extension DigestAlgorithm {
    /// Everything PKCS#11 numbers about one hash. The mechanism registry makes its digest, HMAC
    /// and hash-and-sign entries from these rows; the parameter decoders look hashes up in them.
    public struct Mechanisms: Sendable {
        /// CKM_SHA256 …: the digest, and the `hashAlg` of PSS and OAEP parameters.
        public let digest: MechanismType
        public let hmac: MechanismType
        public let rsaPKCS: MechanismType
        public let rsaPSS: MechanismType
        public let ecdsa: MechanismType
        public let dsa: MechanismType
        /// CKG_MGF1_*.
        public let mgf: UInt
        /// CKD_*_KDF (ECDH1 derivation).
        public let kdf: UInt
    }

    public var mechanisms: Mechanisms {
        switch self {
        case .sha1:
            Mechanisms(
                digest: .sha1, hmac: .sha1HMAC, rsaPKCS: .sha1RSAPKCS, rsaPSS: .sha1RSAPKCSPSS, ecdsa: .ecdsaSHA1,
                dsa: .dsaSHA1, mgf: 1, kdf: 2)
        case .sha224:
            Mechanisms(
                digest: .sha224, hmac: .sha224HMAC, rsaPKCS: .sha224RSAPKCS, rsaPSS: .sha224RSAPKCSPSS,
                ecdsa: .ecdsaSHA224, dsa: .dsaSHA224, mgf: 5, kdf: 5)
        case .sha256:
            Mechanisms(
                digest: .sha256, hmac: .sha256HMAC, rsaPKCS: .sha256RSAPKCS, rsaPSS: .sha256RSAPKCSPSS,
                ecdsa: .ecdsaSHA256, dsa: .dsaSHA256, mgf: 2, kdf: 6)
        case .sha384:
            Mechanisms(
                digest: .sha384, hmac: .sha384HMAC, rsaPKCS: .sha384RSAPKCS, rsaPSS: .sha384RSAPKCSPSS,
                ecdsa: .ecdsaSHA384, dsa: .dsaSHA384, mgf: 3, kdf: 7)
        case .sha512:
            Mechanisms(
                digest: .sha512, hmac: .sha512HMAC, rsaPKCS: .sha512RSAPKCS, rsaPSS: .sha512RSAPKCSPSS,
                ecdsa: .ecdsaSHA512, dsa: .dsaSHA512, mgf: 4, kdf: 8)
        case .sha3_224:
            Mechanisms(
                digest: .sha3_224, hmac: .sha3_224HMAC, rsaPKCS: .sha3_224RSAPKCS, rsaPSS: .sha3_224RSAPKCSPSS,
                ecdsa: .ecdsaSHA3_224, dsa: .dsaSHA3_224, mgf: 6, kdf: 0xA)
        case .sha3_256:
            Mechanisms(
                digest: .sha3_256, hmac: .sha3_256HMAC, rsaPKCS: .sha3_256RSAPKCS, rsaPSS: .sha3_256RSAPKCSPSS,
                ecdsa: .ecdsaSHA3_256, dsa: .dsaSHA3_256, mgf: 7, kdf: 0xB)
        case .sha3_384:
            Mechanisms(
                digest: .sha3_384, hmac: .sha3_384HMAC, rsaPKCS: .sha3_384RSAPKCS, rsaPSS: .sha3_384RSAPKCSPSS,
                ecdsa: .ecdsaSHA3_384, dsa: .dsaSHA3_384, mgf: 8, kdf: 0xC)
        case .sha3_512:
            Mechanisms(
                digest: .sha3_512, hmac: .sha3_512HMAC, rsaPKCS: .sha3_512RSAPKCS, rsaPSS: .sha3_512RSAPKCSPSS,
                ecdsa: .ecdsaSHA3_512, dsa: .dsaSHA3_512, mgf: 9, kdf: 0xD)
        }
    }

    /// The service feature a hash needs beyond the original API, for the hash-and-sign, HMAC, OAEP
    /// and KDF uses that name it to the service (nil: the original API has it). `sign`, `sign-pss`
    /// and `hmac-any-hash` cover SHA-224, `sha3` the SHA-3 family.
    public func feature(for use: Feature) -> Feature? {
        if isSHA3 { return .sha3 }
        if inOriginalAPI { return use == .signPSS || use == .decryptOAEP ? use : nil }
        return use
    }

    /// CKM_SHA_1 … CKM_SHA3_512 (also the `hashAlg` of PSS/OAEP parameters).
    public init?(mechanism: MechanismType) {
        guard let h = DigestAlgorithm.allCases.first(where: { $0.mechanisms.digest == mechanism }) else { return nil }
        self = h
    }

    /// CKG_MGF1_SHA1 (1) … CKG_MGF1_SHA3_512 (9).
    public init?(mgf: UInt) {
        guard let h = DigestAlgorithm.allCases.first(where: { $0.mechanisms.mgf == mgf }) else { return nil }
        self = h
    }

    /// CKD_SHA1_KDF … CKD_SHA3_512_KDF.
    public init?(kdf: UInt) {
        guard let h = DigestAlgorithm.allCases.first(where: { $0.mechanisms.kdf == kdf }) else { return nil }
        self = h
    }
}
