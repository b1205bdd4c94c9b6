/// A post-quantum parameter set this service offers (ML-DSA, ML-KEM): its OID and sizes; the
/// encodings (SubjectPublicKeyInfo with the raw public key, PKCS#8 seed form) and the PKCS#11 3.2
/// CKA_PARAMETER_SET lookup come from that. Encoding only: the keys live in the key service
/// (swift-crypto); the module reads public keys with this.
public protocol PostQuantumParameterSet: CaseIterable, Equatable, Sendable {
    var oidDER: [UInt8] { get }
    var publicKeySize: Int { get }
    /// PKCS#11 3.2 CKA_PARAMETER_SET (CKP_…).
    var pkcs11ParameterSet: UInt { get }
    static var seedSize: Int { get }
}

extension PostQuantumParameterSet {
    public init?(pkcs11ParameterSet p: UInt) {
        guard let s = Self.allCases.first(where: { $0.pkcs11ParameterSet == p }) else { return nil }
        self = s
    }
    public func spki(publicKey: [UInt8]) -> [UInt8] { PQEncoding.spki(oid: oidDER, publicKey: publicKey) }
    public func pkcs8(seed: [UInt8]) -> [UInt8] { PQEncoding.pkcs8(oid: oidDER, seed: seed) }

    /// The parameter set and raw public key of a SubjectPublicKeyInfo of this family; nil for anything else.
    public static func parse(spki: [UInt8]) -> (Self, [UInt8])? {
        PQEncoding.parse(spki: spki, among: allCases.map { ($0, $0.oidDER, $0.publicKeySize) })
    }

    /// The parameter set and seed of a PKCS#8 in seed form of this family; nil for anything else.
    public static func parse(pkcs8: [UInt8]) -> (Self, [UInt8])? {
        PQEncoding.parse(pkcs8: pkcs8, among: allCases.map { ($0, $0.oidDER) }, seedSize: seedSize)
    }
}

/// ML-DSA (FIPS 204), RFC 9881: id-ml-dsa-65 2.16.840.1.101.3.4.3.18, id-ml-dsa-87 ….19; a 32-byte
/// seed. ML-DSA-44 is not offered (swift-crypto has 65 and 87).
public enum MLDSAParameterSet: String, PostQuantumParameterSet {
    case mldsa65 = "ML-DSA-65", mldsa87 = "ML-DSA-87"

    public var oidDER: [UInt8] { [0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, self == .mldsa65 ? 0x12 : 0x13] }
    public var publicKeySize: Int { self == .mldsa65 ? 1952 : 2592 }
    public var signatureSize: Int { self == .mldsa65 ? 3309 : 4627 }
    public static let seedSize = 32
    /// CKP_ML_DSA_65 = 2, CKP_ML_DSA_87 = 3.
    public var pkcs11ParameterSet: UInt { self == .mldsa65 ? 2 : 3 }
    public var kind: AsymmetricKind { self == .mldsa65 ? .mldsa65 : .mldsa87 }
}

/// ML-KEM (FIPS 203), the LAMPS ML-KEM certificate profile: OIDs 2.16.840.1.101.3.4.4.x, the raw
/// encapsulation key in the SPKI, the 64-byte seed `d || z`. ML-KEM-512 is not offered (swift-crypto
/// has 768 and 1024).
public enum MLKEMParameterSet: String, PostQuantumParameterSet {
    case mlkem768 = "ML-KEM-768", mlkem1024 = "ML-KEM-1024"

    public var oidDER: [UInt8] { [0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x04, self == .mlkem768 ? 0x02 : 0x03] }
    public var publicKeySize: Int { self == .mlkem768 ? 1184 : 1568 }
    public var ciphertextSize: Int { self == .mlkem768 ? 1088 : 1568 }
    public static let seedSize = 64
    public static let sharedSecretSize = 32
    /// CKP_ML_KEM_768 = 2, CKP_ML_KEM_1024 = 3.
    public var pkcs11ParameterSet: UInt { self == .mlkem768 ? 2 : 3 }
    public var kind: AsymmetricKind { self == .mlkem768 ? .mlkem768 : .mlkem1024 }
}

