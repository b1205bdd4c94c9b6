import Testing
import TokenCore
import FakeKeyService
import VSSMClient
import VSSMCrypto
import VSSMServiceAdapter
import VSSMTestSupport
import VSSMWire

/// The KeyService contract: the same checks against the fake TokenCore's unit tests use and
/// against a real node through VSSMKeyService, so the fake cannot drift from the service.
@Suite(.serialized) struct ContractTests {
    static let owner = String(repeating: "ef", count: 16)

    static func real(_ n: TestNode) throws -> VSSMKeyService {
        let pki = TestNode.shared.pki
        var cfg = TLSClientConfiguration(endpoints: [Endpoint(host: "127.0.0.1", port: n.ports[.api] ?? 0)])
        cfg.trustPEM = Array(X509Info.pem(certificates: [pki.rpcCertificateDER]).utf8)
        cfg.clientCertificatePEM = Array(X509Info.pem(certificates: [pki.clientCertificateDER]).utf8)
        cfg.clientKeyPEM = Array(pki.clientKeyPEM.utf8)
        return try VSSMKeyService(cfg)
    }

    /// The service status a call failed with (nil: it did not fail that way).
    static func status(_ body: () throws(TokenError) -> Void) -> Int? {
        do { try body() } catch { if case .device(_, let s) = error { return s } }
        return nil
    }

    /// True when a call was refused for the key's usage flags (the service's 403 "Key function not
    /// permitted", CKR_KEY_FUNCTION_NOT_PERMITTED in the module).
    static func refusedUse(_ body: () throws(TokenError) -> Void) -> Bool {
        do { try body() } catch { return error == .keyFunctionNotPermitted }
        return false
    }

