public import VSSMCrypto
public import VSSMWire
/// What the token core needs from a key service. `VSSMClient.VSSMKeyService` implements it over
/// the VSSM REST API; unit tests may use a fake. Every method blocks; none is called under a lock.
public protocol KeyService: Sendable {
    /// True when the service offers our `/REST/v1/ext/` extensions (else only the original API).
    func hasExtensions() throws(TokenError) -> Bool
    /// The extension features the service lists (`ext/capabilities`); nil for the original API.
    func features() throws(TokenError) -> Set<Feature>?
    /// Keys and stored objects, plus the session keys of `owner` (renewing their lease). Without
    /// extensions the original `listkeys` needs the admin password; with no password the listing
    /// is then empty.
    func list(adminPassword: String?, owner: String?) throws(TokenError) -> ServiceListing
    /// The private-key half of a signature: `data` is the digest (schemes with a hash), the bytes
    /// to sign as given (PKCS#1 without a hash, raw RSA, DSA, ECDSA without a hash) or the message
    /// (EdDSA). The adapter alone decides the route and the names the service gets.
    func sign(key: String, _ scheme: SignScheme, _ data: [UInt8]) throws(TokenError) -> [UInt8]
    func decrypt(key: String, _ scheme: DecryptScheme, _ input: [UInt8]) throws(TokenError) -> [UInt8]
    /// A block cipher in the service, by cipher and mode with its parameters (the adapter decides
    /// how the service is told: IV fields with the extensions, IV before the data on the original).
    func symmetric(encrypt: Bool, key: String, _ scheme: SymmetricScheme, _ input: [UInt8]) throws(TokenError) -> [UInt8]
    /// A MAC computed in the service (C_Sign, and C_Verify, which compares it here).
    func mac(key: String, _ scheme: MACScheme, _ input: [UInt8]) throws(TokenError) -> [UInt8]
    /// An ML-DSA signature checked with the key's public half in the service (this module has
    /// no ML-DSA of its own): true when it verifies.
    func verifyMLDSA(key: String, message: [UInt8], context: [UInt8], signature: [UInt8]) throws(TokenError) -> Bool
    /// The attestation statement (DER certificate) of a key generated in the service.
    func attest(key: ServiceKey) throws(TokenError) -> [UInt8]
    /// Waits (up to `waitMs`) for the key state to move past `since` ("" at first: it has):
    /// answers the service's revision and whether it moved. `cancel` ends the wait at once.
    func waitForChange(since: String, waitMs: Int, cancel: WaitCancellation) throws(TokenError) -> (revision: String, changed: Bool)
    /// C_Login's check: `asSO` needs the admin password; otherwise a registered principal's PIN
    /// is accepted too.
    func verifyAdminPassword(_ password: String, asSO: Bool) throws(TokenError)
    /// Key creation and changes. A `name` of the form `~<owner>/<name>` is a session key (memory
    /// only in the service, no admin password needed: pass ""); `label` is its CKA_LABEL.
    /// `attributes`: the `StoredAttributes` blob kept with the key (nil: none).
    func generateKey(
        adminPassword: String, name: String, _ spec: KeyGenSpec, id: [UInt8]?, label: String?, attributes: [UInt8]?) throws(TokenError)
    /// `key`: PKCS#8 for asymmetric keys, the value for secret keys; `cipher` for symmetric keys.
    func injectKey(
        adminPassword: String, name: String, type: KeyType, key: [UInt8], id: [UInt8]?, cipher: String?, label: String?,
        attributes: [UInt8]?) throws(TokenError)
    func deleteKey(adminPassword: String, name: String, type: KeyType) throws(TokenError)
    func setKeyID(adminPassword: String, name: String, type: KeyType, id: [UInt8]?, label: String?, attributes: [UInt8]?) throws(TokenError)
    /// Copies a key inside the service under `newName` (session or token name) with new CKA_ID,
    /// label (session keys) and stored attributes.
    func copyKey(
        adminPassword: String, name: String, type: KeyType, newName: String, id: [UInt8]?, label: String?, attributes: [UInt8]?)
        throws(TokenError)
    /// Drops every session key of `owner` (C_Finalize); best effort.
    func releaseSession(owner: String) throws(TokenError)
    /// Makes a new key from `base` inside the service (C_DeriveKey, ML-KEM); the value never leaves
    /// it. Answers what the mechanism gives back: ML-KEM encapsulation's ciphertext, else nothing.
    @discardableResult
    func deriveKey(adminPassword: String, base: ServiceKey, mechanism: DeriveMechanism, new: NewKeySpec) throws(TokenError) -> [UInt8]
    /// Wraps `target` with `key` (C_WrapKey): the service checks CKA_WRAP and CKA_EXTRACTABLE.
    func wrapKey(key: ServiceKey, mechanism: WrapMechanism, target: ServiceKey) throws(TokenError) -> [UInt8]
    /// Unwraps `wrapped` with `key` into a new key (C_UnwrapKey).
    func unwrapKey(adminPassword: String, key: ServiceKey, mechanism: WrapMechanism, wrapped: [UInt8], new: NewKeySpec) throws(TokenError)
    /// The value of a key its creator made readable (CKA_SENSITIVE=FALSE, CKA_EXTRACTABLE=TRUE).
    func keyValue(_ key: ServiceKey) throws(TokenError) -> [UInt8]
    func createObject(
        adminPassword: String, objectClass: String, label: String, id: [UInt8], value: [UInt8], application: String
    ) throws(TokenError) -> String
    func updateObject(adminPassword: String, uid: String, label: String?, id: [UInt8]?) throws(TokenError)
    func deleteObject(adminPassword: String, uid: String) throws(TokenError)
}

