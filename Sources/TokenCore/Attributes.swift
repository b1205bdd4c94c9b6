import VSSMCrypto

/// Attribute values in their PKCS#11 byte form: CK_BBOOL is one byte, CK_ULONG is a native
/// machine word, everything else is the raw bytes. Stored pre-encoded so reads are copies.
public enum AttributeValue {
    public static func bool(_ b: Bool) -> [UInt8] { [b ? 1 : 0] }

    public static func ulong(_ v: UInt) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }

    public static func ulongs(_ vs: [UInt]) -> [UInt8] { vs.flatMap { ulong($0) } }

    public static func decodeBool(_ bytes: [UInt8]) -> Bool? {
        bytes.count == 1 ? bytes[0] != 0 : nil
    }

    public static func decodeULong(_ bytes: [UInt8]) -> UInt? {
        guard bytes.count == MemoryLayout<UInt>.size else { return nil }
        return bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt.self) }
    }
}

/// A template as the caller gave it (C_FindObjectsInit, C_CreateObject, C_GenerateKey*).
public struct Template: Sendable {
    public var attributes: [(AttributeType, [UInt8])]
    public init(_ attributes: [(AttributeType, [UInt8])] = []) { self.attributes = attributes }

    public subscript(_ t: AttributeType) -> [UInt8]? { attributes.last(where: { $0.0 == t })?.1 }

    public func bool(_ t: AttributeType) throws(TokenError) -> Bool? {
        guard let v = self[t] else { return nil }
        guard let b = AttributeValue.decodeBool(v) else { throw .attributeValueInvalid(t) }
        return b
    }

    public func ulong(_ t: AttributeType) throws(TokenError) -> UInt? {
        guard let v = self[t] else { return nil }
        guard let u = AttributeValue.decodeULong(v) else { throw .attributeValueInvalid(t) }
        return u
    }

    public func string(_ t: AttributeType) -> String? {
        self[t].map { String(decoding: $0, as: UTF8.self) }
    }
}

/// Minimal DER reading for SPKI and certificates (the module must not trap on hostile bytes).
public enum DER {
    /// (tag, content range, next offset) of the TLV at `offset`.
    public static func element(_ d: [UInt8], at offset: Int) -> (tag: UInt8, content: Range<Int>, end: Int)? {
        guard offset + 2 <= d.count else { return nil }
        let tag = d[offset]
        var len = Int(d[offset + 1])
        var p = offset + 2
        if len & 0x80 != 0 {
            let n = len & 0x7F
            guard n >= 1, n <= 4, p + n <= d.count else { return nil }
            len = 0
            for i in 0..<n { len = len << 8 | Int(d[p + i]) }
            p += n
        }
        guard len >= 0, p + len <= d.count else { return nil }
        return (tag, p..<(p + len), p + len)
    }

    /// The subjectPublicKey BIT STRING contents (without the unused-bits byte) of an SPKI.
    public static func subjectPublicKeyBits(spki: [UInt8]) -> [UInt8]? {
        guard let seq = element(spki, at: 0), seq.tag == 0x30,
            let alg = element(spki, at: seq.content.lowerBound), alg.tag == 0x30,
            let bits = element(spki, at: alg.end), bits.tag == 0x03, bits.content.count >= 1
        else { return nil }
        return Array(spki[(bits.content.lowerBound + 1)..<bits.content.upperBound])
    }

    /// The named-curve parameters (full OID TLV, the CKA_EC_PARAMS form) of an EC SPKI.
    public static func ecCurveParameters(spki: [UInt8]) -> [UInt8]? {
        guard let seq = element(spki, at: 0), seq.tag == 0x30,
            let alg = element(spki, at: seq.content.lowerBound), alg.tag == 0x30,
            let algOID = element(spki, at: alg.content.lowerBound), algOID.tag == 0x06,
            let params = element(spki, at: algOID.end), params.tag == 0x06, params.end <= alg.content.upperBound
        else { return nil }
        return Array(spki[algOID.end..<params.end])
    }

    /// Subject, issuer, serial number (full TLVs) and SPKI of a DER certificate.
    public static func certificateFields(_ cert: [UInt8]) -> (serial: [UInt8], issuer: [UInt8], subject: [UInt8], spki: [UInt8])? {
        guard let c = element(cert, at: 0), c.tag == 0x30,
            let tbs = element(cert, at: c.content.lowerBound), tbs.tag == 0x30
        else { return nil }
        var p = tbs.content.lowerBound
        guard var e = element(cert, at: p) else { return nil }
        if e.tag == 0xA0 { p = e.end; guard let n = element(cert, at: p) else { return nil }; e = n }  // version
        let serial = Array(cert[p..<e.end])
        guard let sigAlg = element(cert, at: e.end), let issuer = element(cert, at: sigAlg.end),
            let validity = element(cert, at: issuer.end), let subject = element(cert, at: validity.end),
            let spki = element(cert, at: subject.end)
        else { return nil }
        return (
            serial, Array(cert[sigAlg.end..<issuer.end]), Array(cert[validity.end..<subject.end]),
            Array(cert[subject.end..<spki.end])
        )
    }

    /// DER OCTET STRING wrapping `bytes` (CKA_EC_POINT form).
    public static func octetString(_ bytes: [UInt8]) -> [UInt8] {
        // Any length (the two-byte form trapped from 65536 bytes on).
        DERBuilder.tlv(0x04, bytes)
    }

    /// Contents of a DER OCTET STRING, or nil.
    public static func unwrapOctetString(_ d: [UInt8]) -> [UInt8]? {
        guard let e = element(d, at: 0), e.tag == 0x04, e.end == d.count else { return nil }
        return Array(d[e.content])
    }
}

extension Template {
    /// Overwrites the values (they may hold key material from C_CreateObject).
    public mutating func wipe() {
        for i in attributes.indices { for j in attributes[i].1.indices { attributes[i].1[j] = 0 } }
        attributes.removeAll()
    }
}
