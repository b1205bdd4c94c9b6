import VSSMWire
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
        case eddsa(prehash: Bool, contextLength: UInt)
        /// CK_SIGN_ADDITIONAL_CONTEXT (ML-DSA): CKH_ hedge variant and the context string.
        case signContext(hedge: UInt, context: [UInt8])
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
    /// PKCS#11 3.2 CKF_ENCAPSULATE / CKF_DECAPSULATE.
    public static let encapsulate: UInt = 0x1000_0000, decapsulate: UInt = 0x2000_0000
    public static let ecFp: UInt = 0x100000, ecNamedCurve: UInt = 0x800000, ecUncompress: UInt = 0x1000000
}

extension MechanismType {
    /// RSA-PSS mechanisms, whose parameter is a CK_RSA_PKCS_PSS_PARAMS (the decoder asks).
    public var takesPSSParameters: Bool { MechanismTable.isPSS(self) }
}

/// Questions the operations ask about a mechanism, answered from `MechanismRegistry`.
enum MechanismTable {
    static func offered(features: Set<Feature>?) -> [MechanismType: MechanismInfo] { MechanismRegistry.offered(features: features) }

    /// Hash of a hashed signature mechanism (nil: the caller supplies the digest or raw data).
    static func hash(of m: MechanismType) -> HashAlgorithm? {
        switch MechanismRegistry.family(m) {
        case .rsaPKCS1(let h)?, .rsaPSS(let h)?, .ecdsa(let h)?, .dsa(let h)?: h
        default: nil
        }
    }

    static func hmacHash(of m: MechanismType) -> HashAlgorithm? {
        if case .hmac(let h)? = MechanismRegistry.family(m) { return h }
        return nil
    }

    /// MACs with an AES key, computed in the service (length of the MAC).
    static func blockMACLength(of m: MechanismType) -> Int? {
        if case .blockMAC(let length, _)? = MechanismRegistry.family(m) { return length }
        return nil
    }

    static func isECDSA(_ m: MechanismType) -> Bool {
        if case .ecdsa? = MechanismRegistry.family(m) { return true }
        return false
    }

    static func isDSA(_ m: MechanismType) -> Bool {
        if case .dsa? = MechanismRegistry.family(m) { return true }
        return false
    }

    static func isPSS(_ m: MechanismType) -> Bool {
        if case .rsaPSS? = MechanismRegistry.family(m) { return true }
        return false
    }
}
