import VSSMCrypto
import VSSMWire

/// PKCS#11 3.2 C_EncapsulateKey / C_DecapsulateKey with CKM_ML_KEM (issue 22, item 1): both run in
/// the service, which holds the ML-KEM key; the shared secret becomes a secret key there (AES or
/// generic, CKA_VALUE_LEN bytes of it, all 32 by default) and never leaves it. The ciphertext
/// goes to and comes from the caller.
extension Library {
    /// The key kind and length a template asks of a shared secret (32 bytes).
    private static func sharedSecretKey(
        _ template: Template
    ) throws(TokenError) -> (
        kind: (type: KeyType, cipher: String?, prefix: String), length: Int
    ) {
        if let cls = try template.ulong(.class), cls != ObjectClass.secretKey.rawValue {
            throw .templateInconsistent("ML-KEM makes secret keys")
        }
        let kind = try secretKind(template)
        let length = try length(template)
        guard length <= MLKEMParameterSet.sharedSecretSize else {
            throw .templateInconsistent("an ML-KEM shared secret is 32 bytes; CKA_VALUE_LEN asks \(length)")
        }
        if kind.type == .symmetric, ![16, 24, 32].contains(length > 0 ? length : 32) {
            throw .templateInconsistent("an AES key is 16, 24 or 32 bytes (CKA_VALUE_LEN)")
        }
        return (kind, length)
    }

    private func kemKey(
        _ h: UInt, _ m: Mechanism, _ handle: ObjectHandle, _ cls: ObjectClass, _ use: AttributeType
    ) throws(TokenError) -> (
        ServiceKey, MLKEMParameterSet
    ) {
        let (s, t) = try session(h)
        guard m.type == .mlKEM else { throw .mechanismInvalid(m.type) }
        guard m.parameters == .none else { throw .mechanismParamInvalid("CKM_ML_KEM takes no parameter") }
        guard try mechanisms(slot: s.slot)[m.type] != nil else { throw .mechanismInvalid(m.type) }
        guard let o = try? t.object(handle), let key = o.key else { throw .keyHandleInvalid }
        guard key.kind == .mlkem, o.objectClass == cls, let (set, _) = MLKEMParameterSet.parse(spki: key.publicKey) else {
            throw .keyTypeInconsistent
        }
        if o.attributes[use] == AttributeValue.bool(false) { throw .keyFunctionNotPermitted }
        return (key, set)
    }

    /// C_EncapsulateKey: two-call convention for the ciphertext (nil capacity: its size, no key
    /// made); with room for it, a new key and the ciphertext that carries its secret.
    public func encapsulateKey(
        _ h: UInt, mechanism: Mechanism, publicKey: ObjectHandle, template: Template, capacity: Int?
    ) throws(TokenError) -> (ciphertext: SizedOutput, key: ObjectHandle?) {
        let (key, set) = try kemKey(h, mechanism, publicKey, .publicKey, .encapsulate)
        let (kind, length) = try Library.sharedSecretKey(template)
        guard let capacity else { return (.length(set.ciphertextSize), nil) }
        guard capacity >= set.ciphertextSize else { throw .bufferTooSmall(required: set.ciphertextSize) }
        let made = try keyFromKey(h, base: key, .mlkemEncapsulate, template: template, kind: kind, length: length)
        guard made.output.count == set.ciphertextSize else { throw .functionFailed("the service returned a malformed ciphertext") }
        return (.bytes(made.output), made.key)
    }

    /// C_DecapsulateKey: the key whose secret the ciphertext carries. A ciphertext of the wrong
    /// size is CKR_WRAPPED_KEY_LEN_RANGE; a tampered one gives another key (ML-KEM's implicit
    /// rejection), as the spec says.
    public func decapsulateKey(
        _ h: UInt, mechanism: Mechanism, privateKey: ObjectHandle, template: Template, ciphertext: [UInt8]
    ) throws(TokenError) -> ObjectHandle {
        let (key, set) = try kemKey(h, mechanism, privateKey, .privateKey, .decapsulate)
        guard ciphertext.count == set.ciphertextSize else { throw .wrappedKeyLenRange }
        let (kind, length) = try Library.sharedSecretKey(template)
        return try keyFromKey(h, base: key, .mlkemDecapsulate(ciphertext: ciphertext), template: template, kind: kind, length: length).key
    }
}
