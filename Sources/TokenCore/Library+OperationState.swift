import VSSMCrypto

/// PKCS#11 2.40 §5.6 C_GetOperationState / C_SetOperationState, for digests (issue 22, item 3):
/// hashing is local, so a digest's state is its mechanism and the data hashed so far, kept while
/// it is at most 64 KiB (a TLS handshake transcript, which OpenSSL providers duplicate, is a few
/// KiB) and holds no key value. Anything else is CKR_STATE_UNSAVEABLE. The state is
/// `VSSMOPS1`, the mechanism (8 bytes, little-endian), a C_DigestUpdate flag, then the data.
extension Library {
    static let savedStateLimit = 64 << 10
    static let stateMagic = Array("VSSMOPS1".utf8)

    public func operationState(_ h: UInt, capacity: Int?) throws(TokenError) -> SizedOutput {
        guard let op = try session(h).0.operation else { throw .operationNotInitialized }
        guard case .digest(let d) = op, let data = d.saved else { throw .stateUnsaveable }
        var mechanism = UInt64(d.context.algorithm.mechanisms.digest.rawValue).littleEndian
        let state = Library.stateMagic + withUnsafeBytes(of: &mechanism) { Array($0) } + [d.multipart ? 1 : 0] + data
        guard let capacity else { return .length(state.count) }
        guard capacity >= state.count else { throw .bufferTooSmall(required: state.count) }
        return .bytes(state)
    }

    public func setOperationState(_ h: UInt, _ state: [UInt8], encryptionKey: UInt, authenticationKey: UInt) throws(TokenError) {
        _ = try session(h)
        let head = Library.stateMagic.count + 9
        guard state.count >= head, state.count - head <= Library.savedStateLimit,
            Array(state.prefix(Library.stateMagic.count)) == Library.stateMagic
        else { throw .savedStateInvalid }
        var raw: UInt64 = 0
        for i in 0..<8 { raw |= UInt64(state[Library.stateMagic.count + i]) << (8 * UInt64(i)) }
        guard let type = UInt(exactly: raw), let hash = HashAlgorithm(mechanism: MechanismType(type)), state[head - 1] <= 1 else {
            throw .savedStateInvalid
        }
        if encryptionKey != 0 || authenticationKey != 0 { throw .keyNotNeeded }
        let data = Array(state[head...])
        let d = DigestState(try digestContext(hash))
        d.context.update(data)
        d.saved = data
        d.multipart = state[head - 1] == 1
        try setOperation(h, .digest(d))
    }
}
