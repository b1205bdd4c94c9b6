import Testing
import VSSMWire
@testable import TokenCore
import VSSMCrypto
import FakeKeyService

/// TokenCore without a network: a Library over FakeKeyService (kept honest by ContractTests).
@Suite struct TokenCoreTests {
    static func library(_ svc: FakeKeyService, userPinIsAdmin: Bool = true) throws -> Library {
        let lib = Library()
        let token = Token(
            slotID: 0, configuration: SlotConfiguration(label: "fake", serial: "1", userPinIsAdminPassword: userPinIsAdmin),
            factory: { _ in svc })
        try lib.initialize(tokens: [token])
        return lib
    }

    /// A key pair asked CKA_PRIVATE=TRUE exists only while the user is logged in; the public half
    /// and keys without CKA_PRIVATE stay visible; C_CopyObject to the token needs the login.
    @Test func privateObjectsNeedTheLogin() throws {
        let svc = FakeKeyService(password: "pw")
        let lib = try TokenCoreTests.library(svc)
        let h = try lib.openSession(slot: 0, readWrite: true)
        let B = AttributeValue.bool
        let params = NamedCurve.p256.oidDER
        let pair = try lib.generateKeyPair(
            h, mechanism: Mechanism(.ecKeyPairGen), publicTemplate: Template([(.ecParams, params)]),
            privateTemplate: Template([(.private, B(true)), (.label, Array("p".utf8))]))
        func privateKeys() throws -> Int {
            try lib.findInit(h, template: Template([(.class, AttributeValue.ulong(ObjectClass.privateKey.rawValue))]))
            defer { try? lib.findFinal(h) }
            return try lib.find(h, max: 10).count
        }
        #expect(try privateKeys() == 0, "made as a session key, private, before any login")
        #expect(throws: TokenError.objectHandleInvalid) { _ = try lib.attributes(h, object: pair.private, types: [.label]) }
        #expect(try lib.attributes(h, object: pair.public, types: [.private]) == [.value(B(false))])
        #expect(throws: TokenError.userNotLoggedIn) {
            _ = try lib.copyObject(h, object: pair.public, template: Template([(.token, B(true))]))
        }
        try lib.login(h, user: .user, pin: "pw")
        #expect(try privateKeys() == 1)
        #expect(try lib.attributes(h, object: pair.private, types: [.private, .local]) == [.value(B(true)), .value(B(true))])
        let copy = try lib.copyObject(h, object: pair.private, template: Template([(.token, B(true)), (.label, Array("stored".utf8))]))
        #expect(try lib.attributes(h, object: copy, types: [.token, .label]) == [.value(B(true)), .value(Array("stored".utf8))])
        #expect(try svc.list(adminPassword: "pw", owner: nil).keys.contains { $0.name == "stored" && !$0.ephemeral })
        try lib.logout(h)
        #expect(try privateKeys() == 0)
    }

    /// The registry: what the original API cannot do is not offered; every CKA_ALLOWED_MECHANISMS
    /// entry is an offered mechanism with all features; digests are local (no CKF_HW).
    @Test func registryIsConsistent() {
        let base = MechanismTable.offered(features: nil)
        let full = MechanismTable.offered(features: Set(MechanismRegistry.all.compactMap(\.feature)))
        #expect(base[.sha256RSAPKCSPSS] == nil && full[.sha256RSAPKCSPSS] != nil)
        #expect(base[.aesCBC]?.flags == MechanismInfo.decrypt | MechanismInfo.hw)
        #expect(full[.aesCBC]?.flags == MechanismInfo.encrypt | MechanismInfo.decrypt | MechanismInfo.hw)
        #expect(full[.sha256]?.flags == MechanismInfo.digest)
        #expect(Set(MechanismRegistry.all.map(\.type)).count == MechanismRegistry.all.count, "one entry per mechanism")
        for kind in [ServiceKey.Kind.rsa, .ec, .symmetric, .mac] {
            for cls in [ObjectClass.privateKey, .publicKey, .secretKey] {
                for m in MechanismRegistry.allowed(kind, cls) { #expect(full[m] != nil, "\(m) allowed for \(kind) but not offered") }
            }
        }
        #expect(MechanismTable.hash(of: .sha384RSAPKCSPSS) == .sha384 && MechanismTable.isPSS(.sha384RSAPKCSPSS))
        #expect(MechanismTable.hmacHash(of: .sha512HMAC) == .sha512 && MechanismTable.blockMACLength(of: .aesMAC) == 8)
    }

    /// Hash rows (issue 21): each hash makes its digest, HMAC and hash-and-sign entries, offered
    /// as far as the service knows the hash. The original API: its four hashes (SHA-224 and SHA-3
    /// ECDSA and digests still work: the digest is made here); a node without `sha3` offers no
    /// SHA-3 mechanism that names the hash to it; parameter lookups come from the same rows.
    @Test func hashRowsMakeTheMechanisms() {
        let base = MechanismTable.offered(features: nil)
        let noSHA3 = MechanismTable.offered(features: Set(Feature.allCases).subtracting([.sha3]))
        let full = MechanismTable.offered(features: Set(Feature.allCases))
        for h in HashAlgorithm.allCases {
            let m = h.mechanisms
            #expect(full[m.digest]?.flags == MechanismInfo.digest && base[m.digest] != nil, "\(h) digest is local")
            #expect(
                full[m.rsaPKCS] != nil && full[m.rsaPSS] != nil && full[m.hmac] != nil && full[m.ecdsa] != nil && full[m.dsa] != nil, "\(h)"
            )
            #expect((base[m.rsaPKCS] != nil) == h.inOriginalAPI && (base[m.hmac] != nil) == h.inOriginalAPI, "\(h) on the original API")
            #expect(base[m.ecdsa] != nil, "\(h): ECDSA sends the digest")
            #expect((noSHA3[m.rsaPKCS] != nil) == !h.isSHA3 && (noSHA3[m.hmac] != nil) == !h.isSHA3, "\(h) without sha3")
            #expect(MechanismTable.hash(of: m.rsaPSS) == h && MechanismTable.hmacHash(of: m.hmac) == h)
            #expect(HashAlgorithm(mechanism: m.digest) == h && HashAlgorithm(mgf: m.mgf) == h && HashAlgorithm(kdf: m.kdf) == h)
        }
        #expect(HashAlgorithm(kdf: 1) == nil, "CKD_NULL is no hash")
        #expect(DecryptScheme.rsaOAEP(hash: .sha256, mgf1: .sha256, label: []).inOriginalAPI)
        #expect(!DecryptScheme.rsaOAEP(hash: .sha224, mgf1: .sha224, label: []).inOriginalAPI)
        #expect(
            !DecryptScheme.rsaOAEP(hash: .sha3_256, mgf1: .sha3_256, label: []).isOffered(by: Set(Feature.allCases).subtracting([.sha3])))
        #expect(DecryptScheme.rsaOAEP(hash: .sha3_256, mgf1: .sha1, label: [1]).isOffered(by: Set(Feature.allCases)))
    }
}
