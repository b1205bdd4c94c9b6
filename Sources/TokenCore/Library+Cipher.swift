import VSSMCrypto

/// An encrypt or decrypt operation. Block modes (ECB, CBC, CBC_PAD, CTR with the service's
/// extensions) stream: each update returns its complete blocks and carries the IV or counter
/// on; the rest (RSA, GCM, the original API) is buffered and done at Final. A single-part
/// result is computed once and kept until the caller's buffer is large enough.
struct CipherOperation: Sendable {
    let key: ServiceKey
    let publicKey: PublicKey?
    /// Its IV (CBC) or counter block (CTR) moves on as blocks are processed.
    var mechanism: Mechanism
    let encrypt: Bool
    let modulusBytes: Int
    var buffer: [UInt8] = []
    var result: [UInt8]?
    var multipart = false
    /// Multi-part GCM encryption (96-bit IV): the plaintext whose ciphertext the updates already
    /// returned (AES-CTR from the service, counter IV||2 onward). Final asks the service for the
    /// GCM encryption of all of it and returns the rest of the ciphertext and the tag.
    var gcmPlaintext: [UInt8] = []
    /// A part taken by a size query that produces no output (see cipherUpdate).
    var queriedPart: [UInt8]?

    /// The block cipher of a symmetric operation: "AES" or "3DES", and its block size.
    var cipherName: String { key.cipher == "3DES" ? "3DES" : "AES" }
    var blockSize: Int { key.cipher == "3DES" ? 8 : 16 }
    var mode: Library.BlockMode? { Library.blockMode(mechanism.type) }
}

extension Library {
    enum BlockMode { case ecb, cbc, cbcPad, ctr, gcm }

    /// The mode of a symmetric mechanism (AES or Triple-DES); nil for the others.
    static func blockMode(_ t: MechanismType) -> BlockMode? {
        switch t {
        case .aesECB, .des3ECB: .ecb
        case .aesCBC, .des3CBC: .cbc
        case .aesCBCPad, .des3CBCPad: .cbcPad
        case .aesCTR: .ctr
        case .aesGCM: .gcm
        default: nil
        }
    }

    static func isDES3(_ t: MechanismType) -> Bool { [.des3ECB, .des3CBC, .des3CBCPad].contains(t) }

    /// PKCS#11 2.40 §5.8 C_EncryptInit / §5.9 C_DecryptInit.
    public func cipherInit(_ h: UInt, mechanism m: Mechanism, key handle: ObjectHandle, encrypt: Bool) throws(TokenError) {
        let (s, t) = try session(h)
        if case .cipher(let op)? = s.operation, op.encrypt == encrypt { throw .operationActive }
        guard let object = try? t.object(handle), let key = object.key else { throw .keyHandleInvalid }
        guard let info = try mechanisms(slot: s.slot)[m.type],
            info.flags & (encrypt ? MechanismInfo.encrypt : MechanismInfo.decrypt) != 0
        else { throw .mechanismInvalid(m.type) }
        let usage: AttributeType = encrypt ? .encrypt : .decrypt
        guard object.attributes[usage] == AttributeValue.bool(true) else { throw .keyFunctionNotPermitted }
        var modulus = 0
        switch m.type {
        case .rsaPKCS, .rsaPKCSOAEP, .rsaX509:
            guard key.kind == .rsa, object.objectClass == (encrypt ? .publicKey : .privateKey) else { throw .keyTypeInconsistent }
            modulus = object.publicKey?.maxOutputSize ?? 0
            if m.type == .rsaPKCSOAEP, case .oaep(let hash, let mgf, let label) = m.parameters {
                // Decided here (C_DecryptInit), as applications expect: the original API decrypts
                // OAEP only with MGF1 of the same hash and no label.
                let scheme = DecryptScheme.rsaOAEP(hash: hash, mgf1: mgf, label: label)
                if !encrypt, !scheme.isOffered(by: try t.features()) {
                    throw .mechanismParamInvalid(
                        "the key service cannot decrypt OAEP with these hashes or a label (it needs newer extensions)")
                }
            } else if m.type == .rsaPKCSOAEP {
                throw .mechanismParamInvalid("CKM_RSA_PKCS_OAEP needs CK_RSA_PKCS_OAEP_PARAMS")
            }
        case let x where Library.blockMode(x) != nil:
            let des = Library.isDES3(x)
            guard key.kind == .symmetric, key.cipher == (des ? "3DES" : "AES") else { throw .keyTypeInconsistent }
            let bs = des ? 8 : 16
            switch (Library.blockMode(x), m.parameters) {
            case (.ecb?, _): break
            case (.cbc?, .raw(let iv)), (.cbcPad?, .raw(let iv)), (.ctr?, .iv(let iv)):
                guard iv.count == bs else { throw .mechanismParamInvalid("the IV must be \(bs) bytes") }
            case (.gcm?, .gcm(let iv, _, let tagBits)):
                guard !iv.isEmpty, iv.count <= 128, tagBits % 8 == 0, (32...128).contains(tagBits) else {
                    throw .mechanismParamInvalid("CK_GCM_PARAMS")
                }
            default: throw .mechanismParamInvalid("missing or wrong mechanism parameter")
            }
        default:
            throw .mechanismInvalid(m.type)
        }
        try setOperation(
            h, .cipher(CipherOperation(key: key, publicKey: object.publicKey, mechanism: m, encrypt: encrypt, modulusBytes: modulus)))
    }

