import Crypto
import FoundationEssentials
public import VSSMCrypto
public import VSSMPostQuantumKeys

/// A stored asymmetric key: OpenSSL's (RSA, EC, Edwards, DSA), ML-DSA or ML-KEM (swift-crypto). The
/// operations of one kind refuse the other's keys with a clear error (the handlers check the
/// kind first).
public enum AsymmetricKey: Sendable {
    case classic(PrivateKey)
    case mldsa(MLDSAKey)
    case mlkem(MLKEMKey)

    /// A PKCS#8 key: ML-DSA in seed form, else whatever OpenSSL reads.
    public init(pkcs8: [UInt8]) throws(VSSMCrypto.CryptoError) {
        if let (set, seed) = MLDSAParameterSet.parse(pkcs8: pkcs8) {
            self = .mldsa(try MLDSAKey(set: set, seed: seed))
        } else if let (set, seed) = MLKEMParameterSet.parse(pkcs8: pkcs8) {
            self = .mlkem(try MLKEMKey(set: set, seed: seed))
        } else {
            self = .classic(try PrivateKey(pkcs8: pkcs8))
        }
    }

    public var kind: AsymmetricKind {
        switch self {
        case .classic(let k): k.kind
        case .mldsa(let k): k.parameterSet.kind
        case .mlkem(let k): k.parameterSet.kind
        }
    }
    var classic: PrivateKey? {
        switch self {
        case .classic(let k): k
        case .mldsa, .mlkem: nil
        }
    }
    var bits: Int { classic?.bits ?? 0 }
    var curve: NamedCurve? { classic?.curve }
    var pkcs8DER: [UInt8] {
        switch self {
        case .classic(let k): k.pkcs8DER
        case .mldsa(let k): k.pkcs8DER
        case .mlkem(let k): k.pkcs8DER
        }
    }
    var spkiDER: [UInt8] {
        switch self {
        case .classic(let k): k.spkiDER
        case .mldsa(let k): k.spkiDER
        case .mlkem(let k): k.spkiDER
        }
    }

    private func openssl() throws(VSSMCrypto.CryptoError) -> PrivateKey {
        guard let k = classic else { throw VSSMCrypto.CryptoError("an \(kind.rawValue) key does not do this operation") }
        return k
    }
    func sign(digest: [UInt8], scheme: SignatureScheme) throws(VSSMCrypto.CryptoError) -> [UInt8] {
        try openssl().sign(digest: digest, scheme: scheme)
    }
    func verify(signature: [UInt8], digest: [UInt8], scheme: SignatureScheme) -> Bool {
        classic?.verify(signature: signature, digest: digest, scheme: scheme) ?? false
    }
    func decrypt(_ ciphertext: [UInt8], padding: EncryptionPadding) throws(VSSMCrypto.CryptoError) -> [UInt8] {
        try openssl().decrypt(ciphertext, padding: padding)
    }
    func encrypt(_ plaintext: [UInt8], padding: EncryptionPadding) throws(VSSMCrypto.CryptoError) -> [UInt8] {
        try openssl().encrypt(plaintext, padding: padding)
    }
    func signEdDSA(message: [UInt8]) throws(VSSMCrypto.CryptoError) -> [UInt8] { try openssl().signEdDSA(message: message) }
    func ecdhSharedSecret(peerPoint: [UInt8]) throws(VSSMCrypto.CryptoError) -> [UInt8] {
        try openssl().ecdhSharedSecret(peerPoint: peerPoint)
    }
}
