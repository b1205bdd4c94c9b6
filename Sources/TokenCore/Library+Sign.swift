import VSSMCrypto

/// A sign or verify operation (PKCS#11 2.40 §5.12, §5.13): hashing here, the private-key operation
/// in the service, verification here with the public key (MACs: computed in the service).
struct SignOperation: Sendable {
    let object: TokenObject
    let key: ServiceKey
    let mechanism: Mechanism
    let hash: HashAlgorithm?
    let signatureLength: Int
    var digest: DigestState?
    var buffer: [UInt8] = []
    var multipart = false
    /// C_Login(CKU_CONTEXT_SPECIFIC) was done for this operation (keys with CKA_ALWAYS_AUTHENTICATE).
    var reauthenticated = false
}

extension Library {
    func prepareSign(_ h: UInt, _ m: Mechanism, key handle: ObjectHandle, verify: Bool) throws(TokenError) -> SignOperation {
        let (s, t) = try session(h)
        if let op = s.operation {
            switch (op, verify) {
            case (.sign, false), (.verify, true): throw .operationActive
            default: break
            }
        }
        guard let object = try? t.object(handle) else { throw .keyHandleInvalid }
        guard let key = object.key else { throw .keyTypeInconsistent }
        // The key's usage flag (CKA_SIGN / CKA_VERIFY) must allow it (PKCS#11 §5.13, CKR_KEY_FUNCTION_NOT_PERMITTED).
        let usage: AttributeType = verify && object.objectClass != .privateKey ? .verify : .sign
        if object.attributes[usage] == AttributeValue.bool(false) { throw .keyFunctionNotPermitted }
        if let hmacHash = MechanismTable.hmacHash(of: m.type) {
            guard key.kind == .mac else { throw .keyTypeInconsistent }
            guard try mechanisms(slot: s.slot)[m.type] != nil else { throw .mechanismInvalid(m.type) }
            return SignOperation(object: object, key: key, mechanism: m, hash: nil, signatureLength: hmacHash.size)
        }
        if let macLength = MechanismTable.blockMACLength(of: m.type) {
            guard key.kind == .symmetric, key.cipher == "AES" else { throw .keyTypeInconsistent }
            guard try mechanisms(slot: s.slot)[m.type] != nil else { throw .mechanismInvalid(m.type) }
            return SignOperation(object: object, key: key, mechanism: m, hash: nil, signatureLength: macLength)
        }
        let wanted: ObjectClass = verify ? .publicKey : .privateKey
        // Verification may also use the private key object's public half (common in tools).
        guard object.objectClass == wanted || (verify && object.objectClass == .privateKey) else { throw .keyTypeInconsistent }
        guard try mechanisms(slot: s.slot)[m.type] != nil else { throw .mechanismInvalid(m.type) }
        if m.type == .mlDSA {
            guard key.kind == .mldsa, let (set, _) = MLDSAParameterSet.parse(spki: key.publicKey) else { throw .keyTypeInconsistent }
            // Signatures are hedged (randomised) in the service; a caller that requires
            // deterministic ones is told so.
            if case .signContext(let hedge, _) = m.parameters, hedge == 2 {
                throw .mechanismParamInvalid("deterministic ML-DSA signatures are not offered (hedged only)")
            }
            return SignOperation(object: object, key: key, mechanism: m, hash: nil, signatureLength: set.signatureSize)
        }
        let isEC = MechanismTable.isECDSA(m.type)
        if m.type == .eddsa {
            guard key.kind == .eddsa, let pub = object.publicKey else { throw .keyTypeInconsistent }
            // CK_EDDSA_PARAMS: only PureEdDSA without a context (phFlag FALSE, no context data).
            if case .eddsa(let prehash, let context) = m.parameters, prehash || context > 0 {
                throw .mechanismParamInvalid("only PureEdDSA without context data is offered")
            }
            return SignOperation(object: object, key: key, mechanism: m, hash: nil, signatureLength: pub.kind == .ed25519 ? 64 : 114)
        }
        let isDSA = MechanismTable.isDSA(m.type)
        switch key.kind {
        case .ec where isEC: break
        case .dsa where isDSA: break
        case .rsa where !isEC && !isDSA: break
        default: throw .keyTypeInconsistent
        }
        let hash = MechanismTable.hash(of: m.type)
        if MechanismTable.isPSS(m.type) {
            guard case .pss(let ph, _, let salt) = m.parameters, salt >= 0 else {
                throw .mechanismParamInvalid("PSS needs CK_RSA_PKCS_PSS_PARAMS")
            }
            if let hash, hash != ph { throw .mechanismParamInvalid("PSS hashAlg does not match the mechanism") }
        }
        guard let pub = object.publicKey else { throw .functionFailed("cannot parse the public key of \(key.name)") }
        let length = isEC ? 2 * ((pub.bits + 7) / 8) : isDSA ? 2 * (pub.dsaComponents?.q.count ?? 20) : pub.maxOutputSize
        var op = SignOperation(object: object, key: key, mechanism: m, hash: hash, signatureLength: length)
        if let hash { op.digest = DigestState(try digestContext(hash)) }
        return op
    }

