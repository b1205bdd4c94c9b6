import Crypto
import FoundationEssentials
import VSSMCrypto

/// The fake's ML-DSA keys, with swift-crypto as the service has them.
struct FakeMLDSA: @unchecked Sendable {
    enum Key {
        case m65(MLDSA65.PrivateKey)
        case m87(MLDSA87.PrivateKey)
    }
    let parameterSet: MLDSAParameterSet
    let key: Key

    init(_ s: MLDSAParameterSet) throws {
        parameterSet = s
        key = s == .mldsa65 ? .m65(try MLDSA65.PrivateKey()) : .m87(try MLDSA87.PrivateKey())
    }

    var publicKey: [UInt8] {
        switch key {
        case .m65(let k): Array(k.publicKey.rawRepresentation)
        case .m87(let k): Array(k.publicKey.rawRepresentation)
        }
    }
    var spki: [UInt8] { parameterSet.spki(publicKey: publicKey) }

    func sign(_ message: [UInt8], context: [UInt8]) throws -> [UInt8] {
        switch key {
        case .m65(let k): Array(try k.signature(for: message, context: context))
        case .m87(let k): Array(try k.signature(for: message, context: context))
        }
    }

    func verify(_ signature: [UInt8], _ message: [UInt8], context: [UInt8]) -> Bool {
        switch key {
        case .m65(let k): k.publicKey.isValidSignature(signature, for: message, context: context)
        case .m87(let k): k.publicKey.isValidSignature(signature, for: message, context: context)
        }
    }
}

/// The fake's ML-KEM keys, with swift-crypto as the service has them.
struct FakeMLKEM: @unchecked Sendable {
    enum Key {
        case m768(MLKEM768.PrivateKey)
        case m1024(MLKEM1024.PrivateKey)
    }
    let parameterSet: MLKEMParameterSet
    let key: Key

    init(_ s: MLKEMParameterSet) throws {
        parameterSet = s
        key = s == .mlkem768 ? .m768(try MLKEM768.PrivateKey()) : .m1024(try MLKEM1024.PrivateKey())
    }

    var spki: [UInt8] {
        switch key {
        case .m768(let k): parameterSet.spki(publicKey: Array(k.publicKey.rawRepresentation))
        case .m1024(let k): parameterSet.spki(publicKey: Array(k.publicKey.rawRepresentation))
        }
    }

    func encapsulate() throws -> (secret: [UInt8], ciphertext: [UInt8]) {
        let r: KEM.EncapsulationResult
        switch key {
        case .m768(let k): r = try k.publicKey.encapsulate()
        case .m1024(let k): r = try k.publicKey.encapsulate()
        }
        return (r.sharedSecret.withUnsafeBytes { Array($0) }, Array(r.encapsulated))
    }

    func decapsulate(_ ciphertext: [UInt8]) throws -> [UInt8] {
        guard ciphertext.count == parameterSet.ciphertextSize else { throw CryptoError("wrong ciphertext size") }
        let k: SymmetricKey
        switch key {
        case .m768(let p): k = try p.decapsulate(ciphertext)
        case .m1024(let p): k = try p.decapsulate(ciphertext)
        }
        return k.withUnsafeBytes { Array($0) }
    }
}