    func currentCipher(_ h: UInt, encrypt: Bool) throws(TokenError) -> CipherOperation {
        guard case .cipher(let op)? = try session(h).0.operation, op.encrypt == encrypt else { throw .operationNotInitialized }
        return op
    }

    /// Output length before the work is done (size queries); exact except RSA/PAD/GCM decryption (an upper bound).
    static func outputBound(_ op: CipherOperation, inputLength n: Int) -> Int {
        switch op.mechanism.type {
        case .rsaPKCS, .rsaPKCSOAEP, .rsaX509: op.modulusBytes
        case .aesCBCPad, .des3CBCPad: op.encrypt ? (n / op.blockSize + 1) * op.blockSize : n
        case .aesGCM:
            if case .gcm(_, _, let bits) = op.mechanism.parameters { op.encrypt ? n + bits / 8 : Swift.max(0, n - bits / 8) } else { n }
        default: n
        }
    }

    /// C_Encrypt/C_Decrypt (single part) and the Final of multi-part: same two-call rules as C_Sign.
    public func cipher(_ h: UInt, encrypt: Bool, data: [UInt8]?, capacity: Int?) throws(TokenError) -> SizedOutput {
        var op = try currentCipher(h, encrypt: encrypt)
        if let data {
            if op.multipart { try? setOperation(h, nil); throw .operationActive }
            op.buffer = data
        }
        if op.result == nil {
            guard let capacity else { return .length(Library.outputBound(op, inputLength: op.buffer.count)) }
            let bound = Library.outputBound(op, inputLength: op.buffer.count)
            if capacity < bound && ![.rsaPKCS, .rsaPKCSOAEP, .rsaX509, .aesCBCPad, .des3CBCPad].contains(op.mechanism.type) {
                throw .bufferTooSmall(required: bound)
            }
            do {
                op.result = try recordDevice(h) { () throws(TokenError) in try runCipher(h, op) }
            } catch {
                try? setOperation(h, nil)
                throw error
            }
        }
        let result = op.result ?? []
        guard let capacity else { try setOperation(h, .cipher(op)); return .length(result.count) }
        guard capacity >= result.count else {
            try setOperation(h, .cipher(op))
            throw .bufferTooSmall(required: result.count)
        }
        try? setOperation(h, nil)
        return .bytes(result)
    }

