/// The extension features a node lists in `ext/capabilities` (and with `ext/listkeys`): one type
/// for the server that offers them, the adapter that reads them and the test fake. A name this
/// build does not know (a newer node's) is ignored when read.
public enum Feature: String, Sendable, CaseIterable {
    case listKeys = "listkeys"
    /// Hash-and-sign with a hash beyond the original's (SHA-224), and `NONEwithRSA`.
    case sign
    case signPSS = "sign-pss"
    case signRaw = "sign-raw"
    case ecdsaAnyHash = "ecdsa-any-hash"
    case decryptOAEP = "decrypt-oaep"
    case symmetricIV = "symmetric-iv"
    case generateKey = "generatekey"
    case injectKey = "injectkey"
    case attributes
    case deleteKey = "deletekey"
    case objects
    case verifyPassword = "verifypassword"
    case backupV2 = "backup-v2"
    case sessionKeys = "session-keys"
    case copyKey = "copykey"
    case derive
    case wrap
    case keyValue = "keyvalue"
    /// AES-CMAC and AES-MAC on `ext/mac`.
    case mac
    case rsaRaw = "rsa-raw"
    case eddsa
    case dsa
    case audit
    case bootstrapShares = "bootstrap-shares"
    case principals
    /// HMAC with any hash the node knows on `ext/mac` (`HMAC/<hash>`; SHA-224 included).
    case hmacAnyHash = "hmac-any-hash"
    /// `ext/createobject` keeps a `PUBLIC_KEY` (a key pair's public half after its private key went).
    case publicKeyObjects = "public-key-objects"
    /// The SHA-3 hashes (SHA3-224 … SHA3-512) wherever a hash is named: hash-and-sign, PSS, OAEP,
    /// MGF1, HMAC and the ECDH KDF.
    case sha3
    /// ML-DSA-65 and ML-DSA-87 keys (FIPS 204): `ML-DSA-65`/`ML-DSA-87` key specs, `ML-DSA`
    /// signatures on `ext/sign` (with a context string) and `ext/verify`.
    case mlDSA = "ml-dsa"
    /// ML-KEM-768 and ML-KEM-1024 keys (FIPS 203): `ML-KEM-768`/`ML-KEM-1024` key specs, and
    /// `ML-KEM-ENCAPSULATE` / `ML-KEM-DECAPSULATE` on `ext/derive` (the shared secret becomes a key).
    case mlKEM = "ml-kem"
    /// `ext/attest`: a statement that a key was generated here, sensitive and never extractable.
    case attestation
    /// `ext/changes`: a long poll that answers when the key state changes.
    case changes

    /// The features in a list of names, unknown names left out.
    public static func set(_ names: [String]) -> Set<Feature> { Set(names.compactMap(Feature.init(rawValue:))) }
}
