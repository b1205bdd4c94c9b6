import Testing
import VSSMWire
@testable import TokenCore
import VSSMCrypto
import FakeKeyService

/// TokenCore per operation family (issue 21), over the fake (which keeps the service's rules and is
/// held to them by ContractTests): what reaches the service for each mechanism, and every result
/// checked against VSSMCrypto computed here. Keys are session keys (no admin password needed).
@Suite struct OperationFamilyTests {
    let svc = FakeKeyService(password: "pw")
    let lib: Library
    let h: UInt
    static let B = AttributeValue.bool
    static let U = AttributeValue.ulong

    init() throws {
        lib = try TokenCoreTests.library(svc)
        h = try lib.openSession(slot: 0, readWrite: true)
        try lib.login(h, user: .user, pin: "pw")
    }

    func bytes(_ o: SizedOutput) -> [UInt8] { if case .bytes(let b) = o { return b } else { return [] } }

    func value(_ object: ObjectHandle, _ type: AttributeType) throws -> [UInt8] {
        guard case .value(let v)? = try lib.attributes(h, object: object, types: [type]).first else { return [] }
        return v
    }

    func sign(_ m: Mechanism, _ key: ObjectHandle, _ data: [UInt8]) throws -> [UInt8] {
        try lib.signInit(h, mechanism: m, key: key)
        return bytes(try lib.sign(h, data: data, capacity: 4096))
    }

    func secretKey(_ value: [UInt8], aes: Bool, extra: [(AttributeType, [UInt8])] = []) throws -> ObjectHandle {
        try lib.createObject(
            h,
            template: Template(
                [
                    (.class, Self.U(ObjectClass.secretKey.rawValue)),
                    (.keyType, Self.U((aes ? KeyKind.aes : KeyKind.genericSecret).rawValue)),
                    (.value, value), (.sign, Self.B(true)), (.verify, Self.B(true)), (.encrypt, Self.B(true)), (.decrypt, Self.B(true)),
                ] + extra))
    }