/// A signature the service makes, by scheme: the one typed description the token core hands to
/// the adapter (which maps it to the original API or our extensions, and to wire names).
public enum SignScheme: Sendable, Equatable {
    /// PKCS#1 v1.5 over a digest of `hash`; nil: over the caller's bytes as given (a DigestInfo
    /// or raw data, padded but not hashed).
    case rsaPKCS1(HashAlgorithm?)
    case rsaPSS(hash: HashAlgorithm, mgf1: HashAlgorithm, saltLength: Int)
    /// CKM_RSA_X_509: the private-key operation on a modulus-sized input, judged by CKA_SIGN.
    case rsaRaw
    /// Over a digest of `hash` (nil: a digest the caller made, of unknown hash).
    case ecdsa(HashAlgorithm?)
    /// Over a digest the caller or the token made.
    case dsa
    /// PureEdDSA over the whole message.
    case eddsa
    /// Pure ML-DSA (FIPS 204) over the whole message, with a context string (at most 255 bytes).
    case mldsa(context: [UInt8])
}

/// An RSA decryption the service makes.
public enum DecryptScheme: Sendable, Equatable {
    case rsaPKCS1
    /// CKM_RSA_X_509: the private-key operation alone.
    case rsaRaw
    case rsaOAEP(hash: HashAlgorithm, mgf1: HashAlgorithm, label: [UInt8])
}

extension DecryptScheme {
    /// The original API decrypts PKCS#1 v1.5, and OAEP with MGF1 of the same hash (one it has) and
    /// no label; everything else needs our extensions.
    public var inOriginalAPI: Bool {
        switch self {
        case .rsaPKCS1: true
        case .rsaRaw: false
        case .rsaOAEP(let hash, let mgf1, let label): mgf1 == hash && label.isEmpty && hash.inOriginalAPI
        }
    }

