/// The PKCS#11 attributes kept with a key (`attributes` of the extension API): records of an
/// 8-byte little-endian attribute type and a 1-byte boolean. The module writes them; the service
/// reads the few it enforces (sensitivity, extractability, derive/wrap/unwrap permission).
public struct KeyFlags: Sendable, Equatable {
    public var values: [UInt: Bool]
    public static let maxBytes = 1024

    public static let sensitive: UInt = 0x103
    public static let extractable: UInt = 0x162
    public static let derive: UInt = 0x10C
    public static let wrap: UInt = 0x106
    public static let unwrap: UInt = 0x107
    public static let trusted: UInt = 0x86
    public static let wrapWithTrusted: UInt = 0x210
    public static let copyable: UInt = 0x171
    public static let encrypt: UInt = 0x104
    public static let decrypt: UInt = 0x105
    public static let sign: UInt = 0x108
    public static let verify: UInt = 0x10A
    /// PKCS#11 3.2 CKA_ENCAPSULATE / CKA_DECAPSULATE (ML-KEM keys).
    public static let encapsulate: UInt = 0x633
    public static let decapsulate: UInt = 0x634

    public init(_ values: [UInt: Bool] = [:]) { self.values = values }

    /// Decodes a blob; anything malformed (outside data) gives no flags.
    public init(blob: [UInt8]?) {
        values = [:]
        guard let bytes = blob, bytes.count % 9 == 0, bytes.count <= KeyFlags.maxBytes else { return }
        var i = 0
        while i + 9 <= bytes.count {
            var raw: UInt64 = 0
            for j in 0..<8 { raw |= UInt64(bytes[i + j]) << (8 * UInt64(j)) }
            if let v = UInt(exactly: raw) { values[v] = bytes[i + 8] != 0 }
            i += 9
        }
    }

    /// The blob (nil when there are no flags), records sorted by type.
    public var blob: [UInt8]? {
        guard !values.isEmpty else { return nil }
        var out: [UInt8] = []
        for (type, value) in values.sorted(by: { $0.key < $1.key }) {
            withUnsafeBytes(of: UInt64(type).littleEndian) { out += $0 }
            out.append(value ? 1 : 0)
        }
        return out
    }

    public subscript(_ type: UInt) -> Bool? {
        get { values[type] }
        set { values[type] = newValue }
    }

    /// What the service enforces, with PKCS#11's defaults for a key that says nothing (every key
    /// made through the original API): sensitive, not extractable, no derive/wrap/unwrap.
    public var isSensitive: Bool { values[KeyFlags.sensitive] ?? true }
    public var isExtractable: Bool { values[KeyFlags.extractable] ?? false }
    public var canDerive: Bool { values[KeyFlags.derive] ?? false }
    public var canWrap: Bool { values[KeyFlags.wrap] ?? false }
    public var canUnwrap: Bool { values[KeyFlags.unwrap] ?? false }
    public var canCopy: Bool { values[KeyFlags.copyable] ?? true }
    /// ML-KEM keys encapsulate and decapsulate unless their creator said otherwise.
    public var canEncapsulate: Bool { values[KeyFlags.encapsulate] ?? true }
    public var canDecapsulate: Bool { values[KeyFlags.decapsulate] ?? true }
    public var isTrusted: Bool { values[KeyFlags.trusted] ?? false }
    public var wrapsWithTrustedOnly: Bool { values[KeyFlags.wrapWithTrusted] ?? false }
    /// Usage set at creation (CKA_SIGN, CKA_DECRYPT, CKA_ENCRYPT, CKA_VERIFY): a key that says
    /// nothing allows the operation (the original API knows no usage flags).
    public var canSign: Bool { values[KeyFlags.sign] ?? true }
    public var canDecrypt: Bool { values[KeyFlags.decrypt] ?? true }
    public var canEncrypt: Bool { values[KeyFlags.encrypt] ?? true }
    public var canVerify: Bool { values[KeyFlags.verify] ?? true }
}