    /// Every check names what it expects; `who` says which implementation failed.
    static func contract(_ svc: any KeyService, password: String, who: String) throws {
        let session = "~\(owner)/ec"
        // Session keys: no password, listed to their owner only; a signature verifies.
        try svc.generateKey(adminPassword: "", name: session, .ec(bits: 256), id: [1, 2], label: "mine", attributes: nil)
        let mine = try svc.list(adminPassword: password, owner: owner).keys
        let ec = try #require(mine.first { $0.name == session }, "\(who): session key listed")
        #expect(ec.kind == .ec && ec.ephemeral && ec.id == [1, 2] && ec.label == "mine" && ec.generated == true, "\(who)")
        #expect(
            try !svc.list(adminPassword: password, owner: String(repeating: "00", count: 16)).keys.contains { $0.name == session },
            "\(who): other owners do not see it")
        let digest = DigestAlgorithm.sha256.hash(Array("contract".utf8))
        let sig = try svc.sign(key: session, .ecdsa(.sha256), digest)
        #expect(try PublicKey(spki: ec.publicKey).verify(signature: sig, digest: digest, scheme: .ecdsa), "\(who): ECDSA verifies")
        // Token keys: the admin password; a name is taken once.
        #expect(throws: TokenError.adminPasswordRejected, "\(who)") {
            try svc.generateKey(
                adminPassword: "wrong", name: "t-aes", .secret(cipher: "AES", bytes: 32), id: nil, label: nil, attributes: nil)
        }
        try svc.generateKey(adminPassword: password, name: "t-aes", .secret(cipher: "AES", bytes: 32), id: nil, label: nil, attributes: [7])
        #expect(throws: TokenError.device("Key with name t-aes already exists.", status: 409), "\(who)") {
            try svc.generateKey(
                adminPassword: password, name: "t-aes", .secret(cipher: "AES", bytes: 16), id: nil, label: nil, attributes: nil)
        }
        let aes = try #require(try svc.list(adminPassword: password, owner: nil).keys.first { $0.name == "t-aes" }, "\(who)")
        #expect(aes.kind == .symmetric && aes.length == 32 && aes.cipher == "AES" && !aes.ephemeral && aes.attributes == [7], "\(who)")
        // AES with a caller IV round trips; a changed GCM tag is the caller's input (400).
        let iv = [UInt8](repeating: 3, count: 16)
        let data = [UInt8](repeating: 0x5A, count: 48)
        let ct = try svc.symmetric(encrypt: true, key: "t-aes", SymmetricScheme("AES", .cbc(iv: iv, padded: false)), data)
        #expect(ct != data && ct.count == 48, "\(who)")
        #expect(try svc.symmetric(encrypt: false, key: "t-aes", SymmetricScheme("AES", .cbc(iv: iv, padded: false)), ct) == data, "\(who)")
        var sealed = try svc.symmetric(
            encrypt: true, key: "t-aes", SymmetricScheme("AES", .gcm(iv: Array(iv.prefix(12)), aad: [1], tagLength: 16)), data)
        sealed[sealed.count - 1] ^= 1
        #expect(throws: TokenError.self, "\(who)") {
            _ = try svc.symmetric(
                encrypt: false, key: "t-aes", SymmetricScheme("AES", .gcm(iv: Array(iv.prefix(12)), aad: [1], tagLength: 16)), sealed)
        }
        // RSA: an injected key decrypts OAEP made elsewhere; garbage is the caller's input (400).
        let rsa = try PrivateKey.generateRSA(bits: 2048)
        try svc.injectKey(
            adminPassword: password, name: "t-rsa", type: .asymmetric, key: rsa.pkcs8DER, id: nil, cipher: nil, label: nil, attributes: nil)
        let pub = try #require(rsa.publicKey)
        let oaep = try pub.encrypt(Array("secret".utf8), padding: .oaep(.sha256, mgf1: .sha256, label: []))
        #expect(try svc.decrypt(key: "t-rsa", .rsaOAEP(hash: .sha256, mgf1: .sha256, label: []), oaep) == Array("secret".utf8), "\(who)")
        let badDecrypt = status { () throws(TokenError) in
            _ = try svc.decrypt(key: "t-rsa", .rsaPKCS1, [UInt8](repeating: 1, count: 256))
        }
        #expect(badDecrypt == 400, "\(who)")
        // Every hash row, by typed scheme: PKCS#1 v1.5, PSS and ECDSA signatures verify here; OAEP
        // with each hash (and a foreign MGF1 with a label) decrypts; HMAC equals the local one.
        let ecPriv = try PrivateKey.generateEC(.p384)
        try svc.injectKey(
            adminPassword: password, name: "t-ec", type: .asymmetric, key: ecPriv.pkcs8DER, id: nil, cipher: nil, label: nil,
            attributes: nil)
        let macKey = [UInt8](repeating: 0x6B, count: 32)
        try svc.injectKey(
            adminPassword: password, name: "t-mac", type: .mac, key: macKey, id: nil, cipher: nil, label: nil, attributes: nil)
        for h in HashAlgorithm.allCases {
            let d = h.hash(Array("rows".utf8))
            let pkcs1 = try svc.sign(key: "t-rsa", .rsaPKCS1(h), d)
            #expect(pub.verify(signature: pkcs1, digest: d, scheme: .pkcs1(h)), "\(who): \(h) PKCS#1")
            let pss = try svc.sign(key: "t-rsa", .rsaPSS(hash: h, mgf1: h, saltLength: h.size), d)
            #expect(pub.verify(signature: pss, digest: d, scheme: .pss(h, mgf1: h, saltLength: h.size)), "\(who): \(h) PSS")
            let ecdsa = try svc.sign(key: "t-ec", .ecdsa(h), d)
            #expect(try #require(ecPriv.publicKey).verify(signature: ecdsa, digest: d, scheme: .ecdsa), "\(who): \(h) ECDSA")
            let secret = Array("oaep \(h)".utf8)
            let sealed = try pub.encrypt(secret, padding: .oaep(h, mgf1: h, label: []))
            #expect(try svc.decrypt(key: "t-rsa", .rsaOAEP(hash: h, mgf1: h, label: []), sealed) == secret, "\(who): \(h) OAEP")
            #expect(try svc.mac(key: "t-mac", .hmac(h), d) == h.hmac(key: macKey, data: d), "\(who): HMAC-\(h)")
        }
        let mixed = try pub.encrypt([1, 2, 3], padding: .oaep(.sha3_384, mgf1: .sha1, label: [9]))
        #expect(try svc.decrypt(key: "t-rsa", .rsaOAEP(hash: .sha3_384, mgf1: .sha1, label: [9]), mixed) == [1, 2, 3], "\(who)")
        let aesKey = [UInt8](repeating: 0x11, count: 16)
        try svc.injectKey(
            adminPassword: password, name: "t-aes2", type: .symmetric, key: aesKey, id: nil, cipher: "AES", label: nil, attributes: nil)
        let cmac = try BlockCipher(kind: .aes, key: aesKey).cmac(data)
        #expect(try svc.mac(key: "t-aes2", .aesCMAC(length: 16), data) == cmac, "\(who): AES-CMAC")
        #expect(
            try svc.mac(key: "t-aes2", .aesMAC(length: 8), data) == Array(try BlockCipher(kind: .aes, key: aesKey).cbcMAC(data).prefix(8)),
            "\(who)")
        // Keys made from keys, in the service: derive, wrap and unwrap with the usage flags the
        // service enforces; a readable (session) key reads back, a sensitive one never does, and
        // what is derived from a sensitive key stays sensitive.
        let open = KeyFlags([KeyFlags.sensitive: false, KeyFlags.extractable: true, KeyFlags.derive: true]).blob
        let baseValue = [UInt8](repeating: 0x21, count: 16)
        let base = ServiceKey(name: "~\(owner)/base", kind: .symmetric, length: 16, cipher: "AES")
        try svc.injectKey(
            adminPassword: "", name: base.name, type: .symmetric, key: baseValue, id: nil, cipher: "AES", label: "base", attributes: open)
        func made(_ n: String, _ t: KeyType = .mac, attributes: [UInt8]? = open, length: Int = 0) -> NewKeySpec {
            NewKeySpec(
                name: "~\(owner)/\(n)", type: t, cipher: t == .symmetric ? "AES" : nil, length: length, id: nil, label: n,
                attributes: attributes)
        }
        func value(_ n: String, _ kind: ServiceKey.Kind = .mac) throws(TokenError) -> [UInt8] {
            try svc.keyValue(ServiceKey(name: "~\(owner)/\(n)", kind: kind))
        }
        try svc.deriveKey(adminPassword: "", base: base, mechanism: .concatenateBaseAndData([1, 2, 3]), new: made("cat"))
        #expect(try value("cat") == baseValue + [1, 2, 3], "\(who): CONCATENATE-BASE-AND-DATA")
        try svc.deriveKey(adminPassword: "", base: base, mechanism: .xorBaseAndData([UInt8](repeating: 0x0F, count: 16)), new: made("xor"))
        #expect(try value("xor") == [UInt8](repeating: 0x2E, count: 16), "\(who): XOR-BASE-AND-DATA")
        let block = [UInt8](repeating: 0x44, count: 16)
        try svc.deriveKey(adminPassword: "", base: base, mechanism: .aesECBEncryptData(block), new: made("ecb", .symmetric))
        #expect(
            try value("ecb", .symmetric) == (try BlockCipher(kind: .aes, key: baseValue).ecbEncrypt(block)), "\(who): AES-ECB-ENCRYPT-DATA")
        try svc.deriveKey(adminPassword: "", base: base, mechanism: .extractKeyFromKey(bitIndex: 4), new: made("bits", length: 2))
        #expect(try value("bits") == [0x12, 0x12], "\(who): EXTRACT-KEY-FROM-KEY")
        let sealedBase = ServiceKey(name: "~\(owner)/sealed", kind: .symmetric, length: 16, cipher: "AES")
        try svc.injectKey(
            adminPassword: "", name: sealedBase.name, type: .symmetric, key: [UInt8](repeating: 0x22, count: 16), id: nil, cipher: "AES",
            label: nil, attributes: KeyFlags([KeyFlags.sensitive: true, KeyFlags.derive: true]).blob)
        try svc.deriveKey(adminPassword: "", base: sealedBase, mechanism: .concatenateBaseAndData([9]), new: made("child"))
        #expect(
            ContractTests.refusedUse { () throws(TokenError) in _ = try value("child") },
            "\(who): derived from a sensitive key, stays sensitive")
        let noDerive = ServiceKey(name: "~\(owner)/plain", kind: .symmetric, length: 16, cipher: "AES")
        try svc.injectKey(
            adminPassword: "", name: noDerive.name, type: .symmetric, key: [UInt8](repeating: 0x33, count: 16), id: nil, cipher: "AES",
            label: nil, attributes: nil)
        #expect(
            ContractTests.refusedUse { () throws(TokenError) in
                try svc.deriveKey(adminPassword: "", base: noDerive, mechanism: .concatenateBaseAndData([1]), new: made("no"))
            }, "\(who): CKA_DERIVE FALSE")
        // Wrap the readable base with an AES key-encryption key and with RSA-OAEP; unwrap both.
        let kekValue = [UInt8](repeating: 0x5C, count: 32)
        let kek = ServiceKey(name: "t-kek", kind: .symmetric, length: 32, cipher: "AES")
        let wrapFlags = KeyFlags([KeyFlags.wrap: true, KeyFlags.unwrap: true]).blob
        try svc.injectKey(
            adminPassword: password, name: kek.name, type: .symmetric, key: kekValue, id: nil, cipher: "AES", label: nil,
            attributes: wrapFlags)
        let wrapped = try svc.wrapKey(key: kek, mechanism: .aesKeyWrap, target: base)
        #expect(wrapped == (try AESKeyWrap.wrap(key: kekValue, baseValue, padded: false)), "\(who): AES key wrap (RFC 3394)")
        try svc.unwrapKey(adminPassword: "", key: kek, mechanism: .aesKeyWrap, wrapped: wrapped, new: made("unwrapped", .symmetric))
        #expect(try value("unwrapped", .symmetric) == baseValue, "\(who): unwrapped")
        // Unwrapped bytes that are the value of a sensitive key here come back sensitive.
        let sealedWrapped = try AESKeyWrap.wrap(key: kekValue, [UInt8](repeating: 0x22, count: 16), padded: false)
        try svc.unwrapKey(adminPassword: "", key: kek, mechanism: .aesKeyWrap, wrapped: sealedWrapped, new: made("laundered", .symmetric))
        #expect(ContractTests.refusedUse { () throws(TokenError) in _ = try value("laundered", .symmetric) }, "\(who): stays sensitive")
        try svc.injectKey(
            adminPassword: password, name: "t-rsa-kek", type: .asymmetric, key: rsa.pkcs8DER, id: nil, cipher: nil, label: nil,
            attributes: wrapFlags)
        let rsaKEK = ServiceKey(name: "t-rsa-kek", kind: .rsa)
        let oaepWrapped = try svc.wrapKey(key: rsaKEK, mechanism: .rsaOAEP(hash: .sha3_256, mgf1: .sha256, label: []), target: base)
        #expect(try rsa.decrypt(oaepWrapped, padding: .oaep(.sha3_256, mgf1: .sha256, label: [])) == baseValue, "\(who): RSA-OAEP wrap")
        #expect(
            ContractTests.refusedUse { () throws(TokenError) in
                _ = try svc.wrapKey(key: kek, mechanism: .aesKeyWrap, target: sealedBase)
            }, "\(who): not extractable")
        #expect(
            ContractTests.refusedUse { () throws(TokenError) in
                _ = try svc.wrapKey(
                    key: ServiceKey(name: "t-aes2", kind: .symmetric, length: 16, cipher: "AES"), mechanism: .aesKeyWrap, target: base)
            }, "\(who): CKA_WRAP FALSE")
        // CKA_COPYABLE FALSE: no copy, and the flag does not turn TRUE again.
        let fixed = KeyFlags([KeyFlags.copyable: false, KeyFlags.sensitive: true]).blob
        try svc.injectKey(
            adminPassword: "", name: "~\(owner)/fixed", type: .mac, key: [UInt8](repeating: 0x44, count: 16), id: nil, cipher: nil,
            label: nil, attributes: fixed)
        #expect(
            ContractTests.refusedUse { () throws(TokenError) in
                try svc.copyKey(
                    adminPassword: "", name: "~\(owner)/fixed", type: .mac, newName: "~\(owner)/copied", id: nil, label: nil,
                    attributes: nil)
            }, "\(who): CKA_COPYABLE FALSE")
        #expect(
            ContractTests.status { () throws(TokenError) in
                try svc.setKeyID(
                    adminPassword: "", name: "~\(owner)/fixed", type: .mac, id: nil, label: nil,
                    attributes: KeyFlags([KeyFlags.copyable: true, KeyFlags.sensitive: true]).blob)
            } == 400, "\(who): CKA_COPYABLE does not turn TRUE again")
        // Unknown keys are 404.
        let unknown = status { () throws(TokenError) in _ = try svc.sign(key: "nope", .ecdsa(.sha256), digest) }
        #expect(unknown == 404, "\(who)")
        // Attributes change, copies, deletes; session keys go with their owner.
        try svc.setKeyID(adminPassword: password, name: "t-aes", type: .symmetric, id: [9], label: nil, attributes: nil)
        #expect(try svc.list(adminPassword: password, owner: nil).keys.first { $0.name == "t-aes" }?.id == [9], "\(who)")
        try svc.copyKey(
            adminPassword: password, name: "t-aes", type: .symmetric, newName: "~\(owner)/copy", id: [4], label: "copy", attributes: nil)
        #expect(try svc.list(adminPassword: password, owner: owner).keys.contains { $0.name == "~\(owner)/copy" && $0.id == [4] }, "\(who)")
        try svc.deleteKey(adminPassword: password, name: "t-aes", type: .symmetric)
        #expect(try !svc.list(adminPassword: password, owner: nil).keys.contains { $0.name == "t-aes" }, "\(who)")
        try svc.releaseSession(owner: owner)
        #expect(try svc.list(adminPassword: password, owner: owner).keys.allSatisfy { !$0.ephemeral }, "\(who): released")
        // Stored objects.
        let uid = try svc.createObject(
            adminPassword: password, objectClass: "DATA", label: "d", id: [1], value: [1, 2, 3], application: "app")
        try svc.updateObject(adminPassword: password, uid: uid, label: "d2", id: nil)
        #expect(
            try svc.list(adminPassword: password, owner: nil).objects.contains {
                $0.uid == uid && $0.label == "d2" && $0.value == [1, 2, 3]
            }, "\(who)")
        try svc.deleteObject(adminPassword: password, uid: uid)
        // A key pair's public half kept on its own (issue 22): a SubjectPublicKeyInfo, nothing else.
        let spki = try #require(ecPriv.publicKey).spkiDER
        let pk = try svc.createObject(
            adminPassword: password, objectClass: "PUBLIC_KEY", label: "retired", id: [5], value: spki, application: "")
        #expect(
            try svc.list(adminPassword: password, owner: nil).objects.contains { $0.uid == pk && $0.isPublicKey && $0.value == spki },
            "\(who)")
        #expect(
            ContractTests.status { () throws(TokenError) in
                _ = try svc.createObject(
                    adminPassword: password, objectClass: "PUBLIC_KEY", label: "x", id: [], value: [1, 2, 3], application: "")
            } == 400, "\(who): not an SPKI")
        try svc.deleteObject(adminPassword: password, uid: pk)
        #expect(try !svc.list(adminPassword: password, owner: nil).objects.contains { $0.uid == uid }, "\(who)")
        // ML-DSA (issue 22): both parameter sets, listed with their RFC 9881 public key; pure
        // signatures with a context, checked by the service and here by the listed public key's size.
        for set in MLDSAParameterSet.allCases {
            let name = "pq-\(set.pkcs11ParameterSet)"
            try svc.generateKey(adminPassword: password, name: name, .mldsa(set), id: nil, label: nil, attributes: nil)
            let listed = try #require(try svc.list(adminPassword: password, owner: nil).keys.first { $0.name == name }, "\(who)")
            #expect(listed.kind == .mldsa && MLDSAParameterSet.parse(spki: listed.publicKey)?.0 == set, "\(who): \(set.rawValue)")
            let message = Array("contract".utf8)
            let sig = try svc.sign(key: name, .mldsa(context: [7]), message)
            #expect(sig.count == set.signatureSize, "\(who)")
            #expect(try svc.verifyMLDSA(key: name, message: message, context: [7], signature: sig), "\(who)")
            #expect(try !svc.verifyMLDSA(key: name, message: message, context: [], signature: sig), "\(who): the context counts")
            #expect(try !svc.verifyMLDSA(key: name, message: message + [0], context: [7], signature: sig), "\(who)")
            #expect(
                ContractTests.status { () throws(TokenError) in
                    _ = try svc.sign(key: name, .ecdsa(.sha256), [UInt8](repeating: 1, count: 32))
                }
                    == 400, "\(who): an ML-DSA key makes no ECDSA signature")
            try svc.deleteKey(adminPassword: password, name: name, type: .asymmetric)
        }
        // ML-KEM: encapsulation's key and decapsulation's key hold the same secret (the same AES
        // encryption), for both parameter sets; a short ciphertext is refused.
        for set in MLKEMParameterSet.allCases {
            let name = "kem-\(set.pkcs11ParameterSet)"
            try svc.generateKey(adminPassword: password, name: name, .mlkem(set), id: nil, label: nil, attributes: nil)
            let base = try #require(try svc.list(adminPassword: password, owner: nil).keys.first { $0.name == name }, "\(who)")
            #expect(base.kind == .mlkem && MLKEMParameterSet.parse(spki: base.publicKey)?.0 == set, "\(who)")
            func new(_ n: String) -> NewKeySpec {
                NewKeySpec(name: "~\(owner)/\(n)", type: .symmetric, cipher: "AES", length: 16, id: nil, label: n, attributes: nil)
            }
            let ct = try svc.deriveKey(adminPassword: "", base: base, mechanism: .mlkemEncapsulate, new: new("enc\(name)"))
            #expect(ct.count == set.ciphertextSize, "\(who)")
            try svc.deriveKey(adminPassword: "", base: base, mechanism: .mlkemDecapsulate(ciphertext: ct), new: new("dec\(name)"))
            let keys = try svc.list(adminPassword: password, owner: owner).keys
            let enc = try #require(keys.first { $0.name == "~\(owner)/enc\(name)" }, "\(who)")
            let dec = try #require(keys.first { $0.name == "~\(owner)/dec\(name)" }, "\(who)")
            let block = [UInt8](repeating: 9, count: 16)
            #expect(
                try svc.symmetric(encrypt: true, key: enc.name, SymmetricScheme("AES", .ecb), block)
                    == svc.symmetric(encrypt: true, key: dec.name, SymmetricScheme("AES", .ecb), block),
                "\(who): one shared secret")
            #expect(
                ContractTests.status { () throws(TokenError) in
                    try svc.deriveKey(adminPassword: "", base: base, mechanism: .mlkemDecapsulate(ciphertext: [1]), new: new("x"))
                } == 400, "\(who): a short ciphertext")
            try svc.deleteKey(adminPassword: password, name: name, type: .asymmetric)
        }
    }

    @Test func fakeKeepsTheContract() throws {
        try ContractTests.contract(FakeKeyService(password: "fake-pw"), password: "fake-pw", who: "fake")
    }

    /// A cold start's listing is one round trip: the extended listing carries the feature list; a
    /// service with the original API only answers it with 404 and is listed the original way.
    @Test func firstListingIsOneRoundTrip() throws {
        let n = try TestNode()
        defer { n.stop() }
        let s = try ContractTests.real(n)
        _ = try s.list(adminPassword: nil, owner: nil)
        #expect(s.requestCount == 1)
        #expect(try s.features()?.isEmpty == false)
        #expect(s.requestCount == 1, "the features came with the listing")
        let compat = try TestNode(compatOnly: true)
        defer { compat.stop() }
        let o = try ContractTests.real(compat)
        _ = try o.list(adminPassword: TestNode.password, owner: nil)
        #expect(try o.features() == nil)
        #expect(o.requestCount == 2, "404, then the original listkeys")
    }

    @Test func realNodeKeepsTheContract() throws {
        let n = try TestNode()
        defer { n.stop() }
        try ContractTests.contract(try ContractTests.real(n), password: TestNode.password, who: "real node")
    }
}

