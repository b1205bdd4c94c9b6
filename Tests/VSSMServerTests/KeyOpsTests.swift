import Testing
import VSSMClient
import VSSMCrypto
import VSSMWire
@testable import VSSMServer
import VSSMTestSupport

/// Derive, wrap, unwrap and key values (PKCS#11 C_DeriveKey/C_WrapKey/C_UnwrapKey, CKA_VALUE of
/// readable keys) as the service enforces them for any client, whatever the module checks.
@Suite struct KeyOpsTests {
    let owner = String(repeating: "cd", count: 16)
    var password: String { TestNode.password }

    static func flags(_ f: [UInt: Bool]) -> String { Base64.encode(KeyFlags(f).blob ?? []) }
    static let readable = flags([
        KeyFlags.sensitive: false, KeyFlags.extractable: true, KeyFlags.derive: true, KeyFlags.wrap: true, KeyFlags.unwrap: true,
    ])

    func inject(
        _ n: TestNode, _ c: VSSMAPIClient, _ name: String, type: String = "SYMMETRIC", _ key: [UInt8], flags: String? = nil
    ) throws -> Int {
        let a = flags.map { #","attributes":"\#($0)""# } ?? ""
        return try n.post(
            c, Route.extInjectKey,
            #"{"adminPassword":"\#(password)","keyName":"\#(name)","keyType":"\#(type)","key":"\#(Base64.encode(key))"\#(a)}"#
        ).0
    }

    func value(_ n: TestNode, _ c: VSSMAPIClient, _ name: String, type: String = "SYMMETRIC") throws -> (Int, [UInt8]) {
        let (s, body) = try n.post(c, Route.extKeyValue, #"{"keyName":"\#(name)","keyType":"\#(type)"}"#)
        return (s, (try? Base64.decode(field(body, "output"))) ?? [])
    }

    func derive(
        _ n: TestNode, _ c: VSSMAPIClient, base: String, baseType: String = "SYMMETRIC", _ mechanism: String, _ extra: String,
        new: String, newType: String = "MAC", length: Int = 0, flags: String = KeyOpsTests.readable
    ) throws -> Int {
        try n.post(
            c, Route.extDerive,
            #"{"keyName":"\#(base)","keyType":"\#(baseType)","mechanism":"\#(mechanism)",\#(extra)"newName":"\#(new)","newType":"\#(newType)","length":\#(length),"attributes":"\#(flags)"}"#
        ).0
    }

    @Test func deriveComputesInTheServiceAndKeepsProtection() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        let k = (0..<16).map { UInt8($0) }
        let base = "~\(owner)/base"
        #expect(try inject(n, c, base, k, flags: KeyOpsTests.readable) == 200)
        #expect(try value(n, c, base) == (200, k), "a readable session key's value is returned")
        // AES-ECB-ENCRYPT-DATA: AES_K(data).
        let data = (0..<32).map { UInt8(0xA0 + $0) }
        #expect(
            try derive(
                n, c, base: base, "AES-ECB-ENCRYPT-DATA", #""data":"\#(Base64.encode(data))","#, new: "~\(owner)/ecb", newType: "SYMMETRIC")
                == 200)
        #expect(try value(n, c, "~\(owner)/ecb").1 == (try BlockCipher(kind: .aes, key: k).ecbEncrypt(data)))
        #expect(
            try derive(n, c, base: base, "AES-ECB-ENCRYPT-DATA", #""data":"\#(Base64.encode([1, 2, 3]))","#, new: "~\(owner)/bad") == 400)
        // The spec's CKM_EXTRACT_KEY_FROM_KEY example: 0x329F84A9, bit 21, 2 bytes -> 0x9526.
        let g = "~\(owner)/g"
        #expect(try inject(n, c, g, type: "MAC", [0x32, 0x9F, 0x84, 0xA9], flags: KeyOpsTests.readable) == 200)
        #expect(
            try derive(n, c, base: g, baseType: "MAC", "EXTRACT-KEY-FROM-KEY", #""bitIndex":21,"#, new: "~\(owner)/x", length: 2) == 200)
        #expect(try value(n, c, "~\(owner)/x", type: "MAC").1 == [0x95, 0x26])
        #expect(
            try derive(
                n, c, base: g, baseType: "MAC", "XOR-BASE-AND-DATA", #""data":"\#(Base64.encode([0xFF, 0, 0xFF, 0]))","#,
                new: "~\(owner)/xor") == 200)
        #expect(try value(n, c, "~\(owner)/xor", type: "MAC").1 == [0xCD, 0x9F, 0x7B, 0xA9])
        // A stored key made through the original API says nothing: not derivable.
        #expect(try inject(n, c, "plain", k) == 200)
        #expect(try derive(n, c, base: "plain", "CONCATENATE-BASE-AND-DATA", #""data":"AA==","#, new: "~\(owner)/c1") == 403)
        // A derivable but sensitive key: what exposes its bits stays sensitive, whatever was asked.
        let s = "~\(owner)/sensitive"
        #expect(try inject(n, c, s, k, flags: KeyOpsTests.flags([KeyFlags.derive: true])) == 200)
        #expect(try derive(n, c, base: s, "CONCATENATE-BASE-AND-DATA", #""data":"AA==","#, new: "~\(owner)/c2") == 200)
        #expect(try value(n, c, "~\(owner)/c2", type: "MAC").0 == 403)
        #expect(try derive(n, c, base: s, "EXTRACT-KEY-FROM-KEY", #""bitIndex":3,"#, new: "~\(owner)/c3", length: 1) == 200)
        #expect(try value(n, c, "~\(owner)/c3", type: "MAC").0 == 403)
        // A stored key is never readable under the default policy (readableKeys 1).
        #expect(try inject(n, c, "stored-readable", k, flags: KeyOpsTests.readable) == 400)
        #expect(try value(n, c, "plain").0 == 403)
        // Sensitivity only goes one way (PKCS#11 §4.9).
        #expect(
            try n.post(c, Route.extSetAttributes, #"{"keyName":"~\#(owner)/c2","keyType":"MAC","attributes":"\#(KeyOpsTests.readable)"}"#).0
                == 400)
    }

    @Test func ecdhMatchesTheOtherSide() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        let mine = try PrivateKey.generateEC(.p256)
        let peer = try PrivateKey.generateEC(.p256)
        let name = "~\(owner)/ec"
        #expect(try inject(n, c, name, type: "ASYMMETRIC", mine.pkcs8DER, flags: KeyOpsTests.flags([KeyFlags.derive: true])) == 200)
        let point = try #require(peer.ecPoint)
        #expect(
            try derive(
                n, c, base: name, baseType: "ASYMMETRIC", "ECDH1", #""kdf":"NULL","publicData":"\#(Base64.encode(point))","#,
                new: "~\(owner)/z") == 200)
        let expected = try peer.ecdhSharedSecret(peerPoint: try #require(mine.ecPoint))
        #expect(try value(n, c, "~\(owner)/z", type: "MAC").1 == expected, "both sides agree")
        #expect(
            try derive(
                n, c, base: name, baseType: "ASYMMETRIC", "ECDH1", #""kdf":"SHA256","publicData":"\#(Base64.encode(point))","#,
                new: "~\(owner)/z2", length: 40) == 200)
        #expect(try value(n, c, "~\(owner)/z2", type: "MAC").1 == KDF.x963(.sha256, secret: expected, sharedInfo: [], length: 40))
        #expect(
            try derive(n, c, base: name, baseType: "ASYMMETRIC", "ECDH1", #""kdf":"NULL","publicData":"BAEC","#, new: "~\(owner)/z3") == 400
        )
    }

