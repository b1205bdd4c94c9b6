import Synchronization
import Testing
import VSSMClient
import VSSMCrypto
import VSSMWire
@testable import VSSMServer
import VSSMTestSupport

@Suite struct ExtensionTests {
    let pw = TestNode.password

    @Test func keysObjectsAttributesAndVersion2Backup() throws {
        let a = try TestNode()
        defer { a.stop() }
        let c = try a.client()
        let (_, caps) = try a.post(c, Route.extCapabilities, "{}")
        #expect(caps.contains(#""features":["#) && caps.contains("backup-v2"))
        let (s1, _) = try a.post(
            c, Route.extGenerateKey,
            #"{"adminPassword":"\#(pw)","keyName":"k","keyType":"ASYMMETRIC","keySpec":"EC","keySize":384,"id":"AQID"}"#)
        #expect(s1 == 200)
        let (s2, _) = try a.post(
            c, Route.extGenerateKey, #"{"adminPassword":"\#(pw)","keyName":"t","keyType":"SYMMETRIC","keySize":24,"cipher":"3DES"}"#)
        #expect(s2 == 200)
        let cert = try DevPKI.create().clientCertificateDER
        let (s3, created) = try a.post(
            c, Route.extCreateObject, #"{"adminPassword":"\#(pw)","class":"CERTIFICATE","label":"k","id":"AQID","value":"\#(b64(cert))"}"#)
        #expect(s3 == 200)
        let uid = field(created, "uid")
        #expect(uid.count == 32)
        let (s4, bad) = try a.post(c, Route.extCreateObject, #"{"adminPassword":"\#(pw)","class":"CERTIFICATE","value":"AAAA"}"#)
        #expect(s4 == 400 && bad.contains("not a DER X.509 certificate"))

        // The listing needs no password and carries what PKCS#11 attributes need.
        let list = try c.call(Route.extListKeys, WireWriter(), response: ExtSchemas.listKeysResponse, idempotent: true)
        let k = try #require(list.objects("keys").first { $0.string("name") == "k" })
        #expect(k.bytes("id") == [1, 2, 3] && k.string("curve") == "P-384" && k.uint64("bits") == 384)
        #expect(list.objects("keys").first { $0.string("name") == "t" }?.string("cipher") == "3DES")
        #expect(list.objects("objects").first?.bytes("value") == cert)

        // Version 2 keeps ids, ciphers and objects; the original route refuses it like a Go node would.
        var w = WireWriter()
        w.string("adminPassword", pw)
        let v2 = try #require(
            try c.call(Route.extGenerateBackup, w, response: Schemas.generateBackupResponse, idempotent: true).object("backup"))
        #expect(v2.int64("version") == 2)
        let b = try TestNode()
        defer { b.stop() }
        let cb = try b.client()
        let blob =
            #"{"encryptionKey":"\#(b64(v2.bytes("encryptionKey") ?? []))","version":2,"timestamp":"1","encryptedState":"\#(b64(v2.bytes("encryptedState") ?? []))"}"#
        #expect(
            try b.post(cb, Route.restoreBackup, #"{"adminPassword":"\#(pw)","backup":\#(blob)}"#) == (
                400, #"{"error":"Unsupported backup version."}"#
            ))
        #expect(try b.post(cb, Route.extRestoreBackup, #"{"adminPassword":"\#(pw)","backup":\#(blob)}"#).0 == 200)
        #expect(b.node.snapshot.asymmetric["k"]?.attributes.id == [1, 2, 3])
        #expect(b.node.snapshot.symmetric["t"]?.attributes.cipher == "3DES")
        #expect(b.node.snapshot.objects[uid]?.value == cert)

        // Attributes, object updates and deletion.
        #expect(
            try a.post(c, Route.extSetAttributes, #"{"adminPassword":"\#(pw)","keyName":"k","keyType":"ASYMMETRIC","id":"BAU="}"#).0 == 200)
        #expect(a.node.snapshot.asymmetric["k"]?.attributes.id == [4, 5])
        #expect(try a.post(c, Route.extUpdateObject, #"{"adminPassword":"\#(pw)","uid":"\#(uid)","label":"renamed"}"#).0 == 200)
        #expect(a.node.snapshot.objects[uid]?.label == "renamed" && a.node.snapshot.objects[uid]?.id == [1, 2, 3])
        #expect(try a.post(c, Route.extDeleteObject, #"{"adminPassword":"\#(pw)","uid":"\#(uid)"}"#).0 == 200)
        #expect(try a.post(c, Route.extDeleteObject, #"{"adminPassword":"\#(pw)","uid":"\#(uid)"}"#).0 == 404)
        #expect(try a.post(c, Route.extDeleteKey, #"{"adminPassword":"\#(pw)","keyName":"k","keyType":"ASYMMETRIC"}"#).0 == 200)
        #expect(
            try a.post(c, Route.extDeleteKey, #"{"adminPassword":"\#(pw)","keyName":"k","keyType":"ASYMMETRIC"}"#) == (
                404, #"{"error":"Invalid key name: k"}"#
            ))
        #expect(try a.post(c, Route.extVerifyPassword, #"{"adminPassword":"nope"}"#).0 == 403)
        #expect(try a.post(c, Route.extVerifyPassword, #"{"adminPassword":"\#(pw)"}"#).0 == 200)
    }

    @Test func compatOnlyHidesExtensions() throws {
        let n = try TestNode(compatOnly: true)
        defer { n.stop() }
        let c = try n.client()
        #expect(try n.post(c, Route.extCapabilities, "{}").0 == 404)
        #expect(try n.post(c, Route.extListKeys, "{}").0 == 404)
        #expect(try n.post(c, Route.listKeys, #"{"adminPassword":"\#(pw)"}"#).0 == 200)
    }

    /// RSA generation runs on the worker pool: sign requests keep completing while a 4096-bit key
    /// is being generated (the original's 10 s write timeout lost such responses).
    @Test func slowKeyGenerationDoesNotBlockOtherRequests() async throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        try c.generateKey(password: pw, name: "fast", type: .asymmetric, spec: .ec, size: 256)
        let other = try n.client()
        _ = try other.sign(key: "fast", algorithm: "SHA256withECDSA", input: [1])  // connection warm
        let done = Atomic<Bool>(false)
        let pw = self.pw
        let slow = Task.detached {
            defer { done.store(true, ordering: .sequentiallyConsistent) }
            try c.generateKey(password: pw, name: "slow", type: .asymmetric, spec: .rsa, size: 4096)
        }
        var signsWhileGenerating = 0
        while !done.load(ordering: .sequentiallyConsistent) {
            _ = try other.sign(key: "fast", algorithm: "SHA256withECDSA", input: [2])
            if !done.load(ordering: .sequentiallyConsistent) { signsWhileGenerating += 1 }
        }
        try await slow.value
        #expect(signsWhileGenerating >= 1)
        #expect(n.node.snapshot.asymmetric["slow"]?.key.bits == 4096)
    }
}