    /// C_EncryptUpdate/C_DecryptUpdate. Block modes return the complete blocks of what came so far
    /// (CBC_PAD decryption holds the last block back for the padding); the others collect input
    /// and answer at Final. A size query (NULL output buffer) consumes nothing: the caller repeats
    /// the call with a buffer (regression: the part was taken twice).
    public func cipherUpdate(_ h: UInt, encrypt: Bool, part: [UInt8], capacity: Int?) throws(TokenError) -> SizedOutput {
        var op = try currentCipher(h, encrypt: encrypt)
        // The follow-up of a size query that already took this part (the two-call convention).
        if let q = op.queriedPart {
            op.queriedPart = nil
            if q == part {
                try setOperation(h, .cipher(op))
                return capacity == nil ? .length(0) : .bytes([])
            }
        }
        let t = try session(h).1
        let ext = try t.hasExtensions()
        let streams = (Library.streamingModes.contains(op.mechanism.type) || Library.gcmStreams(op)) && ext
        let pending = op.buffer + part
        guard pending.count <= 8 << 20 else { try? setOperation(h, nil); throw .dataLenRange }
        let bs = op.blockSize
        var take = streams ? pending.count / bs * bs : 0
        if op.mode == .cbcPad && !encrypt && take == pending.count { take = Swift.max(0, take - bs) }
        guard let capacity else {
            // No output for this part: take it now. Some callers (PyKCS11) never make the second
            // call, or make it with a NULL buffer again; a follow-up with the same part is skipped.
            if take == 0 {
                op.multipart = true
                op.buffer = pending
                op.queriedPart = part
                try setOperation(h, .cipher(op))
            }
            return .length(take)
        }
        guard capacity >= take else { throw .bufferTooSmall(required: take) }
        op.multipart = true
        var out: [UInt8] = []
        if take > 0 {
            let chunk = Array(pending[0..<take])
            do {
                out = try recordDevice(h) { () throws(TokenError) in try runBlocks(t, op, chunk) }
            } catch {
                try? setOperation(h, nil)
                throw error
            }
            if op.mechanism.type == .aesGCM {
                op.gcmPlaintext += chunk
            } else {
                op.mechanism = Library.advanced(op.mechanism, encrypt: encrypt, input: chunk, output: out)
            }
        }
        op.buffer = Array(pending[take...])
        try setOperation(h, .cipher(op))
        return .bytes(out)
    }

