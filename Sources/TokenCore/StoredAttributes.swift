/// The PKCS#11 attributes an application chose for a key that the service cannot derive itself:
/// usage flags (CKA_SIGN, CKA_ENCRYPT, …), CKA_ALWAYS_AUTHENTICATE, CKA_MODIFIABLE/COPYABLE/
/// DESTROYABLE. Kept with the key in the service as an opaque blob (records of an 8-byte
/// little-endian attribute type and a 1-byte boolean), so every process sees the same object.
public enum StoredAttributes {
    /// Flags of the private half or a secret key.
    static let privateFlags: [AttributeType] = [.decrypt, .sign, .unwrap, .signRecover, .derive, .alwaysAuthenticate, .wrapWithTrusted, .private]
    /// Flags of the public half (stored under their own types; they never clash with private ones).
    static let publicFlags: [AttributeType] = [.encrypt, .verify, .wrap, .verifyRecover, .trusted]
    /// Object flags, shared by both halves.
    static let objectFlags: [AttributeType] = [.modifiable, .copyable, .destroyable]
    /// Vendor-defined: the application destroyed the public half of this pair (C_DestroyObject on
    /// the CKO_PUBLIC_KEY); the key itself lives on with its private half.
    public static let publicHalfDestroyed = AttributeType(rawValue: 0x8000_0000 | 0x5653_0001)
    static let all = privateFlags + publicFlags + objectFlags + [publicHalfDestroyed]
    static let maxBytes = 1024

    /// The flags a key's templates set (a key pair: both templates; a secret key: one).
    static func collect(_ templates: Template...) throws(TokenError) -> [AttributeType: Bool] {
        var out: [AttributeType: Bool] = [:]
        for t in templates {
            for type in all { if let b = try t.bool(type) { out[type] = b } }
        }
        return out
    }

    public static func encode(_ flags: [AttributeType: Bool]) -> [UInt8]? {
        guard !flags.isEmpty else { return nil }
        var out: [UInt8] = []
        for (type, value) in flags.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            withUnsafeBytes(of: UInt64(type.rawValue).littleEndian) { out += $0 }
            out.append(value ? 1 : 0)
        }
        return out
    }

    /// Decodes what the service returned; anything malformed (it is outside data) is ignored.
    public static func decode(_ bytes: [UInt8]?) -> [AttributeType: Bool] {
        guard let bytes, bytes.count % 9 == 0, bytes.count <= maxBytes else { return [:] }
        var out: [AttributeType: Bool] = [:]
        var i = 0
        while i + 9 <= bytes.count {
            var raw: UInt64 = 0
            for j in 0..<8 { raw |= UInt64(bytes[i + j]) << (8 * UInt64(j)) }
            if let v = UInt(exactly: raw) {
                let type = AttributeType(rawValue: v)
                if all.contains(type) { out[type] = bytes[i + 8] != 0 }
            }
            i += 9
        }
        return out
    }
}
