import Glibc
import VSSMCrypto
import VSSMWire
import X509

/// `ext/attest` (issue 22, item 2): a statement for a key generated in this service.
extension KeyServiceNode {
    func extAttest(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.attestRequest)
        let e = try asymmetricKey(r.string("keyName"), ctx, for: .attest)
        guard let caDER = config.attestationCA, let certDER = config.attestationCertificate else {
            throw .unavailable(
                "this deployment has no attestation CA (vssm init makes one: attestationCA and attestationCertificate in config.json)")
        }
        guard let rpc = rpcKey else { throw .unavailable("bootstrapping") }
        // Never claimed for a key that came from outside (imported, unwrapped, derived, copied from one).
        guard e.attributes.origin == "generated" else {
            throw .conflict(
                "Key \(r.string("keyName")) was not generated in this service (\(e.attributes.origin ?? "origin unknown")); it cannot be attested."
            )
        }
        let flags = KeyFlags(blob: e.attributes.pkcs11)
        // Sensitivity and extractability change one way only (checkFlagChange): what holds now held since birth.
        guard flags.isSensitive, !flags.isExtractable else {
            throw .conflict("Key \(r.string("keyName")) is not sensitive and never extractable; it cannot be attested.")
        }
        var usage: [String] = []
        for (name, allowed) in [
            ("sign", flags.canSign), ("verify", flags.canVerify), ("encrypt", flags.canEncrypt), ("decrypt", flags.canDecrypt),
            ("derive", flags.canDerive), ("wrap", flags.canWrap), ("unwrap", flags.canUnwrap),
        ] where allowed && (e.key.kind == .rsa || !["encrypt", "decrypt"].contains(name)) {
            // Encryption is RSA's alone among the kinds attested (the flags say nothing of it elsewhere).
            usage.append(name)
        }
        var host = [CChar](repeating: 0, count: 256)
        _ = gethostname(&host, host.count - 1)
        let (namespace, plain) = Namespace.split(e.name)
        let claims = Attestation.Claims(
            key: plain, namespace: namespace, keySpec: e.keyType, generated: true, sensitive: true, neverExtractable: true, usage: usage,
            createdAt: e.createdAt, attestedAt: KeyServiceNode.nowMillis(),
            node: String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        let statement: [UInt8]
        do {
            var der = rpc.pkcs8DER
            defer { zeroize(&der) }
            let key = try Attestation.key(rpcKeyPKCS8: der)
            let certificate = try Certificate(derEncoded: certDER)
            guard certificate.publicKey == .init(key.publicKey) else {
                throw ServiceError.unavailable("attestationCertificate is not for this deployment's attestation key (another RPC key?)")
            }
            statement = try Attestation.statement(spki: e.spki, claims: claims, attestationKey: key, attestationCertificate: certificate)
        } catch let error as ServiceError { throw error } catch { throw .internalError("attestation: \(error)") }
        audit.info("Attested key \(r.string("keyName")) (\(e.keyType)).")
        var w = WireWriter()
        w.bytes("certificate", statement)
        w.bytes("attestationCertificate", certDER)
        w.bytes("attestationCA", caDER)
        w.string("claims", String(decoding: claims.json, as: UTF8.self))
        return ok(w)
    }
}
