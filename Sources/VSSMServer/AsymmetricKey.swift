import Crypto
import FoundationEssentials
public import VSSMCrypto

/// An ML-DSA key (FIPS 204) held by the service, with swift-crypto: its 32-byte seed (what is
/// stored: PKCS#8 seed form), the public key derived from it, and the expanded key for signing.
public struct MLDSAKey: @unchecked Sendable {
    // swift-crypto's keys are immutable values backed by BoringSSL: safe to share across threads.
    private enum Expanded {
        case m65(MLDSA65.PrivateKey)
        case m87(MLDSA87.PrivateKey)
    }
    public let parameterSet: MLDSAParameterSet
    let seed: [UInt8]
    public let publicKey: [UInt8]
    private let expanded: Expanded

    init(set: MLDSAParameterSet, seed: [UInt8]) throws(VSSMCrypto.CryptoError) {
        guard seed.count == MLDSAParameterSet.seedSize else { throw VSSMCrypto.CryptoError("an ML-DSA seed is 32 bytes") }
        self.parameterSet = set
        self.seed = seed
        do {
            switch set {
            case .mldsa65:
                let k = try MLDSA65.PrivateKey(seedRepresentation: seed, publicKey: nil)
                expanded = .m65(k)
                publicKey = Array(k.publicKey.rawRepresentation)
            case .mldsa87:
                let k = try MLDSA87.PrivateKey(seedRepresentation: seed, publicKey: nil)
                expanded = .m87(k)
                publicKey = Array(k.publicKey.rawRepresentation)
            }
        } catch { throw VSSMCrypto.CryptoError("\(set.rawValue) key from its seed: \(error)") }
    }

    static func generate(_ set: MLDSAParameterSet) throws(VSSMCrypto.CryptoError) -> MLDSAKey {
        var seed = SecureRandom.bytes(MLDSAParameterSet.seedSize)
        defer { zeroize(&seed) }
        return try MLDSAKey(set: set, seed: seed)
    }

    /// A pure ML-DSA signature of the message, with the context string (at most 255 bytes) if any;
    /// hedged (randomised), as FIPS 204 recommends.
    func sign(_ message: [UInt8], context: [UInt8]) throws(VSSMCrypto.CryptoError) -> [UInt8] {
        guard context.count <= 255 else { throw VSSMCrypto.CryptoError("an ML-DSA context is at most 255 bytes") }
        do {
            switch expanded {
            case .m65(let k): return Array(try k.signature(for: message, context: context))
            case .m87(let k): return Array(try k.signature(for: message, context: context))
            }
        } catch { throw VSSMCrypto.CryptoError("\(parameterSet.rawValue) signature: \(error)") }
    }

    static func verify(_ set: MLDSAParameterSet, publicKey: [UInt8], signature: [UInt8], message: [UInt8], context: [UInt8]) -> Bool {
        guard context.count <= 255, signature.count == set.signatureSize else { return false }
        switch set {
        case .mldsa65:
            guard let k = try? MLDSA65.PublicKey(rawRepresentation: publicKey) else { return false }
            return k.isValidSignature(signature, for: message, context: context)
        case .mldsa87:
            guard let k = try? MLDSA87.PublicKey(rawRepresentation: publicKey) else { return false }
            return k.isValidSignature(signature, for: message, context: context)
        }
    }

    var pkcs8DER: [UInt8] { parameterSet.pkcs8(seed: seed) }
    var spkiDER: [UInt8] { parameterSet.spki(publicKey: publicKey) }
}

/// An ML-KEM key (FIPS 203) held by the service, with swift-crypto: its 64-byte seed (stored in
/// PKCS#8 seed form) and the encapsulation key derived from it.
public struct MLKEMKey: @unchecked Sendable {
    // swift-crypto's keys are immutable values backed by BoringSSL: safe to share across threads.
    private enum Expanded {
        case m768(MLKEM768.PrivateKey)
        case m1024(MLKEM1024.PrivateKey)
    }
    public let parameterSet: MLKEMParameterSet
    let seed: [UInt8]
    public let publicKey: [UInt8]
    private let expanded: Expanded

    init(set: MLKEMParameterSet, seed: [UInt8]) throws(VSSMCrypto.CryptoError) {
        guard seed.count == MLKEMParameterSet.seedSize else { throw VSSMCrypto.CryptoError("an ML-KEM seed is 64 bytes") }
        parameterSet = set
        self.seed = seed
        do {
            switch set {
            case .mlkem768:
                let k = try MLKEM768.PrivateKey(seedRepresentation: seed, publicKey: nil)
                expanded = .m768(k)
                publicKey = Array(k.publicKey.rawRepresentation)
            case .mlkem1024:
                let k = try MLKEM1024.PrivateKey(seedRepresentation: seed, publicKey: nil)
                expanded = .m1024(k)
                publicKey = Array(k.publicKey.rawRepresentation)
            }
        } catch { throw VSSMCrypto.CryptoError("\(set.rawValue) key from its seed: \(error)") }
    }

    static func generate(_ set: MLKEMParameterSet) throws(VSSMCrypto.CryptoError) -> MLKEMKey {
        var seed = SecureRandom.bytes(MLKEMParameterSet.seedSize)
        defer { zeroize(&seed) }
        return try MLKEMKey(set: set, seed: seed)
    }

    /// A fresh shared secret (32 bytes) and its ciphertext for this key's holder.
    func encapsulate() throws(VSSMCrypto.CryptoError) -> (sharedSecret: [UInt8], ciphertext: [UInt8]) {
        do {
            let r: KEM.EncapsulationResult
            switch expanded {
            case .m768(let k): r = try k.publicKey.encapsulate()
            case .m1024(let k): r = try k.publicKey.encapsulate()
            }
            return (r.sharedSecret.withUnsafeBytes { Array($0) }, Array(r.encapsulated))
        } catch { throw VSSMCrypto.CryptoError("\(parameterSet.rawValue) encapsulation: \(error)") }
    }

    /// The shared secret of a ciphertext (ML-KEM's implicit rejection: a wrong ciphertext of the
    /// right size gives a different secret, not an error).
    func decapsulate(_ ciphertext: [UInt8]) throws(VSSMCrypto.CryptoError) -> [UInt8] {
        guard ciphertext.count == parameterSet.ciphertextSize else {
            throw VSSMCrypto.CryptoError(
                "an \(parameterSet.rawValue) ciphertext is \(parameterSet.ciphertextSize) bytes, not \(ciphertext.count)")
        }
        do {
            let k: SymmetricKey
            switch expanded {
            case .m768(let key): k = try key.decapsulate(ciphertext)
            case .m1024(let key): k = try key.decapsulate(ciphertext)
            }
            return k.withUnsafeBytes { Array($0) }
        } catch { throw VSSMCrypto.CryptoError("\(parameterSet.rawValue) decapsulation: \(error)") }
    }

    var pkcs8DER: [UInt8] { parameterSet.pkcs8(seed: seed) }
    var spkiDER: [UInt8] { parameterSet.spki(publicKey: publicKey) }
}

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
