import Testing
import VSSMCrypto
import VSSMPostQuantumKeys
import VSSMTestSupport
import VSSMWire

@testable import VSSMServer

/// ML-DSA keys (issue 22, item 1): generated in the service, listed with an RFC 9881 public key,
/// signing pure ML-DSA with a context string and checking signatures on `ext/verify`; kept in
/// the sealed store (PKCS#8 seed form) and out of the original format a Go peer reads.
@Suite struct MLDSATests {
    func output(_ body: String, _ field: String) throws -> [UInt8] {
        guard case .string(let s)? = try JSONParser.parse(body)[field] else { return [] }
        return try Base64.decode(s)
    }

    @Test func generateSignVerifyAndKeep() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        let pw = TestNode.password
        for set in MLDSAParameterSet.allCases {
            let name = "pq-\(set.pkcs11ParameterSet)"
            let gen = try n.post(
                c, Route.extGenerateKey,
                #"{"adminPassword":"\#(pw)","keyName":"\#(name)","keyType":"ASYMMETRIC","keySpec":"\#(set.rawValue)"}"#)
            #expect(gen.0 == 200, "\(gen.1)")
            guard let e = n.node.snapshot.asymmetric[name], case .mldsa(let k) = e.key else {
                Issue.record("no \(set.rawValue) key")
                continue
            }
            #expect(e.keyType == set.rawValue && k.publicKey.count == set.publicKeySize)
            let parsed = MLDSAParameterSet.parse(spki: e.spki)
            #expect(parsed?.0 == set && parsed?.1 == k.publicKey, "the listed SPKI carries the public key")
            #expect(MLDSAParameterSet.parse(pkcs8: e.pkcs8)?.0 == set, "stored as PKCS#8 seed form")
            let msg = b64("post-quantum"), ctx = b64("vssm")
            let (s, body) = try n.post(
                c, Route.extSign, #"{"keyName":"\#(name)","algorithm":"ML-DSA","input":"\#(msg)","context":"\#(ctx)"}"#)
            #expect(s == 200, "\(body)")
            let sig = try output(body, "output")
            #expect(sig.count == set.signatureSize)
            /// `valid` as answered (false is left out of the answer, as the original does with false fields).
            func verify(_ m: String, _ c2: String, _ signature: [UInt8]) throws -> Bool {
                let (status, body) = try n.post(
                    c, Route.extVerify,
                    #"{"keyName":"\#(name)","algorithm":"ML-DSA","input":"\#(m)","context":"\#(c2)","signature":"\#(b64(signature))"}"#)
                #expect(status == 200, "\(body)")
                return try JSONParser.parse(body)["valid"] == .bool(true)
            }
            #expect(try verify(msg, ctx, sig))
            #expect(try !verify(b64("tampered"), ctx, sig))
            #expect(try !verify(msg, b64("other"), sig), "the context is part of what is signed")
            #expect(
                MLDSAKey.verify(
                    set, publicKey: k.publicKey, signature: sig, message: Array("post-quantum".utf8), context: Array("vssm".utf8)))
            // The key reloads from what is stored (seed form) to the same public key.
            let again = try AsymmetricKey(pkcs8: e.pkcs8)
            #expect(again.spkiDER == e.spki)
            // Hash-and-sign algorithms and ML-DSA do not mix.
            #expect(try n.post(c, Route.extSign, #"{"keyName":"\#(name)","algorithm":"SHA256withECDSA","input":"\#(msg)"}"#).0 == 400)
        }
        #expect(
            try n.post(c, Route.extGenerateKey, #"{"adminPassword":"\#(pw)","keyName":"x","keyType":"ASYMMETRIC","keySpec":"ML-DSA-44"}"#).0
                == 400, "ML-DSA-44 is not offered")
        let original = String(decoding: StateCodec.encode(n.node.snapshot, extensions: false), as: UTF8.self)
        let full = String(decoding: StateCodec.encode(n.node.snapshot, extensions: true), as: UTF8.self)
        #expect(!original.contains("pq-2") && full.contains("pq-2") && full.contains("pq-3"), "a Go peer never receives an ML-DSA key")
        let decoded = try? StateCodec.decode(Array(full.utf8), allowExtensions: true)
        #expect(decoded?.state.asymmetric["pq-3"]?.spki == n.node.snapshot.asymmetric["pq-3"]?.spki, "the sealed format keeps it")
    }
}

/// ML-KEM keys (issue 22, item 1): encapsulation and decapsulation on `ext/derive` make secret
/// keys from the shared secret in the service; only the ciphertext leaves it.
@Suite struct MLKEMTests {
    @Test func encapsulateDecapsulateIntoKeys() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        let pw = TestNode.password
        for set in MLKEMParameterSet.allCases {
            let name = "kem-\(set.pkcs11ParameterSet)"
            let gen = try n.post(
                c, Route.extGenerateKey,
                #"{"adminPassword":"\#(pw)","keyName":"\#(name)","keyType":"ASYMMETRIC","keySpec":"\#(set.rawValue)"}"#)
            #expect(gen.0 == 200, "\(gen.1)")
            guard let e = n.node.snapshot.asymmetric[name], case .mlkem(let k) = e.key else {
                Issue.record("no \(set.rawValue) key")
                continue
            }
            #expect(MLKEMParameterSet.parse(spki: e.spki)?.1 == k.publicKey && MLKEMParameterSet.parse(pkcs8: e.pkcs8)?.0 == set)
            let (s1, b1) = try n.post(
                c, Route.extDerive,
                #"{"adminPassword":"\#(pw)","keyName":"\#(name)","keyType":"ASYMMETRIC","mechanism":"ML-KEM-ENCAPSULATE","newName":"enc-\#(name)","newType":"SYMMETRIC","cipher":"AES"}"#
            )
            #expect(s1 == 200, "\(b1)")
            guard case .string(let ct64)? = try JSONParser.parse(b1)["ciphertext"] else {
                Issue.record("no ciphertext")
                continue
            }
            let ciphertext = try Base64.decode(ct64)
            #expect(ciphertext.count == set.ciphertextSize)
            let (s2, b2) = try n.post(
                c, Route.extDerive,
                #"{"adminPassword":"\#(pw)","keyName":"\#(name)","keyType":"ASYMMETRIC","mechanism":"ML-KEM-DECAPSULATE","data":"\#(ct64)","newName":"dec-\#(name)","newType":"SYMMETRIC","cipher":"AES"}"#
            )
            #expect(s2 == 200, "\(b2)")
            let enc = n.node.snapshot.symmetric["enc-\(name)"]?.key
            #expect(
                enc != nil && enc == n.node.snapshot.symmetric["dec-\(name)"]?.key && enc?.count == 32, "both keys hold the shared secret")
            #expect(try k.decapsulate(ciphertext) == enc, "the stored key is the shared secret")
            let bad = try n.post(
                c, Route.extDerive,
                #"{"adminPassword":"\#(pw)","keyName":"\#(name)","keyType":"ASYMMETRIC","mechanism":"ML-KEM-DECAPSULATE","data":"\#(b64([1, 2, 3]))","newName":"x","newType":"SYMMETRIC","cipher":"AES"}"#
            )
            #expect(bad.0 == 400, "a ciphertext of the wrong size")
            #expect(try n.post(c, Route.extSign, #"{"keyName":"\#(name)","algorithm":"ML-DSA","input":"\#(b64("x"))"}"#).0 == 400)
        }
        let original = String(decoding: StateCodec.encode(n.node.snapshot, extensions: false), as: UTF8.self)
        #expect(
            !original.contains(#""name":"kem-2""#) && original.contains(#""name":"enc-kem-2""#), "a Go peer never receives an ML-KEM key")
    }
}
