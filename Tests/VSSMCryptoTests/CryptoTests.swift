import Glibc
import Testing
@testable import VSSMCrypto
import VSSMWire

func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = s.filter { !$0.isWhitespace }.makeIterator()
    while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16) ?? 0) }
    return out
}

@Suite struct CryptoTests {
    /// The hash rows: FIPS 180-4 / FIPS 202 answers for "abc" (first 8 bytes), and the DigestInfo
    /// prefixes made from the rows' OIDs equal RFC 8017's listed bytes (SHA-2) and the NIST OIDs
    /// 2.16.840.1.101.3.4.2.7-10 (SHA-3).
    @Test func hashRowsKnownAnswersAndDigestInfo() {
        let abc = Array("abc".utf8)
        let starts: [DigestAlgorithm: String] = [
            .sha1: "a9993e364706816a", .sha224: "23097d223405d822", .sha256: "ba7816bf8f01cfea", .sha384: "cb00753f45a35e8b",
            .sha512: "ddaf35a193617aba", .sha3_224: "e642824c3f8cf24a", .sha3_256: "3a985da74fe225b2", .sha3_384: "ec01498288516fc9",
            .sha3_512: "b751850b1a57168a",
        ]
        for h in DigestAlgorithm.allCases {
            let d = h.hash(abc)
            #expect(d.count == h.size && Hex.encode(Array(d.prefix(8))) == starts[h], "\(h)")
            #expect(DigestAlgorithm.parseDigestInfo(h.digestInfoPrefix + d).map { $0.0 == h && $0.1 == d } == true, "\(h)")
        }
        #expect(Hex.encode(DigestAlgorithm.sha1.digestInfoPrefix) == "3021300906052b0e03021a05000414")
        #expect(Hex.encode(DigestAlgorithm.sha256.digestInfoPrefix) == "3031300d060960864801650304020105000420")
        #expect(Hex.encode(DigestAlgorithm.sha224.digestInfoPrefix) == "302d300d06096086480165030402040500041c")
        #expect(Hex.encode(DigestAlgorithm.sha512.digestInfoPrefix) == "3051300d060960864801650304020305000440")
        #expect(Hex.encode(DigestAlgorithm.sha3_256.digestInfoPrefix) == "3031300d060960864801650304020805000420")
        #expect(Hex.encode(DigestAlgorithm.sha3_512.digestInfoPrefix) == "3051300d060960864801650304020a05000440")
        #expect(DigestAlgorithm.allCases.filter(\.inOriginalAPI) == [.sha1, .sha256, .sha384, .sha512], "the original API's four")
        let hm = DigestAlgorithm.sha3_256.hmac(key: [UInt8](repeating: 0x0b, count: 20), data: Array("Hi There".utf8))
        #expect(Hex.encode(Array(hm.prefix(8))) == "ba85192310dffa96", "HMAC-SHA3-256 (as Python's hmac computes it)")
    }

    @Test func hmacRFC4231Case2() {
        let mac = DigestAlgorithm.sha256.hmac(key: Array("Jefe".utf8), data: Array("what do ya want for nothing?".utf8))
        #expect(mac == hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"))
    }

