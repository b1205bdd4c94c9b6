import FakeKeyService
import Testing
import VSSMCrypto
import VSSMWire

@testable import TokenCore

/// Issue 22 (6): a key pair's halves are objects of their own. Destroying the private key leaves
/// the public key object, under the same handle, still verifying (a session pair: in this
/// process; a token pair: kept in the service as a public key object every process sees);
/// destroying that public object afterwards works.
@Suite struct KeyPairHalvesTests {
    static let B = AttributeValue.bool
    static let U = AttributeValue.ulong

    /// A library over a fresh fake, a read-write session, the user logged in.
    static func loggedIn() throws -> (FakeKeyService, Library, UInt) {
        let svc = FakeKeyService(password: "pw")
        let lib = try TokenCoreTests.library(svc)
        let h = try lib.openSession(slot: 0, readWrite: true)
        try lib.login(h, user: .user, pin: "pw")
        return (svc, lib, h)
    }

    func bytes(_ o: SizedOutput) -> [UInt8] { if case .bytes(let b) = o { return b } else { return [] } }

    func signAndCheck(_ lib: Library, _ h: UInt, _ pair: (public: ObjectHandle, private: ObjectHandle)) throws -> [UInt8] {
        try lib.signInit(h, mechanism: Mechanism(.ecdsaSHA256), key: pair.private)
        return bytes(try lib.sign(h, data: Array("retired".utf8), capacity: 128))
    }

    func verifies(_ lib: Library, _ h: UInt, _ key: ObjectHandle, _ sig: [UInt8]) -> Bool {
        do {
            try lib.verifyInit(h, mechanism: Mechanism(.ecdsaSHA256), key: key)
            try lib.verify(h, data: Array("retired".utf8), signature: sig)
            return true
        } catch { return false }
    }