    static func mldsaContext(_ m: Mechanism) -> [UInt8] {
        if case .signContext(_, let context) = m.parameters { return context }
        return []
    }

    static func leftPadded(_ data: [UInt8], _ size: Int) -> [UInt8] {
        data.count >= size ? data : [UInt8](repeating: 0, count: size - data.count) + data
    }

    func digestContext(_ h: HashAlgorithm) throws(TokenError) -> DigestContext {
        do { return try DigestContext(h) } catch { throw .functionFailed(error.message) }
    }

    public func signInit(_ h: UInt, mechanism: Mechanism, key: ObjectHandle) throws(TokenError) {
        try setOperation(h, .sign(try prepareSign(h, mechanism, key: key, verify: false)))
    }

    func currentSign(_ h: UInt) throws(TokenError) -> SignOperation {
        guard case .sign(let op)? = try session(h).0.operation else { throw .operationNotInitialized }
        return op
    }

    /// C_Sign. `capacity` nil = size query (operation stays active), too small = bufferTooSmall
    /// (operation stays active); anything else ends the operation.
    public func sign(_ h: UInt, data: [UInt8], capacity: Int?) throws(TokenError) -> SizedOutput {
        let op = try currentSign(h)
        if op.multipart { try? setOperation(h, nil); throw .operationActive }
        guard let capacity else { return .length(op.signatureLength) }
        guard capacity >= op.signatureLength else { throw .bufferTooSmall(required: op.signatureLength) }
        defer { try? setOperation(h, nil) }
        try Library.requireReauthentication(op)
        var digest = data
        if let d = op.digest {
            d.context.update(data)
            digest = d.context.finish()
        }
        return .bytes(try recordDevice(h) { () throws(TokenError) in try remoteSign(h, op, digest) })
    }

    public func signUpdate(_ h: UInt, part: [UInt8]) throws(TokenError) {
        var op = try currentSign(h)
        op.multipart = true
        if let d = op.digest {
            part.withUnsafeBytes { d.remember($0) }
            d.context.update(part)
        } else {
            guard op.buffer.count + part.count <= 1 << 20 else { try? setOperation(h, nil); throw .dataLenRange }
            op.buffer += part
        }
        try setOperation(h, .sign(op))
    }

    public func signFinal(_ h: UInt, capacity: Int?) throws(TokenError) -> SizedOutput {
        let op = try currentSign(h)
        guard let capacity else { return .length(op.signatureLength) }
        guard capacity >= op.signatureLength else { throw .bufferTooSmall(required: op.signatureLength) }
        defer { try? setOperation(h, nil) }
        try Library.requireReauthentication(op)
        let digest = op.digest.map { $0.context.finish() } ?? op.buffer
        return .bytes(try recordDevice(h) { () throws(TokenError) in try remoteSign(h, op, digest) })
    }

    /// A CKA_ALWAYS_AUTHENTICATE key signs only after C_Login(CKU_CONTEXT_SPECIFIC) for this operation.
    static func requireReauthentication(_ op: SignOperation) throws(TokenError) {
        if op.object.attributes[.alwaysAuthenticate] == AttributeValue.bool(true) && !op.reauthenticated { throw .userNotLoggedIn }
    }

    /// Maps the mechanism onto a VSSM call (DESIGN.md mechanism table) and converts the answer.
    /// The private-key (or MAC) half of a signature, in the service, by the mechanism's family.
    func remoteSign(_ h: UInt, _ op: SignOperation, _ digest: [UInt8]) throws(TokenError) -> [UInt8] {
        let service = try session(h).1.service()
        let name = op.key.name
        func rawSignature(_ scheme: SignScheme) throws(TokenError) -> [UInt8] {
            let der = try service.sign(key: name, scheme, digest)
            guard let raw = ECDSASignature.derToRaw(der, fieldSize: op.signatureLength / 2) else {
                throw .functionFailed("the service returned a malformed signature")
            }
            return raw
        }
        switch MechanismRegistry.family(op.mechanism.type) {
        case .hmac(let hash)?:
            return try service.mac(key: name, .hmac(hash), digest)
        case .blockMAC(let length, let cmac)?:
            return try service.mac(key: name, cmac ? .aesCMAC(length: length) : .aesMAC(length: length), digest)
        case .eddsa?:
            return try service.sign(key: name, .eddsa, digest)
        case .mldsa?:
            return try service.sign(key: name, .mldsa(context: Library.mldsaContext(op.mechanism)), digest)
        case .dsa?:
            return try rawSignature(.dsa)
        case .ecdsa(let hash)?:
            return try rawSignature(.ecdsa(hash))
        case .rsaPSS?:
            guard case .pss(let hash, let mgf1, let salt) = op.mechanism.parameters else { throw .mechanismParamInvalid("PSS") }
            guard digest.count == hash.size else { throw .dataLenRange }
            return try service.sign(key: name, .rsaPSS(hash: hash, mgf1: mgf1, saltLength: salt), digest)
        case .rsaRaw?:
            // Raw RSA: the input, left-padded with zeros to the modulus size, through the private
            // key, as a signature (the service judges it by CKA_SIGN, as the module did).
            guard digest.count <= op.signatureLength else { throw .dataLenRange }
            return try service.sign(key: name, .rsaRaw, Library.leftPadded(digest, op.signatureLength))
        case .rsaPKCS1(nil)?:
            guard digest.count <= op.signatureLength - 11 else { throw .dataLenRange }
            // A DigestInfo of a known hash is signed as that hash (the audit record names it).
            if let (hash, d) = HashAlgorithm.parseDigestInfo(digest) { return try service.sign(key: name, .rsaPKCS1(hash), d) }
            return try service.sign(key: name, .rsaPKCS1(nil), digest)
        case .rsaPKCS1(let hash?)?:
            return try service.sign(key: name, .rsaPKCS1(hash), digest)
        default:
            throw .mechanismInvalid(op.mechanism.type)
        }
    }