    /// Hash-and-sign for every hash row: the service is asked for the scheme with the hash named
    /// (the audit record says which), verification runs here without a service call, and the
    /// signature verifies with the public key independently. CKM_RSA_X_509 goes as a raw
    /// signature (judged by CKA_SIGN), never as a decryption.
    @Test func signaturesNameTheirSchemeAndVerifyLocally() throws {
        let rsa = try lib.generateKeyPair(
            h, mechanism: Mechanism(.rsaPKCSKeyPairGen),
            publicTemplate: Template([(.modulusBits, Self.U(2048))]), privateTemplate: Template())
        let ec = try lib.generateKeyPair(
            h, mechanism: Mechanism(.ecKeyPairGen), publicTemplate: Template([(.ecParams, NamedCurve.p384.oidDER)]),
            privateTemplate: Template())
        let rsaPub = try PublicKey(spki: try value(rsa.public, .publicKeyInfo))
        let data = Array("families".utf8)
        for hash in HashAlgorithm.allCases {
            let m = hash.mechanisms
            let sig = try sign(Mechanism(m.rsaPKCS), rsa.private, data)
            #expect(
                svc.signSchemes.last == .rsaPKCS1(hash) && rsaPub.verify(signature: sig, digest: hash.hash(data), scheme: .pkcs1(hash)),
                "\(hash)")
            let before = svc.calls["sign"]
            try lib.verifyInit(h, mechanism: Mechanism(m.rsaPKCS), key: rsa.public)
            try lib.verify(h, data: data, signature: sig)
            #expect(svc.calls["sign"] == before, "verification is local")
            let pss = Mechanism(m.rsaPSS, .pss(hash: hash, mgf1: hash, saltLength: hash.size))
            let pssSig = try sign(pss, rsa.private, data)
            #expect(svc.signSchemes.last == .rsaPSS(hash: hash, mgf1: hash, saltLength: hash.size))
            #expect(
                rsaPub.verify(signature: pssSig, digest: hash.hash(data), scheme: .pss(hash, mgf1: hash, saltLength: hash.size)),
                "\(hash) PSS")
            let ecSig = try sign(Mechanism(m.ecdsa), ec.private, data)
            #expect(svc.signSchemes.last == .ecdsa(hash) && ecSig.count == 96, "\(hash): the ECDSA hash is named")
            try lib.verifyInit(h, mechanism: Mechanism(m.ecdsa), key: ec.public)
            try lib.verify(h, data: data, signature: ecSig)
            try lib.verifyInit(h, mechanism: Mechanism(m.ecdsa), key: ec.public)
            #expect(throws: TokenError.signatureInvalid) { try lib.verify(h, data: data + [0], signature: ecSig) }
        }
        // A DigestInfo through CKM_RSA_PKCS is signed as its hash; raw RSA is a raw signature.
        let d = HashAlgorithm.sha3_512.hash(data)
        _ = try sign(Mechanism(.rsaPKCS), rsa.private, HashAlgorithm.sha3_512.digestInfoPrefix + d)
        #expect(svc.signSchemes.last == .rsaPKCS1(.sha3_512))
        let decrypts = svc.calls["decrypt"]
        let raw = try sign(Mechanism(.rsaX509), rsa.private, [1, 2, 3])
        #expect(svc.signSchemes.last == .rsaRaw && svc.calls["decrypt"] == decrypts && raw.count == 256)
        #expect(try rsaPub.encrypt(raw, padding: .none).suffix(3) == [1, 2, 3])
        // Multi-part equals single-part.
        try lib.signInit(h, mechanism: Mechanism(.sha3_256RSAPKCS), key: rsa.private)
        try lib.signUpdate(h, part: Array(data.prefix(3)))
        try lib.signUpdate(h, part: Array(data.dropFirst(3)))
        #expect(bytes(try lib.signFinal(h, capacity: 4096)) == (try sign(Mechanism(.sha3_256RSAPKCS), rsa.private, data)))
    }

    /// MACs in the service (HMAC for every hash row, AES-CMAC, AES-MAC), equal to the local ones;
    /// C_Verify compares them here.
    @Test func macsAreComputedInTheServiceAndCompared() throws {
        let value = [UInt8](repeating: 0x3C, count: 32)
        let mac = try secretKey(value, aes: false)
        let data = Array("mac me".utf8)
        for hash in HashAlgorithm.allCases {
            let m = Mechanism(hash.mechanisms.hmac)
            let tag = try sign(m, mac, data)
            #expect(tag == hash.hmac(key: value, data: data), "HMAC-\(hash)")
            try lib.verifyInit(h, mechanism: m, key: mac)
            try lib.verify(h, data: data, signature: tag)
            try lib.verifyInit(h, mechanism: m, key: mac)
            #expect(throws: TokenError.signatureInvalid) { try lib.verify(h, data: data, signature: tag.map { $0 ^ 1 }) }
        }
        let aesValue = [UInt8](repeating: 0x71, count: 16)
        let aes = try secretKey(aesValue, aes: true)
        #expect(try sign(Mechanism(.aesCMAC), aes, data) == (try BlockCipher(kind: .aes, key: aesValue).cmac(data)))
        #expect(try sign(Mechanism(.aesMAC), aes, data) == Array(try BlockCipher(kind: .aes, key: aesValue).cbcMAC(data).prefix(8)))
    }

    /// Block ciphers: every mode round trips, matches VSSMCrypto, and gives the same result in one
    /// part and in several; RSA decryption (OAEP with SHA-3 too) of what was encrypted here.
    @Test func ciphersRoundTripInOneAndManyParts() throws {
        let keyValue = [UInt8](repeating: 0x2A, count: 32)
        let aes = try secretKey(keyValue, aes: true)
        let local = try BlockCipher(kind: .aes, key: keyValue)
        let iv = [UInt8](repeating: 9, count: 16)
        let plain = [UInt8]((0..<64).map { UInt8($0) })
        let modes: [(Mechanism, [UInt8])] = [
            (Mechanism(.aesECB), try local.ecbEncrypt(plain)),
            (Mechanism(.aesCBC, .raw(iv)), try local.cbcEncrypt(iv: iv, plain)),
            (Mechanism(.aesCBCPad, .raw(iv)), try local.cbcEncrypt(iv: iv, PKCS7.pad(plain, blockSize: 16))),
            (Mechanism(.aesCTR, .iv(iv)), try local.ctr(iv: iv, plain)),
        ]
        for (m, expected) in modes {
            try lib.cipherInit(h, mechanism: m, key: aes, encrypt: true)
            let one = bytes(try lib.cipher(h, encrypt: true, data: plain, capacity: 4096))
            #expect(one == expected, "\(m.type)")
            try lib.cipherInit(h, mechanism: m, key: aes, encrypt: true)
            var parts = bytes(try lib.cipherUpdate(h, encrypt: true, part: Array(plain.prefix(20)), capacity: 4096))
            parts += bytes(try lib.cipherUpdate(h, encrypt: true, part: Array(plain.dropFirst(20)), capacity: 4096))
            parts += bytes(try lib.cipher(h, encrypt: true, data: nil, capacity: 4096))
            #expect(parts == expected, "\(m.type) in parts")
            try lib.cipherInit(h, mechanism: m, key: aes, encrypt: false)
            #expect(bytes(try lib.cipher(h, encrypt: false, data: one, capacity: 4096)) == plain, "\(m.type) decrypts")
        }
        let gcm = Mechanism(.aesGCM, .gcm(iv: Array(iv.prefix(12)), aad: [1, 2], tagBits: 128))
        try lib.cipherInit(h, mechanism: gcm, key: aes, encrypt: true)
        let sealed = bytes(try lib.cipher(h, encrypt: true, data: plain, capacity: 4096))
        let (ct, tag) = try local.gcmSeal(nonce: Array(iv.prefix(12)), aad: [1, 2], plain, tagLength: 16)
        #expect(sealed == ct + tag)
        try lib.cipherInit(h, mechanism: gcm, key: aes, encrypt: false)
        #expect(throws: TokenError.encryptedDataInvalid) {
            _ = try lib.cipher(h, encrypt: false, data: sealed.map { $0 ^ 0x80 }, capacity: 4096)
        }
        let rsa = try lib.generateKeyPair(
            h, mechanism: Mechanism(.rsaPKCSKeyPairGen),
            publicTemplate: Template([(.modulusBits, Self.U(2048)), (.encrypt, Self.B(true))]),
            privateTemplate: Template([(.decrypt, Self.B(true))]))
        let rsaPub = try PublicKey(spki: try value(rsa.public, .publicKeyInfo))
        for (hash, mgf1, label) in [
            (HashAlgorithm.sha256, HashAlgorithm.sha256, [UInt8]()), (.sha3_256, .sha3_256, []), (.sha3_512, .sha1, [7]),
        ] {
            let secret = Array("oaep \(hash)".utf8)
            let sealed = try rsaPub.encrypt(secret, padding: .oaep(hash, mgf1: mgf1, label: label))
            try lib.cipherInit(
                h, mechanism: Mechanism(.rsaPKCSOAEP, .oaep(hash: hash, mgf1: mgf1, label: label)), key: rsa.private, encrypt: false)
            #expect(bytes(try lib.cipher(h, encrypt: false, data: sealed, capacity: 4096)) == secret, "OAEP \(hash)")
        }
    }

    /// C_DeriveKey in the service: values equal what VSSMCrypto computes; ECDH with a SHA-3 KDF
    /// against a peer whose private key is here; what is derived from a sensitive key stays so.
    @Test func derivationsHappenInTheServiceAndKeepProtection() throws {
        let baseValue = [UInt8](repeating: 0x13, count: 16)
        let readable: [(AttributeType, [UInt8])] = [(.sensitive, Self.B(false)), (.extractable, Self.B(true))]
        let base = try secretKey(baseValue, aes: true, extra: [(.derive, Self.B(true))] + readable)
        let macTemplate = Template(
            [(.class, Self.U(ObjectClass.secretKey.rawValue)), (.keyType, Self.U(KeyKind.genericSecret.rawValue))] + readable)
        let cat = try lib.deriveKey(h, mechanism: Mechanism(.concatenateBaseAndData, .data([4, 5])), base: base, template: macTemplate)
        #expect(try value(cat, .value) == baseValue + [4, 5])
        let xor = try lib.deriveKey(
            h, mechanism: Mechanism(.xorBaseAndData, .data([UInt8](repeating: 0x01, count: 16))), base: base, template: macTemplate)
        #expect(try value(xor, .value) == [UInt8](repeating: 0x12, count: 16))
        let block = [UInt8](repeating: 0x55, count: 16)
        let enc = try lib.deriveKey(h, mechanism: Mechanism(.aesECBEncryptData, .data(block)), base: base, template: macTemplate)
        #expect(try value(enc, .value) == (try BlockCipher(kind: .aes, key: baseValue).ecbEncrypt(block)))
        let sensitive = try secretKey(baseValue, aes: true, extra: [(.derive, Self.B(true)), (.extractable, Self.B(true))])
        let child = try lib.deriveKey(h, mechanism: Mechanism(.concatenateBaseAndData, .data([1])), base: sensitive, template: macTemplate)
        #expect(try lib.attributes(h, object: child, types: [.value, .sensitive]) == [.sensitive, .value(Self.B(true))])
        // ECDH1 with CKD_SHA3_256_KDF.
        let mine = try lib.generateKeyPair(
            h, mechanism: Mechanism(.ecKeyPairGen), publicTemplate: Template([(.ecParams, NamedCurve.p256.oidDER)]),
            privateTemplate: Template([(.derive, Self.B(true))]))
        let peer = try PrivateKey.generateEC(.p256)
        let peerPoint = try #require(DER.subjectPublicKeyBits(spki: peer.spkiDER))
        let ecdh = try lib.deriveKey(
            h,
            mechanism: Mechanism(.ecdh1Derive, .ecdh(kdf: HashAlgorithm.sha3_256.mechanisms.kdf, sharedData: [3], publicData: peerPoint)),
            base: mine.private, template: Template(macTemplate.attributes + [(.valueLen, Self.U(24))]))
        let myPoint = try #require(DER.unwrapOctetString(try value(mine.public, .ecPoint)))
        let z = try peer.ecdhSharedSecret(peerPoint: myPoint)
        #expect(try value(ecdh, .value) == KDF.x963(.sha3_256, secret: z, sharedInfo: [3], length: 24))
        #expect(throws: TokenError.self) {
            _ = try lib.deriveKey(
                h, mechanism: Mechanism(.ecdh1Derive, .ecdh(kdf: 0x99, sharedData: [], publicData: peerPoint)),
                base: mine.private, template: macTemplate)
        }
    }

    /// C_WrapKey / C_UnwrapKey: AES key wrap equals RFC 3394 computed here; the unwrapped key has
    /// the original value; a key that is not extractable is refused.
    @Test func wrapAndUnwrapRoundTrip() throws {
        let kekValue = [UInt8](repeating: 0x77, count: 32)
        let kek = try secretKey(kekValue, aes: true, extra: [(.wrap, Self.B(true)), (.unwrap, Self.B(true)), (.decrypt, Self.B(false))])
        let targetValue = [UInt8](repeating: 0x19, count: 16)
        let target = try secretKey(targetValue, aes: true, extra: [(.extractable, Self.B(true)), (.sensitive, Self.B(false))])
        let wrapped = bytes(try lib.wrapKey(h, mechanism: Mechanism(.aesKeyWrap), wrapping: kek, key: target, capacity: 4096))
        #expect(wrapped == (try AESKeyWrap.wrap(key: kekValue, targetValue, padded: false)))
        let back = try lib.unwrapKey(
            h, mechanism: Mechanism(.aesKeyWrap), unwrapping: kek, wrapped: wrapped,
            template: Template([
                (.class, Self.U(ObjectClass.secretKey.rawValue)), (.keyType, Self.U(KeyKind.aes.rawValue)),
                (.sensitive, Self.B(false)), (.extractable, Self.B(true)),
            ]))
        #expect(try value(back, .value) == targetValue)
        let sealed = try secretKey(targetValue, aes: true, extra: [(.extractable, Self.B(false))])
        #expect(throws: TokenError.self) {
            _ = try lib.wrapKey(h, mechanism: Mechanism(.aesKeyWrap), wrapping: kek, key: sealed, capacity: 4096)
        }
    }

    /// Digests run here for every hash row, in one part and in several.
    @Test func digestsForEveryHashRow() throws {
        let data = Array("digest".utf8)
        for hash in HashAlgorithm.allCases {
            try lib.digestInit(h, mechanism: Mechanism(hash.mechanisms.digest))
            #expect(bytes(try lib.digest(h, data: data, capacity: 64)) == hash.hash(data), "\(hash)")
            try lib.digestInit(h, mechanism: Mechanism(hash.mechanisms.digest))
            try lib.digestUpdate(h, part: Array(data.prefix(2)))
            try lib.digestUpdate(h, part: Array(data.dropFirst(2)))
            #expect(bytes(try lib.digestFinal(h, capacity: 64)) == hash.hash(data), "\(hash) in parts")
        }
        #expect(svc.calls.isEmpty, "digests need no service")
    }
}