    static func bigEndian32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }

    static let streamingModes: Set<MechanismType> = [.aesECB, .aesCBC, .aesCBCPad, .aesCTR, .des3ECB, .des3CBC, .des3CBCPad]

    /// GCM encryption with a 96-bit IV streams its ciphertext (its counter blocks are IV||n);
    /// decryption returns nothing before the tag is checked at Final.
    static func gcmStreams(_ op: CipherOperation) -> Bool {
        guard op.encrypt, op.mechanism.type == .aesGCM, case .gcm(let iv, _, _) = op.mechanism.parameters else { return false }
        return iv.count == 12
    }

    /// Whole blocks through the service without padding, with the operation's current IV/counter.
    func runBlocks(_ t: Token, _ op: CipherOperation, _ chunk: [UInt8]) throws(TokenError) -> [UInt8] {
        let c = op.cipherName
        let scheme: SymmetricScheme =
            switch (op.mode, op.mechanism.parameters) {
            case (.ecb?, _): SymmetricScheme(c, .ecb)
            case (.cbc?, .raw(let iv)), (.cbcPad?, .raw(let iv)): SymmetricScheme(c, .cbc(iv: iv, padded: false))
            case (.ctr?, .iv(let iv)): SymmetricScheme(c, .ctr(counter: iv))
            case (.gcm?, .gcm(let iv, _, _)) where iv.count == 12:
                // GCM's keystream for the blocks after those already returned: IV || (2 + blocks).
                SymmetricScheme(c, .ctr(counter: iv + Library.bigEndian32(UInt32(truncatingIfNeeded: 2 + op.gcmPlaintext.count / 16))))
            default: throw .mechanismInvalid(op.mechanism.type)
            }
        do {
            return try t.service().symmetric(encrypt: op.encrypt, key: op.key.name, scheme, chunk)
        } catch .device(_, 400) {
            throw op.encrypt ? .dataLenRange : .encryptedDataInvalid
        }
    }

    /// The mechanism with its IV moved past `input`: CBC chains on the last ciphertext block, CTR
    /// adds the number of blocks to the 128-bit big-endian counter block.
    static func advanced(_ m: Mechanism, encrypt: Bool, input: [UInt8], output: [UInt8]) -> Mechanism {
        switch (Library.blockMode(m.type), m.parameters) {
        case (.cbc?, .raw(let iv)), (.cbcPad?, .raw(let iv)):
            let ciphertext = encrypt ? output : input
            guard ciphertext.count >= iv.count else { return m }
            return Mechanism(m.type, .raw(Array(ciphertext.suffix(iv.count))))
        case (.ctr?, .iv(var counter)):
            var carry = UInt64(input.count / 16)
            var i = counter.count - 1
            while carry > 0 && i >= 0 {
                let sum = UInt64(counter[i]) + (carry & 0xFF)
                counter[i] = UInt8(truncatingIfNeeded: sum)
                carry = (carry >> 8) + (sum >> 8)
                i -= 1
            }
            return Mechanism(m.type, .iv(counter))
        default:
            return m
        }
    }

    func runCipher(_ h: UInt, _ op: CipherOperation) throws(TokenError) -> [UInt8] {
        let t = try session(h).1
        let input = op.buffer
        switch (op.mechanism.type, op.mechanism.parameters) {
        case (.rsaPKCS, _) where op.encrypt, (.rsaPKCSOAEP, _) where op.encrypt:
            guard let pub = op.publicKey else { throw .functionFailed("public key") }
            var padding = EncryptionPadding.pkcs1
            if case .oaep(let hash, let mgf, let label) = op.mechanism.parameters {
                padding = .oaep(hash, mgf1: mgf, label: label)
            }
            do { return try pub.encrypt(input, padding: padding) } catch { throw .dataLenRange }
        case (.rsaX509, _) where op.encrypt:
            guard let pub = op.publicKey, input.count <= op.modulusBytes else { throw .dataLenRange }
            do { return try pub.encrypt(Library.leftPadded(input, op.modulusBytes), padding: .none) } catch { throw .dataInvalid }
        case (.rsaX509, _):
            guard input.count == op.modulusBytes else { throw .encryptedDataLenRange }
            return try mapDecrypt { () throws(TokenError) in
                try t.service().decrypt(key: op.key.name, .rsaRaw, input)
            }
        case (.rsaPKCS, _):
            guard input.count == op.modulusBytes else { throw .encryptedDataLenRange }
            return try mapDecrypt { () throws(TokenError) in
                try t.service().decrypt(key: op.key.name, .rsaPKCS1, input)
            }
        case (.rsaPKCSOAEP, .oaep(let hash, let mgf, let label)):
            guard input.count == op.modulusBytes else { throw .encryptedDataLenRange }
            return try mapDecrypt { () throws(TokenError) in
                try t.service().decrypt(key: op.key.name, .rsaOAEP(hash: hash, mgf1: mgf, label: label), input)
            }
        default:
            return try runSymmetric(t, op)
        }
    }

    func mapDecrypt(_ body: () throws(TokenError) -> [UInt8]) throws(TokenError) -> [UInt8] {
        do { return try body() } catch .device(_, 400) { throw .encryptedDataInvalid }
    }

    func runSymmetric(_ t: Token, _ op: CipherOperation) throws(TokenError) -> [UInt8] {
        let service = try t.service()
        let input = op.buffer
        // The Final of a streamed ECB/CBC/CTR operation with nothing left: nothing to send.
        if op.multipart && input.isEmpty && [.ecb, .cbc, .ctr].contains(op.mode) { return [] }
        let c = op.cipherName, bs = op.blockSize
        let name = op.key.name
        func call(_ mode: SymmetricScheme.Mode, _ data: [UInt8]) throws(TokenError) -> [UInt8] {
            do {
                return try service.symmetric(encrypt: op.encrypt, key: name, SymmetricScheme(c, mode), data)
            } catch .device(_, 400) {
                throw op.encrypt ? .dataLenRange : .encryptedDataInvalid
            }
        }
        switch (op.mode, op.mechanism.parameters) {
        case (.ecb?, _):
            guard input.count % bs == 0 else { throw op.encrypt ? .dataLenRange : .encryptedDataLenRange }
            return try call(.ecb, input)
        case (.cbc?, .raw(let iv)), (.cbcPad?, .raw(let iv)):
            let padded = op.mode == .cbcPad
            if !padded || !op.encrypt { guard input.count % bs == 0 else { throw op.encrypt ? .dataLenRange : .encryptedDataLenRange } }
            return try call(.cbc(iv: iv, padded: padded), input)
        case (.ctr?, .iv(let iv)):
            return try call(.ctr(counter: iv), input)
        case (.gcm?, .gcm(let iv, let aad, let bits)):
            let tag = bits / 8
            if !op.encrypt { guard input.count >= tag else { throw .encryptedDataLenRange } }
            if op.encrypt && !op.gcmPlaintext.isEmpty {
                // Streamed: the updates returned the ciphertext of gcmPlaintext already.
                let all = try call(.gcm(iv: iv, aad: aad, tagLength: tag), op.gcmPlaintext + input)
                guard all.count >= op.gcmPlaintext.count else { throw .functionFailed("short GCM output from the service") }
                return Array(all[op.gcmPlaintext.count...])
            }
            return try call(.gcm(iv: iv, aad: aad, tagLength: tag), input)
        default:
            throw .mechanismInvalid(op.mechanism.type)
        }
    }
}
