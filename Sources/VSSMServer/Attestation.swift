import Crypto
import FoundationEssentials
import SwiftASN1
import VSSMCrypto
import VSSMWire
import X509

/// Key attestation (issue 22, item 2). A deployment's attestation CA (made by `vssm init`, its key
/// kept offline like the client CA's) certifies one attestation key, which every node derives from
/// the RPC private key (HKDF-SHA256): no new secret to distribute, and no one without the RPC key
/// can make it. For a key generated in the service, sensitive and never extractable, the node
/// issues a statement: an X.509 certificate for the attested key's public key, signed by the
/// attestation key, carrying the claims in a non-critical extension (`claimsOID`, a UTF8String
/// of JSON). `openssl verify -CAfile attestation-ca.pem -untrusted attestation.pem key.pem`
/// checks it; `vssm verify-attestation` checks it and prints the claims. An imported (or
/// unwrapped, derived) key is never attested.
public enum Attestation {
    /// 2.25.6652106529043319760: vssm attestation claims. An X.667 arc with a random 63-bit
    /// identifier (not a whole UUID: SwiftASN1, which swift-certificates builds on, keeps arcs in 64 bits).
    static let claimsOIDDER: [UInt8] = [0x06, 0x0a, 0x69, 0xdc, 0xa8, 0xc1, 0xf4, 0xcc, 0xfd, 0xbc, 0x97, 0x50]
    public static let claimsOIDText = "2.25.6652106529043319760"
    static func claimsOID() throws -> ASN1ObjectIdentifier { try ASN1ObjectIdentifier(derEncoded: claimsOIDDER) }

    /// The attestation key of the deployment whose RPC private key this is (PKCS#8 DER as OpenSSL
    /// writes it: every node and `vssm init` see the same bytes).
    static func key(rpcKeyPKCS8 der: [UInt8]) throws -> P256.Signing.PrivateKey {
        let ikm = SymmetricKey(data: der)
        for counter in 0..<16 {
            let raw = HKDF<SHA256>.deriveKey(
                inputKeyMaterial: ikm, salt: Array("vssm attestation".utf8), info: Array("key \(counter)".utf8), outputByteCount: 32)
            if let k = try? raw.withUnsafeBytes({ try P256.Signing.PrivateKey(rawRepresentation: $0) }) { return k }
        }
        throw ServiceError.internalError("no attestation key could be derived")
    }

    public struct Authority: Sendable {
        public let caCertificateDER: [UInt8]
        public let caKeyPEM: String
        public let attestationCertificateDER: [UInt8]
    }