/// C_GetOperationState / C_SetOperationState (issue 22, item 3): digests, signatures and
/// verifications move between sessions; what cannot be handed out says so.
@Suite struct OperationStateTests {
    static let forgedHead = Array("VSSMOPS2".utf8)

    static func forged(kind: UInt8, mechanism: UInt, parameters: [UInt8] = [], data: [UInt8] = []) -> [UInt8] {
        forgedHead + [kind] + (0..<8).map { UInt8(truncatingIfNeeded: mechanism >> (8 * $0)) } + [0]
            + [UInt8](repeating: 0, count: 32) + [UInt8(parameters.count), 0] + parameters + data
    }

    @Test func digestsSaveAndResume() throws {
        let svc = FakeKeyService(password: "pw")
        let lib = try TokenCoreTests.library(svc)
        let a = try lib.openSession(slot: 0, readWrite: false)
        let b = try lib.openSession(slot: 0, readWrite: false)
        let data = [UInt8]((0..<200).map { UInt8($0) })
        for hash in HashAlgorithm.allCases {
            try lib.digestInit(a, mechanism: Mechanism(hash.mechanisms.digest))
            try lib.digestUpdate(a, part: Array(data.prefix(77)))
            guard case .bytes(let state) = try lib.operationState(a, capacity: 1 << 20) else { Issue.record("no state"); continue }
            try lib.setOperationState(b, state, encryptionKey: 0, authenticationKey: 0)
            try lib.digestUpdate(b, part: Array(data.dropFirst(77)))
            #expect(try lib.digestFinal(b, capacity: 64) == .bytes(hash.hash(data)), "\(hash)")
            lib.endOperation(a)
        }
        // Beyond 64 KiB the state is not kept.
        try lib.digestInit(a, mechanism: Mechanism(.sha256))
        try lib.digestUpdate(a, part: [UInt8](repeating: 1, count: (64 << 10) + 1))
        #expect(throws: TokenError.stateUnsaveable) { _ = try lib.operationState(a, capacity: nil) }
        lib.endOperation(a)
        #expect(throws: TokenError.operationNotInitialized) { _ = try lib.operationState(a, capacity: nil) }
        #expect(throws: TokenError.savedStateInvalid) { try lib.setOperationState(b, [1, 2, 3], encryptionKey: 0, authenticationKey: 0) }
        #expect(throws: TokenError.savedStateInvalid) {
            try lib.setOperationState(b, Self.forged(kind: 0, mechanism: 0x99), encryptionKey: 0, authenticationKey: 0)
        }
        #expect(throws: TokenError.savedStateInvalid) {
            try lib.setOperationState(b, Self.forged(kind: 7, mechanism: 0x250), encryptionKey: 0, authenticationKey: 0)
        }
        #expect(throws: TokenError.keyNotNeeded) {
            try lib.setOperationState(b, Self.forged(kind: 0, mechanism: 0x250), encryptionKey: 0, authenticationKey: 5)
        }
        try lib.setOperationState(b, Self.forged(kind: 0, mechanism: 0x250), encryptionKey: 0, authenticationKey: 0)
        #expect(try lib.digestFinal(b, capacity: 32) == .bytes(HashAlgorithm.sha256.hash([])), "CKM_SHA256 with no data yet")
    }

    /// A signature begun in one session ends in another with the same key (hashed, PSS with its
    /// parameters, EdDSA's buffered data, an HMAC), and verifies with the public key here; a
    /// verification moves too. The key is named again and must be the same one.
    @Test func signaturesAndVerificationsSaveAndResume() throws {
        let svc = FakeKeyService(password: "pw")
        let lib = try TokenCoreTests.library(svc)
        let a = try lib.openSession(slot: 0, readWrite: true)
        let b = try lib.openSession(slot: 0, readWrite: true)
        try lib.login(a, user: .user, pin: "pw")
        let ec = try lib.generateKeyPair(
            a, mechanism: Mechanism(.ecKeyPairGen), publicTemplate: Template([(.ecParams, NamedCurve.p256.oidDER)]),
            privateTemplate: Template())
        let rsa = try lib.generateKeyPair(
            a, mechanism: Mechanism(.rsaPKCSKeyPairGen), publicTemplate: Template([(.modulusBits, AttributeValue.ulong(2048))]),
            privateTemplate: Template())
        let ed = try lib.generateKeyPair(
            a, mechanism: Mechanism(.ecEdwardsKeyPairGen), publicTemplate: Template([(.ecParams, AsymmetricKind.ed25519.edwardsOID!)]),
            privateTemplate: Template())
        let data = Array("a message signed across two sessions".utf8)
        let pss = Mechanism(.sha384RSAPKCSPSS, .pss(hash: .sha384, mgf1: .sha384, saltLength: 48))
        for (m, pair) in [(Mechanism(.ecdsaSHA256), ec), (pss, rsa), (Mechanism(.eddsa), ed), (Mechanism(.sha3_256RSAPKCS), rsa)] {
            try lib.signInit(a, mechanism: m, key: pair.private)
            try lib.signUpdate(a, part: Array(data.prefix(10)))
            guard case .bytes(let state) = try lib.operationState(a, capacity: 1 << 20) else { Issue.record("no state"); continue }
            #expect(throws: TokenError.keyNeeded) { try lib.setOperationState(b, state, encryptionKey: 0, authenticationKey: 0) }
            #expect(throws: TokenError.keyChanged) {
                try lib.setOperationState(b, state, encryptionKey: 0, authenticationKey: pair.public.rawValue)
            }
            // pkcs11-provider passes the key as both handles.
            try lib.setOperationState(b, state, encryptionKey: pair.private.rawValue, authenticationKey: pair.private.rawValue)
            try lib.signUpdate(b, part: Array(data.dropFirst(10)))
            guard case .bytes(let sig) = try lib.signFinal(b, capacity: 4096) else { Issue.record("no signature"); continue }
            // The original session still holds its half: it finishes the same message too.
            try lib.signUpdate(a, part: Array(data.dropFirst(10)))
            guard case .bytes(let sig2) = try lib.signFinal(a, capacity: 4096) else { Issue.record("no signature"); continue }
            for s in [sig, sig2] {
                try lib.verifyInit(b, mechanism: m, key: pair.public)
                try lib.verify(b, data: data, signature: s)
            }
            // A verification moves as well, and still refuses a wrong signature.
            try lib.verifyInit(a, mechanism: m, key: pair.public)
            try lib.verifyUpdate(a, part: Array(data.prefix(3)))
            guard case .bytes(let vstate) = try lib.operationState(a, capacity: 1 << 20) else { Issue.record("no state"); continue }
            try lib.setOperationState(b, vstate, encryptionKey: 0, authenticationKey: pair.public.rawValue)
            try lib.verifyUpdate(b, part: Array(data.dropFirst(3)))
            try lib.verifyFinal(b, signature: sig)
            try lib.verifyUpdate(a, part: Array(data.dropFirst(3)) + [0])
            #expect(throws: TokenError.signatureInvalid) { try lib.verifyFinal(a, signature: sig) }
        }
        let pub = try PublicKey(
            spki: try {
                guard case .value(let v)? = try lib.attributes(a, object: rsa.public, types: [.publicKeyInfo]).first else { return [] }
                return v
            }())
        try lib.signInit(a, mechanism: pss, key: rsa.private)
        try lib.signUpdate(a, part: data)
        guard case .bytes(let state) = try lib.operationState(a, capacity: 1 << 20) else { return }
        lib.endOperation(a)
        try lib.setOperationState(b, state, encryptionKey: 0, authenticationKey: rsa.private.rawValue)
        guard case .bytes(let sig) = try lib.signFinal(b, capacity: 4096) else { return }
        #expect(svc.signSchemes.last == .rsaPSS(hash: .sha384, mgf1: .sha384, saltLength: 48), "PSS parameters kept")
        #expect(pub.verify(signature: sig, digest: HashAlgorithm.sha384.hash(data), scheme: .pss(.sha384, mgf1: .sha384, saltLength: 48)))
        // More than 64 KiB of unhashed data (EdDSA) is not handed out.
        try lib.signInit(a, mechanism: Mechanism(.eddsa), key: ed.private)
        try lib.signUpdate(a, part: [UInt8](repeating: 7, count: (64 << 10) + 1))
        #expect(throws: TokenError.stateUnsaveable) { _ = try lib.operationState(a, capacity: nil) }
    }
}

