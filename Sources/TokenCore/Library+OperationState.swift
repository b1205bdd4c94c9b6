import VSSMCrypto

/// PKCS#11 2.40 §5.6 C_GetOperationState / C_SetOperationState (issue 22, item 3): hashing is
/// local, so a digest, and a signature or verification not yet finished, can be handed to another
/// session (OpenSSL ≥ 3.2 duplicates digest and signing contexts; pkcs11-provider does it through
/// these calls). A state holds the mechanism, its parameters and the data so far, while that is at
/// most 64 KiB (a TLS handshake transcript is a few KiB) and holds no key value; never a key:
/// a signature's key is named again to C_SetOperationState, which checks it is the same one.
/// Anything else is CKR_STATE_UNSAVEABLE.
///
/// Layout (integers little-endian):
/// `VSSMOPS2` | kind (1: 0 digest, 1 sign, 2 verify) | mechanism (8) | multi-part (1)
/// | key check (32: SHA-256 of the key object's identity; zeros for a digest)
/// | parameter length (2) | parameters (PSS: hash, MGF, salt length, 8 bytes each) | data
extension Library {
    static let savedStateLimit = 64 << 10
    static let stateMagic = Array("VSSMOPS2".utf8)
    static let stateHead = stateMagic.count + 1 + 8 + 1 + 32 + 2

    enum SavedKind: UInt8 { case digest = 0, sign = 1, verify = 2 }

    public func operationState(_ h: UInt, capacity: Int?) throws(TokenError) -> SizedOutput {
        guard let op = try session(h).0.operation else { throw .operationNotInitialized }
        let state: [UInt8]
        switch op {
        case .digest(let d):
            guard let data = d.saved else { throw .stateUnsaveable }
            state = Library.encodeState(.digest, d.context.algorithm.mechanisms.digest, d.multipart, check: nil, parameters: [], data)
        case .sign(let s), .verify(let s):
            let kind: SavedKind
            if case .sign = op { kind = .sign } else { kind = .verify }
            let data = s.digest.map { $0.saved } ?? s.buffer
            guard let data, data.count <= Library.savedStateLimit, let parameters = Library.encodeParameters(s.mechanism.parameters)
            else { throw .stateUnsaveable }
            state = Library.encodeState(
                kind, s.mechanism.type, s.multipart, check: Library.keyCheck(s.object), parameters: parameters, data)
        default:
            throw .stateUnsaveable
        }
        guard let capacity else { return .length(state.count) }
        guard capacity >= state.count else { throw .bufferTooSmall(required: state.count) }
        return .bytes(state)
    }

    public func setOperationState(_ h: UInt, _ state: [UInt8], encryptionKey: UInt, authenticationKey: UInt) throws(TokenError) {
        _ = try session(h)
        let head = Library.stateHead
        let m = Library.stateMagic.count
        guard state.count >= head, state.count - head <= Library.savedStateLimit + 64, Array(state.prefix(m)) == Library.stateMagic,
            let kind = SavedKind(rawValue: state[m]), state[m + 9] <= 1
        else { throw .savedStateInvalid }
        var raw: UInt64 = 0
        for i in 0..<8 { raw |= UInt64(state[m + 1 + i]) << (8 * UInt64(i)) }
        let check = Array(state[(m + 10)..<(m + 42)])
        let parameterLength = Int(state[m + 42]) | Int(state[m + 43]) << 8
        guard let type = UInt(exactly: raw).map({ MechanismType(rawValue: $0) }), state.count - head >= parameterLength else {
            throw .savedStateInvalid
        }
        let parameters = Array(state[head..<(head + parameterLength)])
        let data = Array(state[(head + parameterLength)...])
        guard data.count <= Library.savedStateLimit else { throw .savedStateInvalid }
        let multipart = state[m + 9] == 1
        switch kind {
        case .digest:
            guard let hash = HashAlgorithm(mechanism: type), parameters.isEmpty else { throw .savedStateInvalid }
            if encryptionKey != 0 || authenticationKey != 0 { throw .keyNotNeeded }
            let d = DigestState(try digestContext(hash))
            d.context.update(data)
            d.saved = data
            d.multipart = multipart
            try setOperation(h, .digest(d))
        case .sign, .verify:
            guard MechanismRegistry.family(type) != nil, let decoded = Library.decodeParameters(parameters) else {
                throw .savedStateInvalid
            }
            guard authenticationKey != 0 else { throw .keyNeeded }
            // pkcs11-provider names the signing key twice; any other encryption key is not needed.
            if encryptionKey != 0 && encryptionKey != authenticationKey { throw .keyNotNeeded }
            let (_, t) = try session(h)
            guard let object = try? t.object(ObjectHandle(rawValue: authenticationKey)) else { throw .keyHandleInvalid }
            guard Library.keyCheck(object) == check else { throw .keyChanged }
            endOperation(h)  // the saved state replaces whatever this session was doing
            var op = try prepareSign(h, Mechanism(type, decoded), key: ObjectHandle(rawValue: authenticationKey), verify: kind == .verify)
            if let d = op.digest {
                data.withUnsafeBytes { d.remember($0) }
                d.context.update(data)
            } else {
                op.buffer = data
            }
            op.multipart = multipart
            try setOperation(h, kind == .sign ? .sign(op) : .verify(op))
        }
    }

    static func encodeState(
        _ kind: SavedKind, _ mechanism: MechanismType, _ multipart: Bool, check: [UInt8]?, parameters: [UInt8], _ data: [UInt8]
    ) -> [UInt8] {
        var out = stateMagic
        out.reserveCapacity(stateHead + parameters.count + data.count)
        out.append(kind.rawValue)
        out += littleEndian(UInt64(mechanism.rawValue))
        out.append(multipart ? 1 : 0)
        out += check ?? [UInt8](repeating: 0, count: 32)
        out += [UInt8(parameters.count & 0xff), UInt8(parameters.count >> 8)]
        return out + parameters + data
    }

    /// The parameters a signature's state keeps: none, or PSS's; EdDSA's are always "pure, no
    /// context" here (anything else was refused at C_SignInit). nil: not saveable.
    static func encodeParameters(_ p: Mechanism.Parameters) -> [UInt8]? {
        switch p {
        case .none, .eddsa: return []
        case .pss(let hash, let mgf1, let salt):
            guard let s = UInt64(exactly: salt) else { return nil }
            return littleEndian(UInt64(hash.mechanisms.digest.rawValue)) + littleEndian(UInt64(mgf1.mechanisms.mgf)) + littleEndian(s)
        default: return nil
        }
    }

    static func decodeParameters(_ b: [UInt8]) -> Mechanism.Parameters? {
        if b.isEmpty { return Mechanism.Parameters.none }
        guard b.count == 24 else { return nil }
        func word(_ i: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[i * 8 + $1]) << (8 * UInt64($1)) } }
        guard let hashType = UInt(exactly: word(0)), let mgf = UInt(exactly: word(1)), let salt = Int(exactly: word(2)),
            let hash = HashAlgorithm(mechanism: MechanismType(hashType)), let mgf1 = HashAlgorithm(mgf: mgf)
        else { return nil }
        return .pss(hash: hash, mgf1: mgf1, saltLength: salt)
    }

    /// Which key a saved signature belongs to, without naming it: SHA-256 of the object's identity.
    static func keyCheck(_ object: TokenObject) -> [UInt8] {
        HashAlgorithm.sha256.hash(Array("vssm-operation-state/\(object.identity)".utf8))
    }

    static func littleEndian(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
}
