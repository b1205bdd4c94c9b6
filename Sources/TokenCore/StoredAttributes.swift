import VSSMWire

/// The PKCS#11 attributes an application chose for a key that the service cannot derive itself:
/// usage flags (CKA_SIGN, CKA_ENCRYPT, …), CKA_ALWAYS_AUTHENTICATE, CKA_MODIFIABLE/COPYABLE/
/// DESTROYABLE. Kept with the key in the service as an opaque blob (records of an 8-byte
/// little-endian attribute type and a 1-byte boolean), so every process sees the same object.
public enum StoredAttributes {
    /// Flags of the private half or a secret key.
    static let privateFlags: [AttributeType] = [
        .decrypt, .sign, .unwrap, .signRecover, .derive, .alwaysAuthenticate, .wrapWithTrusted, .private,
        .sensitive, .extractable,
    ]
    /// Flags of the public half (stored under their own types; they never clash with private ones).
    static let publicFlags: [AttributeType] = [.encrypt, .verify, .wrap, .verifyRecover, .trusted]
    /// Object flags, shared by both halves.
    static let objectFlags: [AttributeType] = [.modifiable, .copyable, .destroyable]
    /// Vendor-defined: the application destroyed the public half of this pair (C_DestroyObject on
    /// the CKO_PUBLIC_KEY); the key itself lives on with its private half.
    public static let publicHalfDestroyed = AttributeType(rawValue: 0x8000_0000 | 0x5653_0001)
    /// Vendor-defined: a two-key Triple-DES key (CKK_DES2), stored as K1 K2 K1.
    public static let twoKeyDES = AttributeType(rawValue: 0x8000_0000 | 0x5653_0002)
    /// Vendor-defined: the pair was made by C_GenerateKeyPair, which creates both halves as objects;
    /// a private key imported or copied is one object (its public half is shown, not kept once the
    /// private key goes).
    public static let generatedAsPair = AttributeType(rawValue: 0x8000_0000 | 0x5653_0003)
    /// The vendor-defined records: bookkeeping, never attributes of an object.
    static let vendor: Set<AttributeType> = [publicHalfDestroyed, twoKeyDES, generatedAsPair]
    static let all = privateFlags + publicFlags + objectFlags + [publicHalfDestroyed, twoKeyDES, generatedAsPair]

    /// The flags a key's templates set (a key pair: both templates; a secret key: one).
    static func collect(_ templates: Template...) throws(TokenError) -> [AttributeType: Bool] {
        var out: [AttributeType: Bool] = [:]
        for t in templates {
            for type in all { if let b = try t.bool(type) { out[type] = b } }
        }
        return out
    }

    /// A secret key's flags: the template's. CKA_WRAP and CKA_UNWRAP are FALSE unless the template
    /// says TRUE (a key that wraps by default hands out what it wraps); written down, so the service
    /// enforces what the object shows.
    static func secretKey(_ template: Template, aes: Bool, extra: [AttributeType: Bool] = [:]) throws(TokenError) -> [UInt8]? {
        var flags = try collect(template).merging(extra) { _, e in e }
        if aes {
            if flags[.wrap] == nil { flags[.wrap] = false }
            if flags[.unwrap] == nil { flags[.unwrap] = false }
        }
        return encode(flags)
    }

    public static func encode(_ flags: [AttributeType: Bool]) -> [UInt8]? {
        KeyFlags(Dictionary(uniqueKeysWithValues: flags.map { ($0.key.rawValue, $0.value) })).blob
    }

    /// Decodes what the service returned; anything malformed (it is outside data) is ignored.
    public static func decode(_ bytes: [UInt8]?) -> [AttributeType: Bool] {
        var out: [AttributeType: Bool] = [:]
        for (raw, value) in KeyFlags(blob: bytes).values where all.contains(AttributeType(rawValue: raw)) {
            out[AttributeType(rawValue: raw)] = value
        }
        return out
    }
}