/// Issue 22 (5): against the original API a node lists keys only with the admin password. libp11
/// lists before C_Login, gets nothing, logs in and lists again: the second listing must show what
/// the login made visible (it answered from the empty first one until `refreshSeconds` passed).
@Suite struct LoginListingTests {
    @Test func aLoginShowsWhatTheOriginalListsOnlyWithThePassword() throws {
        let compat = try TestNode(compatOnly: true)
        defer { compat.stop() }
        let svc = try ContractTests.real(compat)
        try svc.generateKey(adminPassword: TestNode.password, name: "gec", .ec(bits: 256), id: nil, label: nil, attributes: nil)
        let lib = Library()
        let token = Token(
            slotID: 0, configuration: SlotConfiguration(label: "go", serial: "1", userPinIsAdminPassword: true, refreshSeconds: 3600),
            factory: { _ in svc })
        try lib.initialize(tokens: [token])
        let h = try lib.openSession(slot: 0, readWrite: false)
        func privateKeys() throws -> Int {
            try lib.findInit(h, template: Template([(.class, AttributeValue.ulong(ObjectClass.privateKey.rawValue))]))
            defer { try? lib.findFinal(h) }
            return try lib.find(h, max: 10).count
        }
        #expect(try privateKeys() == 0, "the original lists nothing without the admin password")
        try lib.login(h, user: .user, pin: TestNode.password)
        #expect(try privateKeys() == 1, "after C_Login the key the password lists is there")
        try lib.logout(h)
        try lib.finalize()
    }
}