    /// Whether a service with these features (nil: the original API) can decrypt this way.
    public func isOffered(by features: Set<Feature>?) -> Bool {
        if inOriginalAPI { return true }
        guard let features else { return false }
        switch self {
        case .rsaPKCS1: return true
        case .rsaRaw: return features.contains(.rsaRaw)
        case .rsaOAEP(let hash, let mgf1, _):
            return features.contains(.decryptOAEP) && (!hash.isSHA3 && !mgf1.isSHA3 || features.contains(.sha3))
        }
    }
}

/// A MAC the service computes.
public enum MACScheme: Sendable, Equatable {
    case hmac(HashAlgorithm)
    /// AES-CMAC (16 bytes) or AES-MAC (CBC-MAC, 8 bytes), truncated to `length` bytes.
    case aesCMAC(length: Int)
    case aesMAC(length: Int)
}

/// A key as listed by the service.
public struct ServiceKey: Sendable, Equatable {
    /// eddsa: Ed25519 or Ed448 (the SPKI says which).
    public enum Kind: Sendable, Equatable { case rsa, ec, eddsa, dsa, mldsa, mlkem, symmetric, mac }
    public var name: String
    public var kind: Kind
    /// DER SubjectPublicKeyInfo (asymmetric keys).
    public var publicKey: [UInt8]
    /// Key length in bytes (symmetric and MAC keys).
    public var length: Int
    /// "AES", "DES" or "3DES" for symmetric keys.
    public var cipher: String
    /// CKA_ID stored with the key, if any.
    public var id: [UInt8]?
    /// A session key (CKA_TOKEN=FALSE) of this module instance; `label` is its CKA_LABEL.
    public var ephemeral: Bool
    public var label: String?
    /// Generated inside the service (true), imported (false), or unknown (nil).
    public var generated: Bool?
    /// The `StoredAttributes` blob kept with the key.
    public var attributes: [UInt8]?

    public init(
        name: String, kind: Kind, publicKey: [UInt8] = [], length: Int = 0, cipher: String = "", id: [UInt8]? = nil,
        ephemeral: Bool = false, label: String? = nil, generated: Bool? = nil, attributes: [UInt8]? = nil
    ) {
        self.name = name
        self.kind = kind
        self.publicKey = publicKey
        self.length = length
        self.cipher = cipher
        self.id = id
        self.ephemeral = ephemeral
        self.label = label
        self.generated = generated
        self.attributes = attributes
    }
}

extension ServiceKey.Kind {
    /// The kind of an asymmetric key of this algorithm (Ed25519 and Ed448 are both `eddsa`).
    public init(_ algorithm: AsymmetricKind) {
        switch algorithm {
        case .rsa: self = .rsa
        case .ec: self = .ec
        case .dsa: self = .dsa
        case .ed25519, .ed448: self = .eddsa
        case .mldsa65, .mldsa87: self = .mldsa
        case .mlkem768, .mlkem1024: self = .mlkem
        }
    }
}

extension ServiceKey {
    public var serviceType: KeyType {
        switch kind {
        case .rsa, .ec, .eddsa, .dsa, .mldsa, .mlkem: .asymmetric
        case .symmetric: .symmetric
        case .mac: .mac
        }
    }
}

/// A key the service generates.
public enum KeyGenSpec: Sendable, Equatable {
    case rsa(bits: Int)
    /// An EC key on the named curve of this size (P-256 …).
    case ec(bits: Int)
    case ed25519, ed448
    /// A DSA key pair on the given domain parameters (CKM_DSA_KEY_PAIR_GEN).
    case dsa(p: [UInt8], q: [UInt8], g: [UInt8])
    /// An ML-DSA key pair of this parameter set (CKM_ML_DSA_KEY_PAIR_GEN).
    case mldsa(MLDSAParameterSet)
    /// An ML-KEM key pair of this parameter set (CKM_ML_KEM_KEY_PAIR_GEN).
    case mlkem(MLKEMParameterSet)
    /// A symmetric key of `cipher` ("AES", "3DES"), `bytes` long.
    case secret(cipher: String, bytes: Int)
    /// A generic secret (HMAC) key.
    case mac(bytes: Int)