/// ML-DSA (issue 22, item 1): CKM_ML_DSA_KEY_PAIR_GEN with CKA_PARAMETER_SET, pure signatures made
/// in the service with the caller's context, verified in the service (the module has no ML-DSA).
@Suite struct MLDSAFamilyTests {
    @Test func keyPairsSignaturesAndTheirErrors() throws {
        let svc = FakeKeyService(password: "pw")
        let lib = try TokenCoreTests.library(svc)
        let h = try lib.openSession(slot: 0, readWrite: true)
        try lib.login(h, user: .user, pin: "pw")
        #expect(throws: TokenError.templateIncomplete("CKA_PARAMETER_SET (CKP_ML_DSA_65 or CKP_ML_DSA_87)")) {
            _ = try lib.generateKeyPair(h, mechanism: Mechanism(.mlDSAKeyPairGen), publicTemplate: Template(), privateTemplate: Template())
        }
        #expect(throws: TokenError.attributeValueInvalid(.parameterSet), "ML-DSA-44 is not offered") {
            _ = try lib.generateKeyPair(
                h, mechanism: Mechanism(.mlDSAKeyPairGen), publicTemplate: Template([(.parameterSet, AttributeValue.ulong(1))]),
                privateTemplate: Template())
        }
        for set in MLDSAParameterSet.allCases {
            let pair = try lib.generateKeyPair(
                h, mechanism: Mechanism(.mlDSAKeyPairGen),
                publicTemplate: Template([(.parameterSet, AttributeValue.ulong(set.pkcs11ParameterSet))]), privateTemplate: Template())
            func value(_ o: ObjectHandle, _ t: AttributeType) throws -> [UInt8]? {
                guard case .value(let v)? = try lib.attributes(h, object: o, types: [t]).first else { return nil }
                return v
            }
            #expect(try value(pair.private, .keyType) == AttributeValue.ulong(KeyKind.mlDSA.rawValue))
            #expect(try value(pair.public, .parameterSet) == AttributeValue.ulong(set.pkcs11ParameterSet))
            #expect(try value(pair.public, .value)?.count == set.publicKeySize, "the public key's CKA_VALUE is the raw key")
            #expect(try value(pair.private, .value) == nil, "the private key's value is sensitive")
            let message = Array("post-quantum".utf8)
            let context = Array("ctx".utf8)
            let m = Mechanism(.mlDSA, .signContext(hedge: 0, context: context))
            try lib.signInit(h, mechanism: m, key: pair.private)
            guard case .bytes(let sig) = try lib.sign(h, data: message, capacity: 8192) else {
                Issue.record("no signature")
                continue
            }
            #expect(sig.count == set.signatureSize && svc.signSchemes.last == .mldsa(context: context))
            let before = svc.calls["verify"] ?? 0
            try lib.verifyInit(h, mechanism: m, key: pair.public)
            try lib.verify(h, data: message, signature: sig)
            #expect(svc.calls["verify"] == before + 1, "verified by the service")
            try lib.verifyInit(h, mechanism: Mechanism(.mlDSA), key: pair.public)
            #expect(throws: TokenError.signatureInvalid, "another context is another signature") {
                try lib.verify(h, data: message, signature: sig)
            }
            #expect(throws: TokenError.mechanismParamInvalid("deterministic ML-DSA signatures are not offered (hedged only)")) {
                try lib.signInit(h, mechanism: Mechanism(.mlDSA, .signContext(hedge: 2, context: [])), key: pair.private)
            }
            // ML-DSA keys sign ML-DSA only.
            #expect(throws: TokenError.keyTypeInconsistent) { try lib.signInit(h, mechanism: Mechanism(.ecdsaSHA256), key: pair.private) }
        }
    }
}

