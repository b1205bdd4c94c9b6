import Testing
import VSSMClient
import VSSMCrypto
import VSSMWire
@testable import VSSMServer
import VSSMTestSupport

/// Session keys (PKCS#11 CKA_TOKEN=FALSE): in memory for one owner, usable by every crypto route,
/// never in the persistent state, listed only to their owner, released at once.
@Suite struct SessionKeyTests {
    let owner = String(repeating: "ab", count: 16)

    @Test func sessionKeysLiveOnlyInMemoryForTheirOwner() throws {
        let dir = TestNode.tempDir()
        let n = try TestNode(stateDir: dir)
        defer { n.stop() }
        let c = try n.client()
        let name = "~\(owner)/k1"
        // No admin password needed; RSA-1024 is allowed for a session key only.
        #expect(
            try n.post(
                c, Route.extGenerateKey, #"{"keyName":"\#(name)","keyType":"ASYMMETRIC","keySpec":"EC","keySize":256,"label":"mine"}"#
            ).0 == 200)
        #expect(
            try n.post(c, Route.extGenerateKey, #"{"keyName":"~\#(owner)/rsa","keyType":"ASYMMETRIC","keySpec":"RSA","keySize":1024}"#).0
                == 200)
        #expect(
            try n.post(
                c, Route.extGenerateKey,
                #"{"adminPassword":"\#(TestNode.password)","keyName":"rsa1024","keyType":"ASYMMETRIC","keySpec":"RSA","keySize":1024}"#
            ).0 == 400)
        #expect(
            try n.post(c, Route.extGenerateKey, #"{"keyName":"plain","keyType":"SYMMETRIC","keySize":16}"#).0 == 403,
            "token keys still need the password")
        #expect(try n.post(c, Route.extGenerateKey, #"{"keyName":"~nothex/x","keyType":"SYMMETRIC","keySize":16}"#).0 == 400)
        // Usable by the base sign route like any key.
        let (s, body) = try n.post(c, Route.asymmetricSign, #"{"keyName":"\#(name)","algorithm":"SHA256withECDSA","input":"aGVsbG8="}"#)
        #expect(s == 200 && !field(body, "output").isEmpty)
        // Not in the node's state, the sealed file or the sync view; listed only with the owner.
        #expect(n.node.snapshot.keyCount == 0)
        let plain = try c.call(Route.extListKeys, WireWriter(), response: ExtSchemas.listKeysResponse, idempotent: true)
        #expect(plain.objects("keys").isEmpty)
        var w = WireWriter()
        w.string("owner", owner)
        let mine = try c.call(Route.extListKeys, w, response: ExtSchemas.listKeysResponse, idempotent: true)
        let k = try #require(mine.objects("keys").first { $0.string("name") == name })
        #expect(k.bool("ephemeral") && k.string("label") == "mine")
        #expect(mine.objects("keys").count == 2)
        // Deleted without a password; released all at once.
        #expect(try n.post(c, Route.extDeleteKey, #"{"keyName":"\#(name)","keyType":"ASYMMETRIC"}"#).0 == 200)
        #expect(try n.post(c, Route.asymmetricSign, #"{"keyName":"\#(name)","algorithm":"SHA256withECDSA","input":"aGVsbG8="}"#).0 == 404)
        let (rs, released) = try n.post(c, Route.extReleaseSession, #"{"owner":"\#(owner)"}"#)
        #expect(rs == 200 && field(released, "released") == "1")
        #expect(n.node.ephemeral.count == 0)
        // A restart knows none of them.
        #expect(try n.post(c, Route.extGenerateKey, #"{"keyName":"~\#(owner)/again","keyType":"SYMMETRIC","keySize":16}"#).0 == 200)
        n.stop()
        let again = try TestNode(stateDir: dir)
        defer { again.stop() }
        #expect(again.node.ephemeral.count == 0 && again.node.snapshot.keyCount == 0)
    }

    /// Token key names cannot take the session-key form through the base API either.
    @Test func tildeNamesAreReserved() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        let (s, body) = try n.post(
            c, Route.generateKey, #"{"adminPassword":"\#(TestNode.password)","keyName":"~x","keyType":"SYMMETRIC","keySize":16}"#)
        #expect(s == 400 && body.contains("Session key names") || body.contains("reserved"))
    }
}
