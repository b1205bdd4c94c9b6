import ArgumentParser
import VSSMClient
import VSSMCrypto
import VSSMServer
import VSSMWire

/// `vssm admin attest KEY`: the statement that KEY was generated in the service (issue 22, item 2).
struct AttestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attest",
        abstract: "Fetch a key's attestation: a certificate for its public key, signed by the deployment's attestation key.",
        discussion: """
            Writes the statement certificate followed by the attestation key's certificate (PEM) to --out, and prints the \
            claims. Check it with `vssm verify-attestation FILE --ca attestation-ca.pem`, or with OpenSSL: \
            openssl verify -CAfile attestation-ca.pem -untrusted FILE FILE.
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Key name (an ASYMMETRIC key generated in the service).") var name: String
    @Option(help: "Output file (PEM: statement, then attestation certificate).") var out: String

    func run() throws {
        let c = try connection.client()
        var w = WireWriter()
        w.string("keyName", name)
        let r = try vssm.run { () throws(ClientError) in
            try c.call(Route.extAttest, w, response: ExtSchemas.attestResponse, idempotent: true)
        }
        let pem = X509Info.pem(certificates: [r.bytes("certificate") ?? [], r.bytes("attestationCertificate") ?? []])
        try writeFile(out, Array(pem.utf8), mode: 0o644)
        print(r.string("claims"))
        printErr("wrote \(out) (statement and attestation certificate)")
    }
}

/// `vssm verify-attestation FILE --ca attestation-ca.pem`: checks a statement offline.
struct VerifyAttestationCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-attestation",
        abstract: "Check a key attestation against the deployment's attestation CA; print its claims.",
        discussion: """
            FILE holds the statement certificate, then the attestation key's certificate (what `vssm admin attest` writes). \
            Exit status 0: the chain verifies, the certificates are valid now and the claims say the key was generated in \
            the service, sensitive and never extractable; 1 otherwise.
            """)
    @Argument(help: "The attestation (PEM).") var file: String
    @Option(help: "The attestation CA certificate (PEM), from vssm init.") var ca: String

    func run() throws {
        let blocks = X509Info.derBlocks(pem: String(decoding: try readFile(file), as: UTF8.self))
        guard blocks.count >= 2 else { throw CLIError("\(file) must hold the statement and the attestation certificate (PEM)") }
        guard let caDER = X509Info.derBlocks(pem: String(decoding: try readFile(ca), as: UTF8.self)).first else {
            throw CLIError("\(ca) holds no certificate")
        }
        let claims: Attestation.Claims
        do {
            claims = try Attestation.verify(statementDER: blocks[0], attestationCertificateDER: blocks[1], caDER: caDER)
        } catch { throw CLIError("attestation not verified: \(error)") }
        print("verified: key \(claims.key) (\(claims.keySpec), namespace \(claims.namespace)) was generated in the service,")
        print("  sensitive and never extractable; usage \(claims.usage.joined(separator: ", ")); attested by node \(claims.node)")
    }
}