/// ML-KEM (issue 22, item 1): C_EncapsulateKey / C_DecapsulateKey make secret keys in the service
/// from the shared secret; the ciphertext size query makes no key; the keys agree.
@Suite struct MLKEMFamilyTests {
    @Test func encapsulationAndDecapsulationAgree() throws {
        let svc = FakeKeyService(password: "pw")
        let lib = try TokenCoreTests.library(svc)
        let h = try lib.openSession(slot: 0, readWrite: true)
        try lib.login(h, user: .user, pin: "pw")
        #expect(throws: TokenError.attributeValueInvalid(.parameterSet), "ML-KEM-512 is not offered") {
            _ = try lib.generateKeyPair(
                h, mechanism: Mechanism(.mlKEMKeyPairGen), publicTemplate: Template([(.parameterSet, AttributeValue.ulong(1))]),
                privateTemplate: Template())
        }
        for set in MLKEMParameterSet.allCases {
            let pair = try lib.generateKeyPair(
                h, mechanism: Mechanism(.mlKEMKeyPairGen),
                publicTemplate: Template([(.parameterSet, AttributeValue.ulong(set.pkcs11ParameterSet))]), privateTemplate: Template())
            let aes = Template([
                (.class, AttributeValue.ulong(ObjectClass.secretKey.rawValue)), (.keyType, AttributeValue.ulong(KeyKind.aes.rawValue)),
                (.valueLen, AttributeValue.ulong(32)), (.encrypt, AttributeValue.bool(true)),
            ])
            let derivesBefore = svc.calls["derive"] ?? 0
            let query = try lib.encapsulateKey(h, mechanism: Mechanism(.mlKEM), publicKey: pair.public, template: aes, capacity: nil)
            #expect(query.ciphertext == .length(set.ciphertextSize) && query.key == nil && svc.calls["derive"] ?? 0 == derivesBefore)
            #expect(throws: TokenError.bufferTooSmall(required: set.ciphertextSize)) {
                _ = try lib.encapsulateKey(h, mechanism: Mechanism(.mlKEM), publicKey: pair.public, template: aes, capacity: 10)
            }
            let made = try lib.encapsulateKey(h, mechanism: Mechanism(.mlKEM), publicKey: pair.public, template: aes, capacity: 4096)
            guard case .bytes(let ciphertext) = made.ciphertext, let encKey = made.key else {
                Issue.record("no ciphertext")
                continue
            }
            #expect(ciphertext.count == set.ciphertextSize)
            let decKey = try lib.decapsulateKey(
                h, mechanism: Mechanism(.mlKEM), privateKey: pair.private, template: aes, ciphertext: ciphertext)
            let block = [UInt8](repeating: 0x42, count: 16)
            func ecb(_ k: ObjectHandle) throws -> SizedOutput {
                try lib.cipherInit(h, mechanism: Mechanism(.aesECB), key: k, encrypt: true)
                return try lib.cipher(h, encrypt: true, data: block, capacity: 64)
            }
            #expect(try ecb(encKey) == ecb(decKey), "both sides hold the same shared secret")
            #expect(throws: TokenError.wrappedKeyLenRange) {
                _ = try lib.decapsulateKey(
                    h, mechanism: Mechanism(.mlKEM), privateKey: pair.private, template: aes, ciphertext: Array(ciphertext.dropLast()))
            }
            #expect(throws: TokenError.keyTypeInconsistent, "encapsulation takes the public key") {
                _ = try lib.encapsulateKey(h, mechanism: Mechanism(.mlKEM), publicKey: pair.private, template: aes, capacity: 4096)
            }
        }
    }
}