    // Verification runs locally with the public key (no network).
    public func verifyInit(_ h: UInt, mechanism: Mechanism, key: ObjectHandle) throws(TokenError) {
        try setOperation(h, .verify(try prepareSign(h, mechanism, key: key, verify: true)))
    }

    func currentVerify(_ h: UInt) throws(TokenError) -> SignOperation {
        guard case .verify(let op)? = try session(h).0.operation else { throw .operationNotInitialized }
        return op
    }

    public func verify(_ h: UInt, data: [UInt8], signature: [UInt8]) throws(TokenError) {
        let op = try currentVerify(h)
        defer { try? setOperation(h, nil) }
        let digest =
            op.digest.map {
                $0.context.update(data); return $0.context.finish()
            } ?? data
        try localVerify(h, op, digest, signature)
    }

    public func verifyUpdate(_ h: UInt, part: [UInt8]) throws(TokenError) {
        var op = try currentVerify(h)
        op.multipart = true
        if let d = op.digest {
            part.withUnsafeBytes { d.remember($0) }
            d.context.update(part)
        } else {
            op.buffer += part
        }
        try setOperation(h, .verify(op))
    }

    public func verifyFinal(_ h: UInt, signature: [UInt8]) throws(TokenError) {
        let op = try currentVerify(h)
        defer { try? setOperation(h, nil) }
        try localVerify(h, op, op.digest.map { $0.context.finish() } ?? op.buffer, signature)
    }

    /// Verification by the mechanism's family: here with the public key; MACs in the service,
    /// compared here in constant time (a MAC key never leaves the service).
    func localVerify(_ h: UInt, _ op: SignOperation, _ digest: [UInt8], _ signature: [UInt8]) throws(TokenError) {
        guard signature.count == op.signatureLength else { throw .signatureLenRange }
        let family = MechanismRegistry.family(op.mechanism.type)
        switch family {
        case .hmac?, .blockMAC?:
            let mac = try recordDevice(h) { () throws(TokenError) in try remoteSign(h, op, digest) }
            if !constantTimeEqual(mac, signature) { throw .signatureInvalid }
            return
        case .mldsa?:
            // No ML-DSA here: the service checks it with the key's public half.
            let service = try session(h).1.service()
            let context = Library.mldsaContext(op.mechanism)
            let valid = try recordDevice(h) { () throws(TokenError) in
                try service.verifyMLDSA(key: op.key.name, message: digest, context: context, signature: signature)
            }
            if !valid { throw .signatureInvalid }
            return
        default: break
        }
        guard let pub = op.object.publicKey else { throw .functionFailed("public key") }
        let ok: Bool
        switch family {
        case .eddsa?:
            ok = pub.verifyEdDSA(signature: signature, message: digest)
        case .dsa?, .ecdsa?:
            guard let der = ECDSASignature.rawToDER(signature) else { throw .signatureInvalid }
            ok = pub.verify(signature: der, digest: digest, scheme: MechanismTable.isDSA(op.mechanism.type) ? .dsa : .ecdsa)
        case .rsaPSS?:
            guard case .pss(let hash, let mgf1, let salt) = op.mechanism.parameters else { throw .mechanismParamInvalid("PSS") }
            ok = pub.verify(signature: signature, digest: digest, scheme: .pss(hash, mgf1: mgf1, saltLength: salt))
        case .rsaRaw?:
            guard digest.count <= op.signatureLength else { throw .dataLenRange }
            let recovered = (try? pub.encrypt(signature, padding: .none)) ?? []
            ok = constantTimeEqual(recovered, Library.leftPadded(digest, op.signatureLength))
        case .rsaPKCS1(nil)?:
            ok = pub.verify(signature: signature, digest: digest, scheme: .pkcs1Raw)
        case .rsaPKCS1(let hash?)?:
            ok = pub.verify(signature: signature, digest: digest, scheme: .pkcs1(hash))
        default:
            throw .mechanismInvalid(op.mechanism.type)
        }
        if !ok { throw .signatureInvalid }
    }
}