    public var type: KeyType {
        switch self {
        case .rsa, .ec, .ed25519, .ed448, .dsa, .mldsa, .mlkem: .asymmetric
        case .secret: .symmetric
        case .mac: .mac
        }
    }
}

/// A block cipher call: the cipher ("AES", "3DES", "DES"), the mode and its parameters.
public struct SymmetricScheme: Sendable, Equatable {
    public enum Mode: Sendable, Equatable {
        case ecb
        case cbc(iv: [UInt8], padded: Bool)
        /// AES-CTR with a 16-byte counter block.
        case ctr(counter: [UInt8])
        /// AES-GCM; the ciphertext is followed by the `tagLength`-byte tag.
        case gcm(iv: [UInt8], aad: [UInt8], tagLength: Int)
    }
    public var cipher: String
    public var mode: Mode
    public init(_ cipher: String, _ mode: Mode) {
        self.cipher = cipher
        self.mode = mode
    }
}

/// A certificate or data object stored in the service.
public struct ServiceObject: Sendable, Equatable {
    public var uid: String
    public var isCertificate: Bool
    /// A public key kept on its own (`value`: DER SubjectPublicKeyInfo).
    public var isPublicKey = false
    public var label: String
    public var id: [UInt8]
    public var value: [UInt8]
    public var application: String
    public init(uid: String, isCertificate: Bool, label: String, id: [UInt8], value: [UInt8], application: String) {
        self.uid = uid
        self.isCertificate = isCertificate
        self.label = label
        self.id = id
        self.value = value
        self.application = application
    }
}

public struct ServiceListing: Sendable {
    public var keys: [ServiceKey]
    public var objects: [ServiceObject]
    public init(keys: [ServiceKey] = [], objects: [ServiceObject] = []) {
        self.keys = keys
        self.objects = objects
    }
}

/// C_DeriveKey mechanisms the service executes, with their parameters.
public enum DeriveMechanism: Sendable, Equatable {
    case aesECBEncryptData([UInt8])
    case aesCBCEncryptData(iv: [UInt8], data: [UInt8])
    case concatenateBaseAndKey(ServiceKey)
    case concatenateBaseAndData([UInt8])
    case concatenateDataAndBase([UInt8])
    case xorBaseAndData([UInt8])
    case extractKeyFromKey(bitIndex: UInt)
    /// ECDH: the peer's uncompressed point; nil KDF = the shared secret itself.
    case ecdh(kdf: HashAlgorithm?, sharedData: [UInt8], publicData: [UInt8])
    /// ML-KEM (C_EncapsulateKey): a fresh shared secret for the key's holder; its ciphertext comes back.
    case mlkemEncapsulate
    /// ML-KEM (C_DecapsulateKey): the shared secret of this ciphertext.
    case mlkemDecapsulate(ciphertext: [UInt8])
}

/// C_WrapKey / C_UnwrapKey mechanisms.
public enum WrapMechanism: Sendable, Equatable {
    case aesKeyWrap, aesKeyWrapPad, rsaPKCS
    case rsaOAEP(hash: HashAlgorithm, mgf1: HashAlgorithm, label: [UInt8])
}

/// The key a derive or unwrap makes.
public struct NewKeySpec: Sendable, Equatable {
    public var name: String
    /// Symmetric, MAC or (unwrap only) asymmetric.
    public var type: KeyType
    public var cipher: String?
    /// Bytes (0: what the mechanism gives).
    public var length: Int
    public var id: [UInt8]?
    public var label: String?
    public var attributes: [UInt8]?
    public init(name: String, type: KeyType, cipher: String?, length: Int, id: [UInt8]?, label: String?, attributes: [UInt8]?) {
        self.name = name
        self.type = type
        self.cipher = cipher
        self.length = length
        self.id = id
        self.label = label
        self.attributes = attributes
    }
}