    /// A prepared HMAC key gives the same MACs, again and again (each MAC on a copy of the context).
    @Test func preparedHMACKeyMatchesRFC4231() throws {
        let key = try HMACKey(.sha256, key: Array("Jefe".utf8))
        for _ in 0..<3 {
            #expect(
                key.mac(Array("what do ya want for nothing?".utf8))
                    == hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"))
        }
        let sha512 = try HMACKey(.sha512, key: Array("Jefe".utf8))
        #expect(
            sha512.mac(Array("what do ya want for nothing?".utf8))
                == DigestAlgorithm.sha512.hmac(key: Array("Jefe".utf8), data: Array("what do ya want for nothing?".utf8)))
    }

    @Test func scryptRFC7914Vector() throws {
        let out = try KDF.scrypt(password: Array("password".utf8), salt: Array("NaCl".utf8), n: 1024, r: 8, p: 16, length: 64)
        #expect(
            out
                == hex(
                    "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
                ))
    }

    @Test func aesGCMNISTVector() throws {
        // GCM spec test case 3 (AES-128, 96-bit IV, no AAD).
        let key = hex("feffe9928665731c6d6a8f9467308308")
        let iv = hex("cafebabefacedbaddecaf888")
        let pt = hex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255"
        )
        let c = try BlockCipher(kind: .aes, key: key)
        let (ct, tag) = try c.gcmSeal(nonce: iv, aad: [], pt)
        #expect(
            ct
                == hex(
                    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985"
                ))
        #expect(tag == hex("4d5c2af327cd64a62cf35abd2ba6fab4"))
        #expect(try c.gcmOpen(nonce: iv, aad: [], ct, tag: tag) == pt)
        var bad = tag
        bad[0] ^= 1
        #expect(throws: CryptoError("cipher: message authentication failed")) { try c.gcmOpen(nonce: iv, aad: [], ct, tag: bad) }
    }

    @Test func ctrMatchesNISTSP80038A() throws {
        // F.5.1 CTR-AES128.Encrypt, first two blocks.
        let c = try BlockCipher(kind: .aes, key: hex("2b7e151628aed2a6abf7158809cf4f3c"))
        let out = try c.ctr(
            iv: hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"), hex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"))
        #expect(out == hex("874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff"))
    }

    @Test func ctrCounterCarriesAcrossTheWholeBlock() throws {
        let c = try BlockCipher(kind: .aes, key: [UInt8](repeating: 7, count: 16))
        let iv = [UInt8](repeating: 0xFF, count: 16)
        let two = try c.ctr(iv: iv, [UInt8](repeating: 0, count: 32))
        // second keystream block = E(0x00..00) after the all-ones counter wraps
        #expect(Array(two.suffix(16)) == (try c.ecbEncrypt([UInt8](repeating: 0, count: 16))))
    }

    @Test func singleAndTripleDES() throws {
        CryptoProviders.enableLegacyCiphers()
        // FIPS 81 / classic DES vector: key 133457799BBCDFF1, pt 0123456789ABCDEF.
        let des = try BlockCipher(kind: .des, key: hex("133457799BBCDFF1"))
        #expect(try des.ecbEncrypt(hex("0123456789ABCDEF")) == hex("85E813540F0AB405"))
        let tdes = try BlockCipher(
            kind: .tripleDES, key: [UInt8](repeating: 1, count: 8) + [UInt8](repeating: 2, count: 8) + [UInt8](repeating: 3, count: 8))
        let ct = try tdes.cbcEncrypt(iv: [UInt8](repeating: 0, count: 8), [UInt8](repeating: 9, count: 16))
        #expect(try tdes.cbcDecrypt(iv: [UInt8](repeating: 0, count: 8), ct) == [UInt8](repeating: 9, count: 16))
        #expect(throws: CryptoError("crypto/des: invalid key size 16")) {
            try BlockCipher(kind: .tripleDES, key: [UInt8](repeating: 0, count: 16))
        }
    }

    @Test func pkcs7() throws {
        #expect(PKCS7.pad([], blockSize: 16) == [UInt8](repeating: 16, count: 16))
        #expect(try PKCS7.unpad(PKCS7.pad([1, 2, 3], blockSize: 8), blockSize: 8) == [1, 2, 3])
        #expect(throws: CryptoError("invalid padding on input")) { try PKCS7.unpad([UInt8](repeating: 0, count: 16), blockSize: 16) }
        #expect(throws: CryptoError("invalid PKCS7 data (empty or not padded)")) { try PKCS7.unpad([], blockSize: 16) }
    }

    @Test func rsaSchemesRoundTrip() throws {
        let key = try PrivateKey.generateRSA(bits: 2048)
        let pub = try #require(key.publicKey)
        let digest = DigestAlgorithm.sha256.hash(Array("msg".utf8))
        for scheme in [SignatureScheme.pkcs1(.sha256), .pss(.sha256, mgf1: .sha256, saltLength: 32)] {
            let sig = try key.sign(digest: digest, scheme: scheme)
            #expect(sig.count == 256)
            #expect(pub.verify(signature: sig, digest: digest, scheme: scheme))
            #expect(!pub.verify(signature: sig, digest: DigestAlgorithm.sha256.hash([1]), scheme: scheme))
        }
        #expect(throws: CryptoError("crypto/rsa: input must be hashed message")) {
            try key.sign(digest: [1, 2, 3], scheme: .pkcs1(.sha256))
        }
        for padding in [EncryptionPadding.pkcs1, .oaep(.sha256, mgf1: .sha1, label: Array("L".utf8))] {
            let ct = try pub.encrypt(Array("secret".utf8), padding: padding)
            #expect(try key.decrypt(ct, padding: padding) == Array("secret".utf8))
        }
        #expect(throws: CryptoError("crypto/rsa: decryption error")) {
            try key.decrypt([UInt8](repeating: 1, count: 256), padding: .oaep(.sha256, mgf1: .sha256, label: []))
        }
        #expect(key.rsaComponents?.exponent == [1, 0, 1])
    }

    @Test func ecdsaAndEncodings() throws {
        for curve in NamedCurve.allCases {
            let key = try PrivateKey.generateEC(curve)
            #expect(key.curve == curve)
            let digest = DigestAlgorithm.sha384.hash([42])
            let der = try key.sign(digest: digest, scheme: .ecdsa)
            let size = (curve.bits + 7) / 8
            let raw = try #require(ECDSASignature.derToRaw(der, fieldSize: size))
            #expect(raw.count == 2 * size)
            let back = try #require(ECDSASignature.rawToDER(raw))
            #expect(key.publicKey?.verify(signature: back, digest: digest, scheme: .ecdsa) == true)
            #expect(key.ecPoint?.first == 4)
            #expect(try PrivateKey(pkcs8: key.pkcs8DER).spkiDER == key.spkiDER)
        }
    }

    @Test func badKeysAreErrorsNotCrashes() {
        #expect(throws: CryptoError.self) { try PrivateKey(pkcs8: []) }
        #expect(throws: CryptoError.self) { try PrivateKey(pkcs8: [0x30, 0x03, 0x02, 0x01, 0x00]) }
        #expect(throws: CryptoError.self) { try PublicKey(spki: [0xFF]) }
        #expect(ECDSASignature.derToRaw([0x30], fieldSize: 32) == nil)
    }

    /// RFC 4493 §4 test vectors (AES-128 CMAC): empty, one block, 40 bytes, four blocks.
    @Test func cmacRFC4493Vectors() throws {
        let c = try BlockCipher(kind: .aes, key: hex("2b7e151628aed2a6abf7158809cf4f3c"))
        let m = hex(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
        )
        #expect(try c.cmac([]) == hex("bb1d6929e95937287fa37d129b756746"))
        #expect(try c.cmac(Array(m.prefix(16))) == hex("070a16b46b4d4144f79bdd9dd04a287c"))
        #expect(try c.cmac(Array(m.prefix(40))) == hex("dfa66747de9ae63030ca32611497c827"))
        #expect(try c.cmac(m) == hex("51f0bebf7e3b9d92fc49741779363cfe"))
    }

    /// RFC 3394 §4.1: 128-bit key data wrapped with a 128-bit KEK; unwrap refuses a changed byte.
    @Test func aesKeyWrapRFC3394Vector() throws {
        let kek = hex("000102030405060708090A0B0C0D0E0F")
        let data = hex("00112233445566778899AABBCCDDEEFF")
        let wrapped = try AESKeyWrap.wrap(key: kek, data, padded: false)
        #expect(wrapped == hex("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"))
        #expect(try AESKeyWrap.unwrap(key: kek, wrapped, padded: false) == data)
        var bad = wrapped
        bad[0] ^= 1
        #expect(throws: CryptoError.self) { try AESKeyWrap.unwrap(key: kek, bad, padded: false) }
    }
}