    @Test func wrapOnlyExtractableKeysWithWrappingKeys() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        let kekBytes = (0..<32).map { UInt8($0) }
        // A wrapping session key that cannot decrypt or unwrap, and its twin that unwraps.
        let kek = "~\(owner)/kek", unwrapper = "~\(owner)/unwrapper"
        #expect(
            try inject(
                n, c, kek, kekBytes, flags: KeyOpsTests.flags([KeyFlags.wrap: true, KeyFlags.decrypt: false, KeyFlags.unwrap: false]))
                == 200)
        #expect(try inject(n, c, unwrapper, kekBytes, flags: KeyOpsTests.flags([KeyFlags.unwrap: true, KeyFlags.wrap: false])) == 200)
        let secret = (0..<16).map { UInt8(0x40 + $0) }
        let readable = (0..<16).map { UInt8(0x60 + $0) }
        #expect(try inject(n, c, "~\(owner)/target", secret, flags: KeyOpsTests.flags([KeyFlags.extractable: true])) == 200)
        #expect(
            try inject(
                n, c, "~\(owner)/plain", readable, flags: KeyOpsTests.flags([KeyFlags.extractable: true, KeyFlags.sensitive: false])) == 200
        )
        #expect(try inject(n, c, "stored", secret) == 200)
        func wrap(_ target: String, with key: String = kek) throws -> (Int, [UInt8]) {
            let (s, body) = try n.post(
                c, Route.extWrap,
                #"{"keyName":"\#(key)","keyType":"SYMMETRIC","mechanism":"AES-KEY-WRAP","targetName":"\#(target)","targetType":"SYMMETRIC"}"#
            )
            return (s, (try? Base64.decode(field(body, "output"))) ?? [])
        }
        func unwrap(_ wrapped: [UInt8], into name: String) throws -> Int {
            try n.post(
                c, Route.extUnwrap,
                #"{"keyName":"\#(unwrapper)","keyType":"SYMMETRIC","mechanism":"AES-KEY-WRAP","input":"\#(Base64.encode(wrapped))","newName":"\#(name)","newType":"SYMMETRIC","attributes":"\#(KeyOpsTests.readable)"}"#
            ).0
        }
        #expect(try wrap("stored").0 == 403, "a key from the original API is not extractable")
        #expect(try wrap("~\(owner)/target", with: "~\(owner)/target").0 == 403, "a key without CKA_WRAP wraps nothing")
        // Issue 20: a session key that wraps and can also unwrap (or decrypt) is refused.
        #expect(
            try inject(n, c, "~\(owner)/both", kekBytes, flags: KeyOpsTests.flags([KeyFlags.wrap: true, KeyFlags.unwrap: true])) == 200)
        #expect(try wrap("~\(owner)/target", with: "~\(owner)/both").0 == 403)
        let (s, wrapped) = try wrap("~\(owner)/target")
        #expect(s == 200 && wrapped.count == 24)
        #expect(try AESKeyWrap.unwrap(key: kekBytes, wrapped, padded: false) == secret, "RFC 3394 output")
        // Issue 20: a sensitive key wrapped and unwrapped "readable" stays sensitive: its value is not given.
        #expect(try unwrap(wrapped, into: "~\(owner)/back") == 200)
        #expect(try value(n, c, "~\(owner)/back").0 == 403, "what was sensitive stays sensitive")
        // A key that was readable comes back readable, with the same value.
        let (s2, wrappedPlain) = try wrap("~\(owner)/plain")
        #expect(s2 == 200)
        #expect(try unwrap(wrappedPlain, into: "~\(owner)/plain-back") == 200)
        #expect(try value(n, c, "~\(owner)/plain-back").1 == readable)
        var bad = wrapped
        bad[3] ^= 1
        #expect(try unwrap(bad, into: "~\(owner)/bad") == 400)
        // Extractability only goes one way.
        #expect(
            try n.post(
                c, Route.extSetAttributes,
                #"{"adminPassword":"\#(password)","keyName":"stored","keyType":"SYMMETRIC","attributes":"\#(KeyOpsTests.flags([KeyFlags.extractable: true]))"}"#
            ).0 == 400)
    }

    /// Two-key Triple-DES (CKK_DES2) is generated as K1 K2 K1, a 3DES key.
    @Test func twoKeyTripleDES() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        let name = "~\(owner)/des2"
        #expect(
            try n.post(
                c, Route.extGenerateKey,
                #"{"keyName":"\#(name)","keyType":"SYMMETRIC","keySize":16,"cipher":"3DES","attributes":"\#(KeyOpsTests.readable)"}"#
            ).0 == 200)
        let (s, k) = try value(n, c, name)
        #expect(s == 200 && k.count == 24 && Array(k[16...]) == Array(k[..<8]) && Array(k[..<8]) != Array(k[8..<16]))
    }

    @Test func readableKeysPolicyZeroRefusesEveryReadableKey() throws {
        var limits = ServiceLimits()
        limits.readableKeys = 0
        let n = try TestNode(limits: limits)
        defer { n.stop() }
        let c = try n.client()
        #expect(try inject(n, c, "~\(owner)/r", [UInt8](repeating: 1, count: 16), flags: KeyOpsTests.readable) == 400)
    }
}

