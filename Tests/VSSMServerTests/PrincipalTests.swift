import Glibc
import Testing
import VSSMClient
import VSSMCrypto
import VSSMWire
@testable import VSSMServer
import VSSMTestSupport

/// Tenants: principals (registered client certificates) with roles and namespaces. Every check
/// goes through a real node over mTLS with a certificate per tenant.
@Suite(.serialized) struct PrincipalTests {
    let pw = TestNode.password

    /// A client certificate from the test client CA and a client for it.
    struct Tenant {
        let der: [UInt8]
        let keyPEM: String
        let client: VSSMAPIClient

        /// A client of node `n` with this certificate (and a namespace header when given).
        func client(_ n: TestNode, namespace: String? = nil) throws -> VSSMAPIClient {
            var cfg = n.clientConfig(certDER: der, keyPEM: keyPEM)
            cfg.namespace = namespace
            return try VSSMAPIClient(cfg)
        }
    }

    func tenant(_ n: TestNode, _ name: String) throws -> Tenant {
        let pki = TestNode.shared.pki
        let issued = try DevPKI.issueClient(name: name, caCertificateDER: pki.clientCACertificateDER, caKeyPEM: pki.clientCAKeyPEM)
        return Tenant(
            der: issued.der, keyPEM: issued.keyPEM, client: try VSSMAPIClient(n.clientConfig(certDER: issued.der, keyPEM: issued.keyPEM)))
    }

