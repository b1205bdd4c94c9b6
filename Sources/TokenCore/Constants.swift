import VSSMCrypto

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

/// Hash algorithms: VSSMCrypto's, with their PKCS#11 mechanism and MGF1 identifiers.
public typealias HashAlgorithm = DigestAlgorithm

extension DigestAlgorithm {
    /// CKM_SHA_1 ... CKM_SHA512 (also the `hashAlg` of PSS/OAEP parameters).
    public init?(mechanism: MechanismType) {
        switch mechanism {
        case .sha1: self = .sha1
        case .sha224: self = .sha224
        case .sha256: self = .sha256
        case .sha384: self = .sha384
        case .sha512: self = .sha512
        default: return nil
        }
    }

    /// CKG_MGF1_SHA1 (1) ... CKG_MGF1_SHA224 (5).
    public init?(mgf: UInt) {
        switch mgf {
        case 1: self = .sha1
        case 2: self = .sha256
        case 3: self = .sha384
        case 4: self = .sha512
        case 5: self = .sha224
        default: return nil
        }
    }

    /// DER DigestInfo prefix (RFC 8017 §9.2 note 1); the digest follows.
    public var digestInfoPrefix: [UInt8] {
        switch self {
        case .sha1: [0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2B, 0x0E, 0x03, 0x02, 0x1A, 0x05, 0x00, 0x04, 0x14]
        case .sha224: [0x30, 0x2D, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1C]
        case .sha256: [0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20]
        case .sha384: [0x30, 0x41, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30]
        case .sha512: [0x30, 0x51, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40]
        }
    }

    /// Splits a DigestInfo into hash and digest, when it is one of ours.
    public static func parseDigestInfo(_ data: [UInt8]) -> (HashAlgorithm, [UInt8])? {
        for h in HashAlgorithm.allCases {
            let p = h.digestInfoPrefix
            if data.count == p.count + h.size && Array(data.prefix(p.count)) == p {
                return (h, Array(data.dropFirst(p.count)))
            }
        }
        return nil
    }
}