/// The original format (state sync, version-1 backups) carries only RSA and EC keys, so a Go peer
/// never receives a state it refuses whole; the sealed store and version-2 backups keep all.
@Suite struct ExtensionKeyTypeSyncTests {
    @Test func edwardsAndDSAKeysStayOutOfTheOriginalFormat() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        let pw = TestNode.password
        #expect(
            try n.post(c, Route.extGenerateKey, #"{"adminPassword":"\#(pw)","keyName":"ed","keyType":"ASYMMETRIC","keySpec":"ED25519"}"#).0
                == 200)
        #expect(
            try n.post(
                c, Route.extGenerateKey, #"{"adminPassword":"\#(pw)","keyName":"ec","keyType":"ASYMMETRIC","keySpec":"EC","keySize":256}"#
            ).0 == 200)
        let original = String(decoding: StateCodec.encode(n.node.snapshot, extensions: false), as: UTF8.self)
        let full = String(decoding: StateCodec.encode(n.node.snapshot, extensions: true), as: UTF8.self)
        #expect(original.contains(#""name":"ec""#) && !original.contains(#""name":"ed""#))
        #expect(full.contains(#""name":"ed""#) && full.contains(#""name":"ec""#))
    }
}

/// Usage flags kept with a key at creation (CKA_SIGN, CKA_DECRYPT, CKA_ENCRYPT, CKA_VERIFY) are
/// enforced by the service for every client, not only by the module that made the key.
@Suite struct UsagePolicyTests {
    @Test func usageFlagsAreEnforcedByTheService() throws {
        let pw = TestNode.password
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        func flags(_ f: [UInt: Bool]) -> String { b64(KeyFlags(f).blob ?? []) }
        let noSign = flags([KeyFlags.sign: false, KeyFlags.decrypt: true])
        #expect(
            try n.post(
                c, Route.extGenerateKey,
                #"{"adminPassword":"\#(pw)","keyName":"nosign","keyType":"ASYMMETRIC","keySpec":"RSA","keySize":2048,"attributes":"\#(noSign)"}"#
            ).0 == 200)
        let (s, body) = try n.post(c, Route.asymmetricSign, #"{"keyName":"nosign","algorithm":"SHA256withRSA","input":"\#(b64("x"))"}"#)
        #expect(s == 403)
        #expect(body.contains("Key function not permitted"))
        #expect(try n.post(c, Route.extSign, #"{"keyName":"nosign","algorithm":"SHA256withRSA","input":"\#(b64("x"))"}"#).0 == 403)
        // Its decryption is allowed: the public half encrypts, the private half decrypts.
        let ct = try n.post(c, Route.asymmetricEncrypt, #"{"keyName":"nosign","algorithm":"RSA","input":"\#(b64("secret"))"}"#).1
        let ctB64 = String(ct.split(separator: "\"")[3])
        #expect(try n.post(c, Route.asymmetricDecrypt, #"{"keyName":"nosign","algorithm":"RSA","input":"\#(ctB64)"}"#).0 == 200)

        let encryptOnly = flags([KeyFlags.encrypt: true, KeyFlags.decrypt: false])
        #expect(
            try n.post(
                c, Route.extGenerateKey,
                #"{"adminPassword":"\#(pw)","keyName":"enc","keyType":"SYMMETRIC","keySize":16,"attributes":"\#(encryptOnly)"}"#
            ).0 == 200)
        let (es, ebody) = try n.post(
            c, Route.symmetricEncrypt, #"{"keyName":"enc","algorithm":"AES/GCM/NoPadding","input":"\#(b64("data"))"}"#)
        #expect(es == 200)
        let sealed = String(ebody.split(separator: "\"")[3])
        #expect(try n.post(c, Route.symmetricDecrypt, #"{"keyName":"enc","algorithm":"AES/GCM/NoPadding","input":"\#(sealed)"}"#).0 == 403)
        #expect(
            try n.post(c, Route.extSymmetricDecrypt, #"{"keyName":"enc","algorithm":"AES/GCM/NoPadding","input":"\#(sealed)"}"#).0 == 403)

        // A MAC key that may only verify still computes MACs (the module compares them); one that may do neither does not.
        let verifyOnly = flags([KeyFlags.sign: false, KeyFlags.verify: true])
        let neither = flags([KeyFlags.sign: false, KeyFlags.verify: false])
        for (name, f) in [("v", verifyOnly), ("none", neither)] {
            #expect(
                try n.post(
                    c, Route.extGenerateKey,
                    #"{"adminPassword":"\#(pw)","keyName":"\#(name)","keyType":"MAC","keySize":32,"attributes":"\#(f)"}"#
                ).0 == 200)
        }
        #expect(try n.post(c, Route.hmacCreate, #"{"keyName":"v","algorithm":"SHA256","input":"\#(b64("m"))"}"#).0 == 200)
        #expect(try n.post(c, Route.hmacCreate, #"{"keyName":"none","algorithm":"SHA256","input":"\#(b64("m"))"}"#).0 == 403)
    }
}

/// Every handler fetches a key for a declared use (`KeyUse`), checked against the key's usage
/// flags in one place (issue 21: `hmacVerify` lacked the check `hmacCreate` had, and
/// `asymmetricEncrypt` the one `asymmetricDecrypt` had).
@Suite struct KeyUseTests {
    @Test func everyRouteChecksTheUseItMakesOfTheKey() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        let pw = TestNode.password
        func make(_ name: String, _ type: String, _ spec: String, _ size: Int, _ f: [UInt: Bool]) throws -> Int {
            try n.post(
                c, Route.extGenerateKey,
                #"{"adminPassword":"\#(pw)","keyName":"\#(name)","keyType":"\#(type)","keySpec":"\#(spec)","keySize":\#(size),"attributes":"\#(KeyOpsTests.flags(f))"}"#
            ).0
        }
        #expect(try make("rsa-noenc", "ASYMMETRIC", "RSA", 2048, [KeyFlags.encrypt: false, KeyFlags.verify: false]) == 200)
        #expect(try make("mac-nover", "MAC", "", 32, [KeyFlags.verify: false]) == 200)
        let encrypt = try n.post(c, Route.asymmetricEncrypt, #"{"keyName":"rsa-noenc","algorithm":"RSA","input":"AAAA"}"#)
        #expect(encrypt.0 == 403 && encrypt.1.contains("CKA_ENCRYPT is FALSE"), "\(encrypt)")
        let verify = try n.post(
            c, Route.asymmetricVerify, #"{"keyName":"rsa-noenc","algorithm":"SHA256withRSA","input":"AAAA","signature":"AAAA"}"#)
        #expect(verify.0 == 403 && verify.1.contains("CKA_VERIFY is FALSE"), "\(verify)")
        let hmac = try n.post(c, Route.hmacVerify, #"{"keyName":"mac-nover","algorithm":"SHA256","input":"AAAA","hmac":"AAAA"}"#)
        #expect(hmac.0 == 403 && hmac.1.contains("CKA_VERIFY is FALSE"), "\(hmac)")
        // What the key allows still works.
        #expect(try n.post(c, Route.asymmetricSign, #"{"keyName":"rsa-noenc","algorithm":"SHA256withRSA","input":"AAAA"}"#).0 == 200)
        #expect(try n.post(c, Route.hmacCreate, #"{"keyName":"mac-nover","algorithm":"SHA256","input":"AAAA"}"#).0 == 200)
    }

    /// `RSA-RAW` signs under CKA_SIGN; an ECDSA signature that names its hash takes a digest of
    /// that hash's size only.
    @Test func rawRSASigningAndNamedECDSAHashes() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        let pw = TestNode.password
        #expect(
            try n.post(
                c, Route.extGenerateKey,
                #"{"adminPassword":"\#(pw)","keyName":"r","keyType":"ASYMMETRIC","keySpec":"RSA","keySize":2048,"attributes":"\#(KeyOpsTests.flags([KeyFlags.decrypt: false]))"}"#
            ).0 == 200)
        let block = [UInt8](repeating: 0, count: 200) + [UInt8](repeating: 7, count: 56)
        let (status, body) = try n.post(c, Route.extSign, #"{"keyName":"r","algorithm":"RSA-RAW","hashed":"\#(Base64.encode(block))"}"#)
        #expect(status == 200, "\(body)")
        let sig = try Base64.decode(field(body, "output"))
        let pub = try PublicKey(spki: try #require(n.node.snapshot.asymmetric["r"]?.spki))
        #expect(try pub.encrypt(sig, padding: .none) == block, "s^e mod n is the input")
        #expect(try n.post(c, Route.extDecrypt, #"{"keyName":"r","algorithm":"RSA-RAW","input":"\#(Base64.encode(sig))"}"#).0 == 403)
        try c.generateKey(password: pw, name: "e", type: .asymmetric, spec: .ec, size: 384)
        let d32 = Base64.encode([UInt8](repeating: 1, count: 32)), d48 = Base64.encode([UInt8](repeating: 1, count: 48))
        #expect(try n.post(c, Route.extSign, #"{"keyName":"e","algorithm":"SHA384withECDSA","hashed":"\#(d32)"}"#).0 == 400)
        #expect(try n.post(c, Route.extSign, #"{"keyName":"e","algorithm":"SHA384withECDSA","hashed":"\#(d48)"}"#).0 == 200)
        #expect(try n.post(c, Route.extSign, #"{"keyName":"e","algorithm":"NONEwithECDSA","hashed":"\#(d32)"}"#).0 == 200)
    }
}