@Suite struct DSATests {
    /// DSA domain parameters generated here; a key on them signs, and the signature verifies.
    @Test func dsaKeysOnGivenParameters() throws {
        let d = try PrivateKey.generateDSAParameters(bits: 1024)
        #expect(d.p.count == 128 && d.q.count == 20)
        let k = try PrivateKey.generateDSA(p: d.p, q: d.q, g: d.g)
        let digest = DigestAlgorithm.sha1.hash(Array("dsa".utf8))
        let sig = try k.sign(digest: digest, scheme: .dsa)
        #expect(try #require(k.publicKey).verify(signature: sig, digest: digest, scheme: .dsa))
        #expect(k.dsaComponents?.p == d.p)
    }

}

@Suite struct SigningContextTests {
    /// Signing contexts are pooled per key and scheme: many signatures from many threads, mixed
    /// schemes and a failure in between all verify (a failed context is never reused), and two
    /// ECDSA signatures of the same digest differ (a fresh nonce each time).
    @Test func pooledSigningContextsStayCorrect() throws {
        let rsa = try PrivateKey.generateRSA(bits: 2048)
        let pub = try #require(rsa.publicKey)
        let digest = DigestAlgorithm.sha256.hash(Array("pooled".utf8))
        let schemes: [SignatureScheme] = [.pkcs1(.sha256), .pss(.sha256, mgf1: .sha256, saltLength: 32)]
        #expect(throws: CryptoError.self) { try rsa.sign(digest: [1, 2, 3], scheme: .pkcs1(.sha256)) }
        DispatchQueueless.concurrentPerform(iterations: 8) { i in
            for j in 0..<10 {
                let scheme = schemes[(i + j) % 2]
                let sig = try? rsa.sign(digest: digest, scheme: scheme)
                #expect(sig.map { pub.verify(signature: $0, digest: digest, scheme: scheme) } == true)
            }
        }
        let ec = try PrivateKey.generateEC(.p256)
        let a = try ec.sign(digest: digest, scheme: .ecdsa), b = try ec.sign(digest: digest, scheme: .ecdsa)
        #expect(a != b)
        #expect(try #require(ec.publicKey).verify(signature: a, digest: digest, scheme: .ecdsa))
        #expect(try #require(ec.publicKey).verify(signature: b, digest: digest, scheme: .ecdsa))
    }
}

