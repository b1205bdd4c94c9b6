import VSSMCrypto

/// DER encoding for the PKCS#8 blobs that C_CreateObject builds from templates.
extension DER {
    static func tlv(_ tag: UInt8, _ body: [UInt8]) -> [UInt8] { DERBuilder.tlv(tag, body) }
    static func sequence(_ parts: [UInt8]...) -> [UInt8] { tlv(0x30, parts.flatMap { $0 }) }

    /// A non-negative INTEGER from big-endian magnitude bytes.
    static func integer(_ magnitude: [UInt8]) -> [UInt8] {
        var m = Array(magnitude.drop(while: { $0 == 0 }))
        if m.isEmpty { m = [0] }
        if m[0] & 0x80 != 0 { m.insert(0, at: 0) }
        return tlv(0x02, m)
    }

    static let rsaEncryption: [UInt8] = [0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01]
    static let ecPublicKey: [UInt8] = [0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01]

    /// PKCS#8 PrivateKeyInfo of an RSA key from its CRT components (RFC 8017 A.1.2).
    public static func rsaPKCS8(
        n: [UInt8], e: [UInt8], d: [UInt8], p: [UInt8], q: [UInt8], dp: [UInt8], dq: [UInt8], qinv: [UInt8]
    ) -> [UInt8] {
        let pkcs1 = sequence(
            integer([0]), integer(n), integer(e), integer(d), integer(p), integer(q), integer(dp), integer(dq), integer(qinv))
        return sequence(integer([0]), sequence(rsaEncryption, [0x05, 0x00]), tlv(0x04, pkcs1))
    }

    /// PKCS#8 PrivateKeyInfo of an EC key from the curve OID (DER) and the private scalar (RFC 5915).
    public static func ecPKCS8(curveOID: [UInt8], scalar: [UInt8], fieldSize: Int) -> [UInt8] {
        var k = Array(scalar.drop(while: { $0 == 0 }))
        if k.count < fieldSize { k = [UInt8](repeating: 0, count: fieldSize - k.count) + k }
        let sec1 = sequence(integer([1]), tlv(0x04, k), tlv(0xA0, curveOID))
        return sequence(integer([0]), sequence(ecPublicKey, curveOID), tlv(0x04, sec1))
    }

    /// RFC 8410 PKCS#8 of an Ed25519/Ed448 private key (CurvePrivateKey inside an OCTET STRING).
    public static func edwardsPKCS8(curveOID: [UInt8], key: [UInt8]) -> [UInt8] {
        sequence(integer([0]), sequence(curveOID), tlv(0x04, tlv(0x04, key)))
    }

    /// SubjectPublicKeyInfo of an RSA public key (C_CreateObject of a CKO_PUBLIC_KEY).
    public static func rsaSPKI(n: [UInt8], e: [UInt8]) -> [UInt8] {
        sequence(sequence(rsaEncryption, [0x05, 0x00]), tlv(0x03, [0] + sequence(integer(n), integer(e))))
    }

    /// SubjectPublicKeyInfo of a DSA public key (RFC 3279: id-dsa with Dss-Parms, y as INTEGER).
    public static func dsaSPKI(p: [UInt8], q: [UInt8], g: [UInt8], y: [UInt8]) -> [UInt8] {
        let idDSA: [UInt8] = [0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x38, 0x04, 0x01]
        return sequence(sequence(idDSA, sequence(integer(p), integer(q), integer(g))), tlv(0x03, [0] + integer(y)))
    }

    /// SubjectPublicKeyInfo of an EC public key from CKA_EC_PARAMS (named curve) and the point.
    public static func ecSPKI(curveOID: [UInt8], point: [UInt8]) -> [UInt8] { DERBuilder.ecSPKI(curveOID: curveOID, point: point) }
}
