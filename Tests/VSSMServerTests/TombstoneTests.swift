import Glibc
import Testing
import VSSMClient
import VSSMCrypto
import VSSMWire
@testable import VSSMServer
import VSSMTestSupport

/// Deletions that stay deleted: a tombstone outranks every older copy of a key, from our peers,
/// from Go peers (original format, no tombstones) and from backups.
@Suite(.serialized) struct TombstoneTests {
    let pw = TestNode.password

    func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<200 {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }

    func delete(_ n: TestNode, _ c: VSSMAPIClient, _ name: String) throws -> Int {
        try n.post(c, Route.extDeleteKey, #"{"adminPassword":"\#(pw)","keyName":"\#(name)","keyType":"ASYMMETRIC"}"#).0
    }

    @Test func aDeletedKeyDoesNotComeBackFromPeersOrBackups() throws {
        let n2 = try TestNode()
        defer { n2.stop() }
        let n1 = try TestNode(peers: ["127.0.0.1:\(n2.ports[.internal] ?? 0)"])
        defer { n1.stop() }
        let c1 = try n1.client(), c2 = try n2.client()
        try c1.generateKey(password: pw, name: "doomed", type: .asymmetric, spec: .ec, size: 256)
        #expect(eventually { n2.node.snapshot.asymmetric["doomed"] != nil })
        var w = WireWriter()
        w.string("adminPassword", pw)
        let backup = try #require(
            try c1.call(Route.extGenerateBackup, w, response: Schemas.generateBackupResponse, idempotent: true).object("backup"))
        let oldState = StateCodec.encode(n1.node.snapshot, extensions: false)

        // Deleted on node 2 (which has no peers of its own): node 1 still holds it and pushes its
        // whole state after its next change, yet node 2 does not take the key back.
        #expect(try delete(n2, c2, "doomed") == 200)
        try c1.generateKey(password: pw, name: "other", type: .asymmetric, spec: .ec, size: 256)
        #expect(eventually { n2.node.snapshot.asymmetric["other"] != nil })
        #expect(n2.node.snapshot.asymmetric["doomed"] == nil)
        // The original format (a Go peer's push, no tombstones) does not bring it back either.
        let decoded = try StateCodec.decode(oldState, allowExtensions: false)
        try n2.node.absorb(decoded, from: "go-peer")
        #expect(n2.node.snapshot.asymmetric["doomed"] == nil)
        // Nor a backup made before the deletion.
        let blob =
            #"{"encryptionKey":"\#(b64(backup.bytes("encryptionKey") ?? []))","version":2,"timestamp":"1","encryptedState":"\#(b64(backup.bytes("encryptedState") ?? []))"}"#
        #expect(try n2.post(c2, Route.extRestoreBackup, #"{"adminPassword":"\#(pw)","backup":\#(blob)}"#).0 == 200)
        #expect(n2.node.snapshot.asymmetric["doomed"] == nil)
        #expect(n2.node.snapshot.tombstones[Tombstone.id(.asymmetric, "doomed")] != nil)

        // Deleted on node 1: the tombstone travels to node 2 with the push.
        #expect(try delete(n1, c1, "other") == 200)
        #expect(eventually { n2.node.snapshot.asymmetric["other"] == nil })
        // A key made again later under the name is a new key, and travels.
        usleep(5_000)
        try c1.generateKey(password: pw, name: "other", type: .asymmetric, spec: .ec, size: 256)
        #expect(eventually { n2.node.snapshot.asymmetric["other"] != nil })
    }

    @Test func tombstonesSurviveARestartAndAreBounded() throws {
        let dir = TestNode.tempDir()
        var n = try TestNode(stateDir: dir)
        let c = try n.client()
        try c.generateKey(password: pw, name: "k", type: .asymmetric, spec: .ec, size: 256)
        let created = n.node.snapshot.asymmetric["k"]?.createdAt ?? 0
        #expect(try delete(n, c, "k") == 200)
        n.stop()
        n = try TestNode(stateDir: dir)
        defer { n.stop() }
        #expect(n.node.snapshot.isBuried(Tombstone.id(.asymmetric, "k"), createdAt: created))
        var s = KeyState()
        for i in 0..<(Tombstone.maxCount + 10) { s.bury("SYMMETRIC/\(i)", at: Int64(i)) }
        #expect(s.tombstones.count == Tombstone.maxCount)
        #expect(s.tombstones["SYMMETRIC/0"] == nil && s.tombstones["SYMMETRIC/\(Tombstone.maxCount + 9)"] != nil)
    }
}