    func generate(_ n: TestNode, _ c: VSSMAPIClient, _ name: String, password: String) throws -> (Int, String) {
        try n.post(
            c, Route.extGenerateKey,
            #"{"adminPassword":"\#(password)","keyName":"\#(name)","keyType":"ASYMMETRIC","keySpec":"EC","keySize":256}"#)
    }

    func sign(_ n: TestNode, _ c: VSSMAPIClient, _ name: String) throws -> Int {
        try n.post(c, Route.asymmetricSign, #"{"keyName":"\#(name)","algorithm":"SHA256withECDSA","input":"\#(b64("data"))"}"#).0
    }

    func listed(_ c: VSSMAPIClient) throws -> [String] {
        try c.call(Route.extListKeys, WireWriter(), response: ExtSchemas.listKeysResponse, idempotent: true).objects("keys").map {
            $0.string("name")
        }
    }

    @Test func withoutPrincipalsEveryClientUsesEveryKeyThenOnlyRegisteredOnes() throws {
        let n = try TestNode()
        defer { n.stop() }
        let admin = try n.client()
        try admin.generateKey(password: pw, name: "shared", type: .asymmetric, spec: .ec, size: 256)
        let stranger = try tenant(n, "stranger")
        #expect(try sign(n, stranger.client, "shared") == 200)
        #expect(try stranger.client.whoAmI().bool("restricted") == false)

        let a = try tenant(n, "team-a")
        _ = try admin.addPrincipal(password: pw, name: "team-a", certificate: a.der, role: "officer", namespaces: ["default"], pin: nil)
        #expect(try sign(n, a.client, "shared") == 200)
        // Trusted but unregistered: refused, with a message that says why.
        let (status, body) = try n.post(
            stranger.client, Route.asymmetricSign, #"{"keyName":"shared","algorithm":"SHA256withECDSA","input":"\#(b64("x"))"}"#)
        #expect(status == 403)
        #expect(body.contains("not registered"))
        #expect(try n.post(stranger.client, Route.extListKeys, "{}").0 == 403)
        // The root admin keeps working from an unregistered certificate (principals, backups).
        #expect(try admin.listPrincipals(password: pw).map { $0.string("name") } == ["team-a"])
        #expect(throws: ClientError.self) { _ = try admin.listPrincipals(password: "wrong") }
        // Removing the last principal returns to the original model.
        try admin.removePrincipal(password: pw, name: "team-a")
        #expect(try sign(n, stranger.client, "shared") == 200)
    }

    @Test func namespacesSegregateKeysObjectsAndNames() throws {
        let n = try TestNode()
        defer { n.stop() }
        let admin = try n.client()
        let a = try tenant(n, "a"), b = try tenant(n, "b")
        _ = try admin.addPrincipal(password: pw, name: "a", certificate: a.der, role: "officer", namespaces: ["default"], pin: nil)
        _ = try admin.addPrincipal(password: pw, name: "b", certificate: b.der, role: "officer", namespaces: ["team-b"], pin: "b-pin-1234")
        #expect(try generate(n, b.client, "ca", password: "b-pin-1234").0 == 200)
        #expect(try listed(b.client) == ["ca"])
        #expect(try listed(a.client).isEmpty)
        // Not by name, nor by the stored name.
        #expect(try sign(n, a.client, "ca") == 404)
        #expect(try sign(n, a.client, "@team-b/ca") == 404)
        #expect(try sign(n, b.client, "ca") == 200)
        // EC signs stay on the event loop for a tenant too (its name resolved in its namespace).
        let fpB = Hex.encode(DigestAlgorithm.sha256.hash(b.der)), fpA = Hex.encode(DigestAlgorithm.sha256.hash(a.der))
        #expect(n.node.isCheap(path: Route.asymmetricSign, body: [], keyName: "ca", fingerprint: fpB))
        #expect(!n.node.isCheap(path: Route.asymmetricSign, body: [], keyName: "ca", fingerprint: fpA))
        // The same name in another namespace is another key.
        #expect(try generate(n, a.client, "ca", password: pw).0 == 200)
        #expect(n.node.snapshot.asymmetric.keys.sorted() == ["@team-b/ca", "ca"])
        #expect(try generate(n, a.client, "@team-b/x", password: pw).0 == 400)
        // Deleting, objects: only within the namespace.
        #expect(try n.post(a.client, Route.extDeleteKey, #"{"adminPassword":"\#(pw)","keyName":"ca","keyType":"ASYMMETRIC"}"#).0 == 200)
        #expect(n.node.snapshot.asymmetric.keys.sorted() == ["@team-b/ca"])
        let (_, created) = try n.post(
            b.client, Route.extCreateObject, #"{"adminPassword":"b-pin-1234","class":"DATA","label":"b-data","value":"\#(b64("v"))"}"#)
        let uid = String(created.split(separator: "\"")[3])
        let aObjects = try a.client.call(Route.extListKeys, WireWriter(), response: ExtSchemas.listKeysResponse, idempotent: true).objects(
            "objects")
        #expect(aObjects.isEmpty)
        // The owner's listing decodes with the clients' schema (no namespace field leaks into it).
        let bObjects = try b.client.call(Route.extListKeys, WireWriter(), response: ExtSchemas.listKeysResponse, idempotent: true).objects(
            "objects")
        #expect(bObjects.map { $0.string("label") } == ["b-data"])
        #expect(try n.post(a.client, Route.extDeleteObject, #"{"adminPassword":"\#(pw)","uid":"\#(uid)"}"#).0 == 404)
        #expect(try n.post(b.client, Route.extDeleteObject, #"{"adminPassword":"b-pin-1234","uid":"\#(uid)"}"#).0 == 200)
    }

    @Test func rolesLimitWhatPrincipalsDo() throws {
        let n = try TestNode(stateDir: TestNode.tempDir())
        defer { n.stop() }
        let admin = try n.client()
        let officer = try tenant(n, "officer"), user = try tenant(n, "user"), auditor = try tenant(n, "auditor"),
            other = try tenant(n, "other")
        _ = try admin.addPrincipal(
            password: pw, name: "officer", certificate: officer.der, role: "officer", namespaces: ["ops"], pin: "officer-pin")
        _ = try admin.addPrincipal(password: pw, name: "user", certificate: user.der, role: "user", namespaces: ["ops"], pin: "user-pin")
        _ = try admin.addPrincipal(
            password: pw, name: "auditor", certificate: auditor.der, role: "auditor", namespaces: ["ops"], pin: "audit-pin")
        _ = try admin.addPrincipal(password: pw, name: "other", certificate: other.der, role: "officer", namespaces: ["else"], pin: nil)
        #expect(try generate(n, officer.client, "k", password: "officer-pin").0 == 200)
        #expect(try generate(n, other.client, "k2", password: pw).0 == 200)
        // user: signs, logs in with its PIN, manages nothing (even with the right PIN).
        #expect(try sign(n, user.client, "k") == 200)
        #expect(try n.post(user.client, Route.extVerifyPassword, #"{"adminPassword":"user-pin"}"#).0 == 200)
        let (gs, gb) = try generate(n, user.client, "mine", password: "user-pin")
        #expect(gs == 403)
        #expect(gb.contains("Not permitted"))
        #expect(try n.post(user.client, Route.extDeleteKey, #"{"adminPassword":"user-pin","keyName":"k","keyType":"ASYMMETRIC"}"#).0 == 403)
        #expect(
            try n.post(
                user.client, Route.extSetAttributes, #"{"adminPassword":"user-pin","keyName":"k","keyType":"ASYMMETRIC","label":"x"}"#
            ).0 == 403)
        // The PIN is a credential of its own principal only; CKU_SO needs the admin password.
        #expect(try n.post(officer.client, Route.extVerifyPassword, #"{"adminPassword":"user-pin"}"#).0 == 403)
        #expect(try n.post(officer.client, Route.extVerifyPassword, #"{"adminPassword":"officer-pin","so":true}"#).0 == 403)
        #expect(try n.post(officer.client, Route.extVerifyPassword, #"{"adminPassword":"\#(pw)","so":true}"#).0 == 200)
        #expect(try generate(n, officer.client, "k3", password: "wrong-pin").0 == 403)
        // auditor: no key use; its namespace's records only.
        #expect(try sign(n, auditor.client, "k") == 403)
        let (status, body) = try n.post(auditor.client, Route.extAudit, #"{"adminPassword":"audit-pin"}"#)
        #expect(status == 200)
        let records = try WireObject.decode(Array(body.utf8), as: ExtSchemas.auditResponse).objects("records")
        #expect(!records.isEmpty)
        #expect(records.allSatisfy { $0.string("namespace") == "ops" })
        #expect(
            records.contains { $0.string("principal") == "user" && $0.string("route") == Route.asymmetricSign && $0.string("key") == "k" })
        #expect(!records.contains { $0.string("principal") == "other" })
        #expect(try n.post(auditor.client, Route.extAudit, #"{"adminPassword":"wrong"}"#).0 == 403)
        // The root admin sees every namespace's records.
        let all = try admin.audit(password: pw).objects("records")
        #expect(all.contains { $0.string("principal") == "other" && $0.string("namespace") == "else" })
    }

    @Test func principalsAndNamespacesSurviveRestartAndBackupRestore() throws {
        let dir = TestNode.tempDir()
        var n = try TestNode(stateDir: dir)
        let admin = try n.client()
        let b = try tenant(n, "b")
        _ = try admin.addPrincipal(password: pw, name: "b", certificate: b.der, role: "officer", namespaces: ["team-b"], pin: "b-pin-1234")
        #expect(try generate(n, b.client, "ca", password: "b-pin-1234").0 == 200)
        var w = WireWriter()
        w.string("adminPassword", pw)
        let v2 = try #require(
            try admin.call(Route.extGenerateBackup, w, response: Schemas.generateBackupResponse, idempotent: true).object("backup"))
        n.stop()
        n = try TestNode(stateDir: dir)
        let afterRestart = try b.client(n)
        #expect(try sign(n, afterRestart, "ca") == 200)
        #expect(try n.post(afterRestart, Route.extVerifyPassword, #"{"adminPassword":"b-pin-1234"}"#).0 == 200)
        n.stop()

        // A fresh node (no state) restores principals and the namespaced key from the backup.
        let fresh = try TestNode()
        defer { fresh.stop() }
        let blob =
            #"{"encryptionKey":"\#(b64(v2.bytes("encryptionKey") ?? []))","version":2,"timestamp":"1","encryptedState":"\#(b64(v2.bytes("encryptedState") ?? []))"}"#
        #expect(try fresh.post(try fresh.client(), Route.extRestoreBackup, #"{"adminPassword":"\#(pw)","backup":\#(blob)}"#).0 == 200)
        #expect(fresh.node.snapshot.principals.values.map(\.name) == ["b"])
        let b3 = try b.client(fresh)
        #expect(try listed(b3) == ["ca"])
        #expect(try sign(fresh, b3, "ca") == 200)
        #expect(try sign(fresh, try fresh.client(), "ca") == 403)
    }

    @Test func sessionKeysAreBoundToTheirPrincipal() throws {
        let n = try TestNode()
        defer { n.stop() }
        let admin = try n.client()
        let a = try tenant(n, "a"), b = try tenant(n, "b")
        _ = try admin.addPrincipal(password: pw, name: "a", certificate: a.der, role: "user", namespaces: ["default"], pin: nil)
        _ = try admin.addPrincipal(password: pw, name: "b", certificate: b.der, role: "user", namespaces: ["team-b"], pin: nil)
        let owner = SecureRandom.hex(16)
        // A user makes session keys (no management right needed).
        #expect(try generate(n, b.client, "~\(owner)/s1", password: "").0 == 200)
        #expect(try sign(n, b.client, "~\(owner)/s1") == 200)
        // Another principal with the same owner id sees and uses nothing.
        #expect(try sign(n, a.client, "~\(owner)/s1") == 404)
        let list = { (c: VSSMAPIClient) throws -> [String] in
            var w = WireWriter()
            w.string("owner", owner)
            return try c.call(Route.extListKeys, w, response: ExtSchemas.listKeysResponse, idempotent: true).objects("keys").map {
                $0.string("name")
            }
        }
        #expect(try list(b.client) == ["~\(owner)/s1"])
        #expect(try list(a.client).isEmpty)
        // (0 released: the field is left out, as protobuf JSON does for zero)
        #expect(try n.post(a.client, Route.extReleaseSession, #"{"owner":"\#(owner)"}"#) == (200, "{}"))
        #expect(try sign(n, b.client, "~\(owner)/s1") == 200)
    }

    @Test func namespaceHeaderPicksOneOfThePrincipalsNamespaces() throws {
        let n = try TestNode()
        defer { n.stop() }
        let admin = try n.client()
        let t = try tenant(n, "multi")
        _ = try admin.addPrincipal(password: pw, name: "multi", certificate: t.der, role: "officer", namespaces: ["one", "two"], pin: nil)
        #expect(try generate(n, t.client, "k", password: pw).0 == 200)  // in "one", its first
        let two = try t.client(n, namespace: "two")
        #expect(try listed(two).isEmpty)
        #expect(try two.whoAmI().string("namespace") == "two")
        let three = try t.client(n, namespace: "three")
        #expect(try n.post(three, Route.extListKeys, "{}").0 == 403)
        #expect(n.node.snapshot.asymmetric.keys.sorted() == ["@one/k"])
    }

    /// Waits up to 10 s for `condition` (peer pushes are asynchronous).
    func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<200 {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }

    @Test func principalsAndNamespacedKeysTravelToPeersAndRemovalsToo() throws {
        let n2 = try TestNode()
        defer { n2.stop() }
        let n1 = try TestNode(peers: ["127.0.0.1:\(n2.ports[.internal] ?? 0)"])
        defer { n1.stop() }
        let admin = try n1.client()
        let b = try tenant(n1, "b")
        _ = try admin.addPrincipal(password: pw, name: "b", certificate: b.der, role: "officer", namespaces: ["team-b"], pin: "b-pin-1234")
        #expect(eventually { n2.node.snapshot.principals.values.map(\.name) == ["b"] })
        #expect(
            try n1.post(
                b.client, Route.extGenerateKey,
                #"{"adminPassword":"b-pin-1234","keyName":"k","keyType":"ASYMMETRIC","keySpec":"EC","keySize":256,"label":"B's key","id":"\#(b64([7]))"}"#
            ).0 == 200)
        #expect(eventually { n2.node.snapshot.asymmetric["@team-b/k"] != nil })
        // The extension sync carries attributes (the original format would lose the CKA_ID).
        #expect(n2.node.snapshot.asymmetric["@team-b/k"]?.attributes.id == [7])
        let onTwo = try b.client(n2)
        #expect(try sign(n2, onTwo, "k") == 200)
        #expect(try sign(n2, try n2.client(), "k") == 403)  // unregistered on node 2 as well
        // A removal is a newer table: the peer drops the principal too.
        try admin.removePrincipal(password: pw, name: "b")
        #expect(eventually { n2.node.snapshot.principals.isEmpty })
        #expect(n2.node.snapshot.principalsVersion == n1.node.snapshot.principalsVersion)
    }
}