/// The DER both post-quantum key families share: an AlgorithmIdentifier with an OID and no
/// parameters, the raw public key in the BIT STRING, the seed as `[0] IMPLICIT OCTET STRING`.
enum PQEncoding {
    static func spki(oid: [UInt8], publicKey: [UInt8]) -> [UInt8] {
        der(0x30, der(0x30, oid) + der(0x03, [0] + publicKey))
    }

    static func pkcs8(oid: [UInt8], seed: [UInt8]) -> [UInt8] {
        der(0x30, [0x02, 0x01, 0x00] + der(0x30, oid) + der(0x04, der(0x80, seed)))
    }

    static func parse<T>(spki: [UInt8], among sets: [(T, [UInt8], Int)]) -> (T, [UInt8])? {
        var r = DERReader(spki)
        guard var outer = r.read(0x30), r.atEnd, var alg = outer.read(0x30), let oid = alg.readRaw(0x06), alg.atEnd,
            let bits = outer.read(0x03)?.rest, outer.atEnd,
            let (set, _, size) = sets.first(where: { $0.1 == oid }), bits.count == size + 1, bits.first == 0
        else { return nil }
        return (set, Array(bits.dropFirst()))
    }

    static func parse<T>(pkcs8: [UInt8], among sets: [(T, [UInt8])], seedSize: Int) -> (T, [UInt8])? {
        var r = DERReader(pkcs8)
        guard var outer = r.read(0x30), r.atEnd, outer.read(0x02)?.rest == [0], var alg = outer.read(0x30),
            let oid = alg.readRaw(0x06), alg.atEnd, let (set, _) = sets.first(where: { $0.1 == oid }),
            var inner = outer.read(0x04), outer.atEnd, let seed = inner.read(0x80)?.rest, inner.atEnd, seed.count == seedSize
        else { return nil }
        return (set, seed)
    }

    static func der(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] {
        let n = content.count
        let length: [UInt8] =
            n < 0x80
            ? [UInt8(n)]
            : n < 0x100
                ? [0x81, UInt8(n)]
                : n < 0x10000 ? [0x82, UInt8(n >> 8), UInt8(n & 0xff)] : [0x83, UInt8(n >> 16), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)]
        return [tag] + length + content
    }
}

/// A bounds-checked reader of definite-length DER (lengths up to 3 bytes): every length from the
/// input is checked against what remains before it is used.
struct DERReader {
    private let bytes: [UInt8]
    private var at = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var atEnd: Bool { at == bytes.count }
    var rest: [UInt8] { Array(bytes[at...]) }

    /// The content of the next element if it has this tag, as a reader; nil otherwise.
    mutating func read(_ tag: UInt8) -> DERReader? {
        guard let (start, end) = element(tag) else { return nil }
        at = end
        return DERReader(Array(bytes[start..<end]))
    }

    /// The whole next element (tag, length, content) if it has this tag.
    mutating func readRaw(_ tag: UInt8) -> [UInt8]? {
        let begin = at
        guard let (_, end) = element(tag) else { return nil }
        at = end
        return Array(bytes[begin..<end])
    }

    private func element(_ tag: UInt8) -> (Int, Int)? {
        guard bytes.count - at >= 2, bytes[at] == tag else { return nil }
        var i = at + 1
        let first = Int(bytes[i])
        i += 1
        var length = first
        if first >= 0x80 {
            let count = first & 0x7f
            guard (1...3).contains(count), bytes.count - i >= count else { return nil }
            length = 0
            for _ in 0..<count {
                length = length << 8 | Int(bytes[i])
                i += 1
            }
        }
        guard bytes.count - i >= length else { return nil }
        return (i, i + length)
    }
}
