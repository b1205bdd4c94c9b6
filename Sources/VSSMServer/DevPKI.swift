import Crypto
import FoundationEssentials
import VSSMClient
import SwiftASN1
import VSSMCrypto
import X509
import _CryptoExtras

/// The PKI `vssm init` creates: an RPC certificate (RSA, `CN=VSSM` with SAN `DNS:VSSM`, which Go ≥ 1.15
/// clients require; both server and client EKU because nodes also use it as the sync client identity),
/// a client CA and one client certificate. Built with swift-certificates; no openssl CLI.
public struct DevPKI: Sendable {
    public let rpcCertificateDER: [UInt8]
    public let rpcKeyPEM: String
    public let clientCACertificateDER: [UInt8]
    public let clientCAKeyPEM: String
    public let clientCertificateDER: [UInt8]
    public let clientKeyPEM: String

    static func der(_ cert: Certificate) throws -> [UInt8] {
        var s = DER.Serializer()
        try s.serialize(cert)
        return s.serializedBytes
    }

    public static func create(clientName: String = "vssm-client", rpcKeyBits: Int = 2048) throws -> DevPKI {
        let now = Date()
        let rpcKey = try _RSA.Signing.PrivateKey(keySize: .init(bitCount: rpcKeyBits))
        let rpcName = try DistinguishedName { CommonName("VSSM") }
        let rpc = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(rpcKey.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 10 * 365 * 86400,
            issuer: rpcName, subject: rpcName, signatureAlgorithm: .sha256WithRSAEncryption,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(digitalSignature: true, keyEncipherment: true, keyCertSign: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames([.dnsName("VSSM")])
            },
            issuerPrivateKey: .init(rpcKey))

        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName { CommonName("VSSM Client CA") }
        let ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 10 * 365 * 86400,
            issuer: caName, subject: caName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(caKey))

        let (clientDER, clientKeyPEM) = try issueClient(name: clientName, caCertificate: ca, caKey: caKey, now: now)
        return DevPKI(
            rpcCertificateDER: try der(rpc), rpcKeyPEM: rpcKey.pkcs8PEMRepresentation,
            clientCACertificateDER: try der(ca), clientCAKeyPEM: caKey.pemRepresentation,
            clientCertificateDER: clientDER, clientKeyPEM: clientKeyPEM)
    }

    /// A client certificate (EKU clientAuth, as Go requires) signed by the client CA.
    public static func issueClient(name: String, caCertificateDER: [UInt8], caKeyPEM: String) throws -> (der: [UInt8], keyPEM: String) {
        let ca = try Certificate(derEncoded: caCertificateDER)
        let caKey = try P256.Signing.PrivateKey(pemRepresentation: caKeyPEM)
        return try issueClient(name: name, caCertificate: ca, caKey: caKey, now: Date())
    }

    static func issueClient(
        name: String, caCertificate ca: Certificate, caKey: P256.Signing.PrivateKey, now: Date
    ) throws -> (der: [UInt8], keyPEM: String) {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName { CommonName(name) }
        let cert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 825 * 86400,
            issuer: ca.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.clientAuth])
            },
            issuerPrivateKey: .init(caKey))
        return (try der(cert), key.pemRepresentation)
    }

    /// The throwaway certificate of the bootstrapping phase (the original: self-signed, CN=VSSM,
    /// regenerated on each start). Clients cannot verify it; `vssm bootstrap` can pin its fingerprint.
    static func bootstrapIdentity() throws -> (certificateDER: [UInt8], keyPKCS8: [UInt8]) {
        let now = Date()
        let key = P256.Signing.PrivateKey()
        // The unit tells clients that a node is waiting for its RPC key (not a wrong CA).
        let name = try DistinguishedName {
            CommonName("VSSM")
            OrganizationalUnitName(BootstrapPhase.organizationalUnit)
        }
        let cert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now - 86400, notValidAfter: now + 30 * 86400,
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([.dnsName("VSSM")])
            },
            issuerPrivateKey: .init(key))
        return (try der(cert), Array(key.derRepresentation))
    }

    /// Subject of a DER certificate as text (for the audit log).
    static func subject(ofDER der: [UInt8]) -> String {
        guard let c = try? Certificate(derEncoded: der) else { return "?" }
        return c.subject.description
    }
}