    @Test func aSessionPairsPublicHalfOutlivesItsPrivateKey() throws {
        let svc = FakeKeyService(password: "pw")
        let lib = try TokenCoreTests.library(svc)
        let h = try lib.openSession(slot: 0, readWrite: true)
        let pair = try lib.generateKeyPair(
            h, mechanism: Mechanism(.ecKeyPairGen), publicTemplate: Template([(.ecParams, NamedCurve.p256.oidDER)]),
            privateTemplate: Template([(.label, Array("half".utf8))]))
        let sig = try signAndCheck(lib, h, pair)
        try lib.destroyObject(h, object: pair.private)
        #expect(throws: TokenError.self) { _ = try lib.attributes(h, object: pair.private, types: [.class]) }
        #expect(
            try lib.attributes(h, object: pair.public, types: [.class]) == [.value(KeyPairHalvesTests.U(ObjectClass.publicKey.rawValue))])
        #expect(verifies(lib, h, pair.public, sig), "the public half still verifies what the key signed")
        try lib.destroyObject(h, object: pair.public)
        #expect(throws: TokenError.self) { _ = try lib.attributes(h, object: pair.public, types: [.class]) }
    }

    @Test func aTokenPairsPublicHalfStaysInTheService() throws {
        let (svc, lib, h) = try KeyPairHalvesTests.loggedIn()
        let pair = try lib.generateKeyPair(
            h, mechanism: Mechanism(.ecKeyPairGen),
            publicTemplate: Template([(.ecParams, NamedCurve.p256.oidDER), (.token, KeyPairHalvesTests.B(true))]),
            privateTemplate: Template([(.token, KeyPairHalvesTests.B(true)), (.label, Array("ca-2019".utf8)), (.id, [0x19])]))
        let sig = try signAndCheck(lib, h, pair)
        try lib.destroyObject(h, object: pair.private)
        #expect(verifies(lib, h, pair.public, sig), "same handle, still verifying")
        let stored = try svc.list(adminPassword: "pw", owner: nil)
        #expect(stored.keys.isEmpty && stored.objects.count == 1 && stored.objects.first?.isPublicKey == true)
        // Another process (a new library over the same service) finds it as a public key object.
        let other = try TokenCoreTests.library(svc)
        let h2 = try other.openSession(slot: 0, readWrite: true)
        try other.findInit(h2, template: Template([(.class, KeyPairHalvesTests.U(ObjectClass.publicKey.rawValue)), (.id, [0x19])]))
        let found = try other.find(h2, max: 10)
        try other.findFinal(h2)
        #expect(found.count == 1)
        let point = try other.attributes(h2, object: found[0], types: [.ecPoint, .token, .label])
        #expect(point.count == 3 && point[1] == .value(KeyPairHalvesTests.B(true)) && point[2] == .value(Array("ca-2019".utf8)))
        #expect(verifies(other, h2, found[0], sig))
        // Destroying it deletes the stored object.
        try other.login(h2, user: .user, pin: "pw")
        try other.destroyObject(h2, object: found[0])
        #expect(try svc.list(adminPassword: "pw", owner: nil).objects.isEmpty)
    }

    /// C_CreateObject of a token public key stores it in the service; C_CopyObject of it to a
    /// session object keeps the copy in this process; both verify.
    @Test func tokenPublicKeysAreStoredAndCopied() throws {
        let (svc, lib, h) = try KeyPairHalvesTests.loggedIn()
        let outside = try PrivateKey.generateEC(.p256)
        let point = try #require(DER.subjectPublicKeyBits(spki: outside.spkiDER))
        let created = try lib.createObject(
            h,
            template: Template([
                (.class, KeyPairHalvesTests.U(ObjectClass.publicKey.rawValue)), (.keyType, KeyPairHalvesTests.U(KeyKind.ec.rawValue)),
                (.token, KeyPairHalvesTests.B(true)), (.ecParams, NamedCurve.p256.oidDER), (.ecPoint, DER.octetString(point)),
                (.label, Array("imported-pub".utf8)),
            ]))
        #expect(try svc.list(adminPassword: "pw", owner: nil).objects.first?.value == outside.spkiDER)
        let digest = HashAlgorithm.sha256.hash(Array("retired".utf8))
        let der = try outside.sign(digest: digest, scheme: .ecdsa)
        let raw = try #require(ECDSASignature.derToRaw(der, fieldSize: 32))
        #expect(verifies(lib, h, created, raw))
        let copy = try lib.copyObject(h, object: created, template: Template([(.token, KeyPairHalvesTests.B(false))]))
        #expect(copy != created && verifies(lib, h, copy, raw))
        #expect(try svc.list(adminPassword: "pw", owner: nil).objects.count == 1, "the session copy stays in this process")
    }

    /// keytool's pattern (SunPKCS11): a session pair is generated, its private key copied to the
    /// token (C_CopyObject makes one object), then that token key is destroyed: nothing with its
    /// CKA_ID is left (the public half this module shows for a copied key is not an object the
    /// application made, so it is not kept).
    @Test func aCopiedPrivateKeyLeavesNothingBehind() throws {
        let (svc, lib, h) = try KeyPairHalvesTests.loggedIn()
        let pair = try lib.generateKeyPair(
            h, mechanism: Mechanism(.ecKeyPairGen), publicTemplate: Template([(.ecParams, NamedCurve.p256.oidDER)]),
            privateTemplate: Template())
        let stored = try lib.copyObject(
            h, object: pair.private, template: Template([(.token, KeyPairHalvesTests.B(true)), (.id, Array("kt".utf8))]))
        try lib.destroyObject(h, object: stored)
        try lib.findInit(h, template: Template([(.id, Array("kt".utf8))]))
        let left = try lib.find(h, max: 10)
        try lib.findFinal(h)
        #expect(left.isEmpty, "\(left.count) object(s) with the copied key's CKA_ID are left")
        #expect(try svc.list(adminPassword: "pw", owner: nil).objects.isEmpty)
    }
}