/// Threads without Foundation: `iterations` pthreads running `body` at once.
enum DispatchQueueless {
    static func concurrentPerform(iterations: Int, _ body: @escaping @Sendable (Int) -> Void) {
        final class Box: @unchecked Sendable {
            let body: @Sendable (Int) -> Void
            let index: Int
            init(_ body: @escaping @Sendable (Int) -> Void, _ index: Int) { self.body = body; self.index = index }
        }
        var threads: [pthread_t] = []
        for i in 0..<iterations {
            var t = pthread_t()
            let box = Unmanaged.passRetained(Box(body, i)).toOpaque()
            pthread_create(
                &t, nil,
                { arg in
                    let b = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
                    b.body(b.index)
                    return nil
                }, box)
            threads.append(t)
        }
        for t in threads { pthread_join(t, nil) }
    }
}

@Suite struct ShamirTests {
    /// Every 3 of 5 shares give the secret back; 2 do not; the order of the shares does not matter.
    @Test func anyThresholdOfSharesRecoversTheSecret() throws {
        let secret = SecureRandom.bytes(1200)  // about an RSA-2048 PKCS#8
        let shares = try Shamir.split(secret, threshold: 3, count: 5)
        #expect(shares.map(\.x) == [1, 2, 3, 4, 5])
        #expect(shares.allSatisfy { $0.y != secret })
        for a in 0..<5 {
            for b in (a + 1)..<5 {
                for c in (b + 1)..<5 {
                    #expect(try Shamir.combine([shares[c], shares[a], shares[b]]) == secret)
                }
            }
        }
        #expect(try Shamir.combine(shares) == secret, "more than the threshold also works")
        #expect(try Shamir.combine([shares[0], shares[1]]) != secret, "below the threshold: another value")
        var damaged = shares[2]
        damaged.y[0] ^= 1
        #expect(try Shamir.combine([shares[0], shares[1], damaged]) != secret)
    }

    @Test func badParametersAreErrors() {
        #expect(throws: CryptoError.self) { try Shamir.split([1, 2, 3], threshold: 1, count: 3) }
        #expect(throws: CryptoError.self) { try Shamir.split([1, 2, 3], threshold: 4, count: 3) }
        #expect(throws: CryptoError.self) { try Shamir.split([1, 2, 3], threshold: 2, count: 256) }
        #expect(throws: CryptoError.self) { try Shamir.split([], threshold: 2, count: 3) }
        #expect(throws: CryptoError.self) { try Shamir.combine([(1, [1]), (1, [2])]) }
        #expect(throws: CryptoError.self) { try Shamir.combine([(1, [1]), (2, [2, 3])]) }
    }
}