    /// `vssm init`: the attestation CA and its certificate for the deployment's attestation key.
    public static func createAuthority(rpcKeyPKCS8: [UInt8], years: Int = 10) throws -> Authority {
        let now = Date()
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName { CommonName("VSSM Attestation CA") }
        let ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + Double(years) * 365 * 86400,
            issuer: caName, subject: caName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 1))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(caKey))
        let attestationKey = try key(rpcKeyPKCS8: rpcKeyPKCS8)
        let attestation = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(attestationKey.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + Double(years) * 365 * 86400,
            issuer: caName, subject: try DistinguishedName { CommonName("VSSM Attestation Key") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                // It issues the statements (end-entity certificates), nothing below them.
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true))
            },
            issuerPrivateKey: .init(caKey))
        return Authority(
            caCertificateDER: try DevPKI.der(ca), caKeyPEM: caKey.pemRepresentation, attestationCertificateDER: try DevPKI.der(attestation))
    }

    /// What a statement says about the key (the extension's JSON, documented in docs/attestation.md).
    public struct Claims: Sendable, Equatable {
        public var key: String
        public var namespace: String
        public var keySpec: String
        public var generated: Bool
        public var sensitive: Bool
        public var neverExtractable: Bool
        public var usage: [String]
        public var createdAt: Int64
        public var attestedAt: Int64
        public var node: String

        var json: [UInt8] {
            var w = WireWriter()
            w.object("version", .number("1"))
            w.string("key", key)
            w.string("namespace", namespace)
            w.string("keySpec", keySpec)
            w.object("generatedInService", .bool(generated))
            w.object("sensitive", .bool(sensitive))
            w.object("neverExtractable", .bool(neverExtractable))
            w.object("usage", .array(usage.map { .string($0) }))
            w.object("createdAt", .number(String(createdAt)))
            w.object("attestedAt", .number(String(attestedAt)))
            w.string("node", node)
            return JSONWriter.serialize(w.value)
        }

        init(
            key: String, namespace: String, keySpec: String, generated: Bool, sensitive: Bool, neverExtractable: Bool,
            usage: [String], createdAt: Int64, attestedAt: Int64, node: String
        ) {
            self.key = key
            self.namespace = namespace
            self.keySpec = keySpec
            self.generated = generated
            self.sensitive = sensitive
            self.neverExtractable = neverExtractable
            self.usage = usage
            self.createdAt = createdAt
            self.attestedAt = attestedAt
            self.node = node
        }

        init(json bytes: [UInt8]) throws {
            let v = try JSONParser.parse(bytes)
            func str(_ k: String) -> String { if case .string(let s)? = v[k] { s } else { "" } }
            func bool(_ k: String) -> Bool { v[k] == .bool(true) }
            func num(_ k: String) -> Int64 { if case .number(let d)? = v[k], let i = Int64(d) { i } else { 0 } }
            guard num("version") == 1 else { throw ServiceError.badRequest("not a version-1 vssm attestation") }
            key = str("key")
            namespace = str("namespace")
            keySpec = str("keySpec")
            generated = bool("generatedInService")
            sensitive = bool("sensitive")
            neverExtractable = bool("neverExtractable")
            if case .array(let items)? = v["usage"] {
                usage = items.compactMap { if case .string(let s) = $0 { s } else { nil } }
            } else {
                usage = []
            }
            createdAt = num("createdAt")
            attestedAt = num("attestedAt")
            node = str("node")
        }
    }

    /// The statement for a key: its SubjectPublicKeyInfo certified with the claims.
    static func statement(
        spki: [UInt8], claims: Claims, attestationKey: P256.Signing.PrivateKey, attestationCertificate: Certificate
    ) throws -> [UInt8] {
        let subjectKey: Certificate.PublicKey
        do { subjectKey = try Certificate.PublicKey(derEncoded: spki) } catch {
            throw ServiceError.badRequest("\(claims.keySpec) keys cannot be attested yet (RSA, P-256, P-384, P-521 and Ed25519 keys can)")
        }
        var claimsDER = DER.Serializer()
        try claimsDER.serialize(ASN1UTF8String(String(decoding: claims.json, as: UTF8.self)))
        let now = Date()
        let statement = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: subjectKey,
            notValidBefore: now - 300, notValidAfter: attestationCertificate.notValidAfter,
            issuer: attestationCertificate.subject,
            subject: try DistinguishedName {
                OrganizationalUnitName("vssm attested key")
                CommonName(claims.key)
            },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Certificate.Extension(oid: try claimsOID(), critical: false, value: claimsDER.serializedBytes[...])
            },
            issuerPrivateKey: .init(attestationKey))
        return try DevPKI.der(statement)
    }

    /// `vssm verify-attestation`: the statement chains to the CA through the attestation
    /// certificate (signatures, names, validity now); its claims say generated, sensitive and never
    /// extractable. Answers the claims.
    public static func verify(statementDER: [UInt8], attestationCertificateDER: [UInt8], caDER: [UInt8]) throws -> Claims {
        let statement = try Certificate(derEncoded: statementDER)
        let attestation = try Certificate(derEncoded: attestationCertificateDER)
        let ca = try Certificate(derEncoded: caDER)
        let now = Date()
        for (what, c) in [("the attestation CA", ca), ("the attestation certificate", attestation), ("the statement", statement)] {
            guard c.notValidBefore <= now, now <= c.notValidAfter else { throw ServiceError.badRequest("\(what) is not valid now") }
        }
        guard ca.subject == ca.issuer, ca.publicKey.isValidSignature(ca.signature, for: ca) else {
            throw ServiceError.badRequest("the attestation CA is not a self-signed certificate")
        }
        guard attestation.issuer == ca.subject, ca.publicKey.isValidSignature(attestation.signature, for: attestation) else {
            throw ServiceError.badRequest("the attestation certificate was not issued by this attestation CA")
        }
        guard statement.issuer == attestation.subject, attestation.publicKey.isValidSignature(statement.signature, for: statement) else {
            throw ServiceError.badRequest("the statement was not signed by this deployment's attestation key")
        }
        let oid = try claimsOID()
        guard let ext = statement.extensions.first(where: { $0.oid == oid }) else {
            throw ServiceError.badRequest("the certificate carries no vssm attestation claims")
        }
        let text = try ASN1UTF8String(derEncoded: ext.value)
        let claims = try Claims(json: Array(String(text).utf8))
        guard claims.generated, claims.sensitive, claims.neverExtractable else {
            throw ServiceError.badRequest("the claims do not say generated in the service, sensitive and never extractable")
        }
        return claims
    }
}
