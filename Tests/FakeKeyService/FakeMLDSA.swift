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
