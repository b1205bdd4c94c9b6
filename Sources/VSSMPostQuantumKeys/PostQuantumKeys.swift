import Crypto
public import VSSMCrypto

// The service's post-quantum keys (swift-crypto's ML-DSA and ML-KEM), in a target of their own so
// that the service and the fake key service of TokenCore's tests use the same code without the
// fake linking the server, and the PKCS#11 module does not link swift-crypto.

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

    public init(set: MLDSAParameterSet, seed: [UInt8]) throws(VSSMCrypto.CryptoError) {
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

    public static func generate(_ set: MLDSAParameterSet) throws(VSSMCrypto.CryptoError) -> MLDSAKey {
        var seed = SecureRandom.bytes(MLDSAParameterSet.seedSize)
        defer { zeroize(&seed) }
        return try MLDSAKey(set: set, seed: seed)
    }

    /// A pure ML-DSA signature of the message, with the context string (at most 255 bytes) if any;
    /// hedged (randomised), as FIPS 204 recommends.
    public func sign(_ message: [UInt8], context: [UInt8]) throws(VSSMCrypto.CryptoError) -> [UInt8] {
        guard context.count <= 255 else { throw VSSMCrypto.CryptoError("an ML-DSA context is at most 255 bytes") }
        do {
            switch expanded {
            case .m65(let k): return Array(try k.signature(for: message, context: context))
            case .m87(let k): return Array(try k.signature(for: message, context: context))
            }
        } catch { throw VSSMCrypto.CryptoError("\(parameterSet.rawValue) signature: \(error)") }
    }

    public static func verify(_ set: MLDSAParameterSet, publicKey: [UInt8], signature: [UInt8], message: [UInt8], context: [UInt8]) -> Bool
    {
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

    public var pkcs8DER: [UInt8] { parameterSet.pkcs8(seed: seed) }
    public var spkiDER: [UInt8] { parameterSet.spki(publicKey: publicKey) }
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

    public init(set: MLKEMParameterSet, seed: [UInt8]) throws(VSSMCrypto.CryptoError) {
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

    public static func generate(_ set: MLKEMParameterSet) throws(VSSMCrypto.CryptoError) -> MLKEMKey {
        var seed = SecureRandom.bytes(MLKEMParameterSet.seedSize)
        defer { zeroize(&seed) }
        return try MLKEMKey(set: set, seed: seed)
    }

    /// A fresh shared secret (32 bytes) and its ciphertext for this key's holder.
    public func encapsulate() throws(VSSMCrypto.CryptoError) -> (sharedSecret: [UInt8], ciphertext: [UInt8]) {
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
    public func decapsulate(_ ciphertext: [UInt8]) throws(VSSMCrypto.CryptoError) -> [UInt8] {
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

    public var pkcs8DER: [UInt8] { parameterSet.pkcs8(seed: seed) }
    public var spkiDER: [UInt8] { parameterSet.spki(publicKey: publicKey) }
}
