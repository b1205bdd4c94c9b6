import Testing
import VSSMCrypto
import VSSMTestSupport
import VSSMWire

@testable import VSSMServer

/// Key attestation (issue 22, item 2): a key generated in the service gets a statement that chains
/// to the attestation CA; an imported key, or one made extractable, gets none.
@Suite struct AttestationTests {
    @Test func generatedKeysAreAttestedImportedOnesNever() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        let pw = TestNode.password
        #expect(
            try n.post(
                c, Route.extGenerateKey, #"{"adminPassword":"\#(pw)","keyName":"gen","keyType":"ASYMMETRIC","keySpec":"EC","keySize":384}"#
            ).0 == 200)
        let (s, body) = try n.post(c, Route.extAttest, #"{"keyName":"gen"}"#)
        #expect(s == 200, "\(body)")
        let r = try WireObject.decode(Array(body.utf8), as: ExtSchemas.attestResponse)
        let statement = try #require(r.bytes("certificate"))
        let claims = try Attestation.verify(
            statementDER: statement, attestationCertificateDER: r.bytes("attestationCertificate") ?? [],
            caDER: TestNode.attestation.caCertificateDER)
        #expect(claims.key == "gen" && claims.keySpec == "EC" && claims.generated && claims.usage == ["sign", "verify"])
        #expect(
            try PublicKey(spki: try X509Info.subjectPublicKeyInfo(certificateDER: statement)).spkiDER
                == n.node.snapshot.asymmetric["gen"]?.spki)
        #expect(DevPKI.subject(ofDER: statement).contains("CN=gen"), "\(DevPKI.subject(ofDER: statement))")
        // Another deployment's CA does not accept it; a statement edited after signing fails.
        let other = try Attestation.createAuthority(rpcKeyPKCS8: try PrivateKey.generateEC(.p256).pkcs8DER)
        #expect(throws: (any Error).self) {
            _ = try Attestation.verify(
                statementDER: statement, attestationCertificateDER: r.bytes("attestationCertificate") ?? [], caDER: other.caCertificateDER)
        }
        var tampered = statement
        tampered[tampered.count / 2] ^= 1
        #expect(throws: (any Error).self) {
            _ = try Attestation.verify(
                statementDER: tampered, attestationCertificateDER: r.bytes("attestationCertificate") ?? [],
                caDER: TestNode.attestation.caCertificateDER)
        }
        // An imported key is never attested as generated here.
        let imported = try PrivateKey.generateEC(.p256).pkcs8DER
        #expect(
            try n.post(
                c, Route.extInjectKey, #"{"adminPassword":"\#(pw)","keyName":"imp","keyType":"ASYMMETRIC","key":"\#(b64(imported))"}"#
            ).0
                == 200)
        let refused = try n.post(c, Route.extAttest, #"{"keyName":"imp"}"#)
        #expect(refused.0 == 409 && refused.1.contains("not generated in this service"), "\(refused.1)")
        // Nor a generated key its creator made extractable.
        let readable = b64(KeyFlags([KeyFlags.extractable: true, KeyFlags.sensitive: true]).blob ?? [])
        #expect(
            try n.post(
                c, Route.extGenerateKey,
                #"{"adminPassword":"\#(pw)","keyName":"ext","keyType":"ASYMMETRIC","keySpec":"EC","keySize":256,"attributes":"\#(readable)"}"#
            ).0 == 200)
        #expect(try n.post(c, Route.extAttest, #"{"keyName":"ext"}"#).0 == 409)
        #expect(try n.post(c, Route.extAttest, #"{"keyName":"missing"}"#).0 == 404)
    }
}
