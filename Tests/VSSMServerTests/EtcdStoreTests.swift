import Foundation
import Testing
import VSSMClient
import Synchronization
import VSSMCrypto
import VSSMSync
import VSSMWire
@testable import VSSMServer
import VSSMTestSupport

/// A real etcd (one member, mutual TLS, certificates made with openssl) under two nodes.
final class EtcdFixture: @unchecked Sendable {
    let dir = TestNode.tempDir()
    let port: Int
    private(set) var process: Process
    var settings: EtcdSettings {
        EtcdSettings(endpoints: ["https://127.0.0.1:\(port)"], ca: dir + "/ca.pem", cert: dir + "/client.pem", key: dir + "/client-key.pem")
    }

    static func run(_ args: [String], in dir: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        p.standardError = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw ServiceError(500, "\(args.joined(separator: " ")) failed") }
    }

    init() throws {
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        try EtcdFixture.run(
            ["openssl", "req", "-x509"] + ec + ["-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-etcd-ca"],
            in: dir)
        try "subjectAltName=DNS:etcd,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n".write(
            toFile: dir + "/member.ext", atomically: true, encoding: .utf8)
        try "extendedKeyUsage=clientAuth\n".write(toFile: dir + "/client.ext", atomically: true, encoding: .utf8)
        for (name, ext) in [("member", "member.ext"), ("client", "client.ext")] {
            try EtcdFixture.run(
                ["openssl", "req"] + ec + ["-keyout", "\(name)-key.pem", "-out", "\(name).csr", "-subj", "/CN=\(name)"], in: dir)
            try EtcdFixture.run(
                [
                    "openssl", "x509", "-req", "-in", "\(name).csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                    "-days", "2", "-extfile", ext, "-out", "\(name).pem",
                ], in: dir)
        }
        port = Int.random(in: 30000...50000)
        process = Process()
        try start()
    }

    /// Starts the member (again, on the same data directory) and waits until it answers.
    func start() throws {
        let peer = port + 1
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "etcd", "--name", "t", "--data-dir", dir + "/data",
            "--listen-client-urls", "https://127.0.0.1:\(port)", "--advertise-client-urls", "https://127.0.0.1:\(port)",
            "--listen-peer-urls", "http://127.0.0.1:\(peer)", "--initial-advertise-peer-urls", "http://127.0.0.1:\(peer)",
            "--initial-cluster", "t=http://127.0.0.1:\(peer)",
            "--cert-file", dir + "/member.pem", "--key-file", dir + "/member-key.pem",
            "--trusted-ca-file", dir + "/ca.pem", "--client-cert-auth",
        ]
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        // Ready when a TLS client with our certificate gets an answer.
        let store = try EtcdStore(settings: settings, rpcKey: try PrivateKey(pkcs8: TestNode.rpcPKCS8))
        for _ in 0..<100 {
            if (try? store.currentRevision()) != nil { return }
            usleep(100_000)
        }
        throw ServiceError(500, "etcd did not start (is etcd-server installed? make check installs it)")
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}

@Suite(.serialized) struct EtcdStoreTests {
    let pw = TestNode.password

    @Test func twoNodesCreatingOneNameCannotBothWin() throws {
        let etcd = try EtcdFixture()
        defer { etcd.stop() }
        let n1 = try TestNode(etcd: etcd.settings), n2 = try TestNode(etcd: etcd.settings)
        defer { n1.stop(); n2.stop() }
        let c1 = try n1.client(), c2 = try n2.client()
        for round in 0..<8 {
            let name = "race-\(round)"
            let body = #"{"adminPassword":"\#(pw)","keyName":"\#(name)","keyType":"SYMMETRIC","keySize":32}"#
            let results = Locked<[Int]>([])
            DispatchQueue.concurrentPerform(iterations: 2) { i in
                let status = (try? (i == 0 ? n1.post(c1, Route.generateKey, body) : n2.post(c2, Route.generateKey, body)).0) ?? 0
                results.withLock { $0.append(status) }
            }
            #expect(results.withLock { $0.sorted() } == [200, 409], "round \(round)")
            // Both nodes end up with the one key that won.
            _ = n1.node.catchUp(); _ = n2.node.catchUp()
            let a = n1.node.snapshot.symmetric[name]?.key, b = n2.node.snapshot.symmetric[name]?.key
            #expect(a != nil && a == b)
        }
        // Deletions and changes reach the other node's view too (it reads only what changed).
        #expect(try n2.post(c2, Route.extDeleteKey, #"{"adminPassword":"\#(pw)","keyName":"race-0","keyType":"SYMMETRIC"}"#).0 == 200)
        #expect(
            try n2.post(
                c2, Route.extSetAttributes, #"{"adminPassword":"\#(pw)","keyName":"race-1","keyType":"SYMMETRIC","label":"relabelled"}"#
            ).0 == 200)
        _ = n1.node.catchUp()
        #expect(n1.node.snapshot.symmetric["race-0"] == nil)
        #expect(n1.node.snapshot.tombstones[Tombstone.id(.symmetric, "race-0")] != nil)
        #expect(n1.node.snapshot.symmetric["race-1"]?.attributes.label == "relabelled")
        #expect(n1.node.snapshot.symmetric.count == 7)
    }

    /// Audit heads written to etcd (every 2 s per node) are not key state: a key made on one node
    /// still signs at once through another (its miss catches up), and no view holds them.
    @Test func auditHeadsDoNotDisturbTheViews() throws {
        let etcd = try EtcdFixture()
        defer { etcd.stop() }
        let n1 = try TestNode(stateDir: TestNode.tempDir(), etcd: etcd.settings)
        let n2 = try TestNode(stateDir: TestNode.tempDir(), etcd: etcd.settings)
        defer { n1.stop(); n2.stop() }
        let c1 = try n1.client(), c2 = try n2.client()
        for round in 0..<12 {
            try c1.generateKey(password: pw, name: "k\(round)", type: .asymmetric, spec: .ec, size: 256)
            let status = try n2.post(c2, Route.asymmetricSign, #"{"keyName":"k\#(round)","algorithm":"SHA256withECDSA","input":"AAAA"}"#).0
            #expect(status == 200, "round \(round)")
            usleep(400_000)
        }
        #expect(try rawRecords(etcd).keys.contains { $0.hasPrefix("/vssm/a/") }, "the heads are in etcd")
        #expect(
            !n2.node.audit.lines.contains { $0.contains("does not unseal") || $0.contains("ERROR") },
            "\(n2.node.audit.lines.filter { $0.contains("ERROR") })")
    }

    /// Issue 22, item 4: a node follows etcd by its watch, not by polling the revision. While
    /// nothing changes it sends etcd (almost) nothing; a key made, relabelled or deleted through
    /// another node is in its view within a second without any request to it; after etcd
    /// restarts the watch comes back by itself (polling in between).
    @Test func aNodeFollowsEtcdByItsWatch() throws {
        let etcd = try EtcdFixture()
        defer { etcd.stop() }
        let n1 = try TestNode(etcd: etcd.settings), n2 = try TestNode(etcd: etcd.settings)
        defer { n1.stop(); n2.stop() }
        let c1 = try n1.client()
        func watching() -> Bool { n2.node.etcd.withLock { $0 }?.watching.load(ordering: .relaxed) ?? false }
        func within(_ ms: Int64, _ what: String, _ condition: () -> Bool) -> Int64? {
            let start = Monotonic.ms()
            while Monotonic.ms() - start < ms {
                if condition() { return Monotonic.ms() - start }
                usleep(5_000)
            }
            Issue.record("\(what): not within \(ms) ms")
            return nil
        }
        _ = within(5_000, "the watch is up") { watching() }
        guard let store2 = n2.node.etcd.withLock({ $0 }) else { Issue.record("no etcd store"); return }

        // Idle: polling every 250 ms would be 12 revision reads in 3 s.
        let before = store2.requestsSent
        usleep(3_000_000)
        let idle = store2.requestsSent - before
        #expect(idle <= 1, "\(idle) requests to etcd in 3 idle seconds")

        for round in 0..<3 {
            let name = "w\(round)"
            try c1.generateKey(password: pw, name: name, type: .symmetric, size: 32)
            let seen = within(1_000, "\(name) made on node 1 in node 2's view") { n2.node.snapshot.symmetric[name] != nil }
            #expect(seen != nil)
            #expect(
                try n1.post(
                    c1, Route.extSetAttributes, #"{"adminPassword":"\#(pw)","keyName":"\#(name)","keyType":"SYMMETRIC","label":"x"}"#
                ).0
                    == 200)
            _ = within(1_000, "\(name) relabelled") { n2.node.snapshot.symmetric[name]?.attributes.label == "x" }
            #expect(try n1.post(c1, Route.extDeleteKey, #"{"adminPassword":"\#(pw)","keyName":"\#(name)","keyType":"SYMMETRIC"}"#).0 == 200)
            _ = within(1_000, "\(name) deleted") { n2.node.snapshot.symmetric[name] == nil }
        }

        // etcd restarts: the stream ends, the node polls, then watches again.
        etcd.stop()
        _ = within(2_000, "the watch noticed etcd going") { !watching() }
        try etcd.start()
        _ = within(15_000, "the watch is back") { watching() }
        try c1.generateKey(password: pw, name: "after-restart", type: .symmetric, size: 32)
        _ = within(1_000, "a key made after the restart") { n2.node.snapshot.symmetric["after-restart"] != nil }
        #expect(n2.node.audit.lines.contains { $0.contains("by its watch again") })
    }

    @Test func recordsAreSealedAndBoundToTheirNames() throws {
        let etcd = try EtcdFixture()
        defer { etcd.stop() }
        let n = try TestNode(etcd: etcd.settings)
        defer { n.stop() }
        let c = try n.client()
        try c.generateKey(password: pw, name: "alpha", type: .symmetric, size: 32)
        try c.generateKey(password: pw, name: "beta", type: .symmetric, size: 32)
        let store = try EtcdStore(settings: etcd.settings, rpcKey: try PrivateKey(pkcs8: TestNode.rpcPKCS8))
        let raw = try rawRecords(etcd)
        #expect(Set(raw.keys) == ["/vssm/k/SYMMETRIC/alpha", "/vssm/k/SYMMETRIC/beta"])
        let alphaKey = try #require(n.node.snapshot.symmetric["alpha"]?.key)
        for value in raw.values {
            #expect(!String(decoding: value, as: UTF8.self).contains("alpha"))
            #expect(!contains(value, alphaKey))
        }
        // A record moved under another name does not unseal: beta's slot holding alpha's record is skipped.
        try put(etcd, "/vssm/k/SYMMETRIC/beta", try #require(raw["/vssm/k/SYMMETRIC/alpha"]))
        let audit = AuditLog(echo: false)
        let loaded = try store.load(audit: audit)
        #expect(Set(loaded.state.symmetric.keys) == ["alpha"])
        #expect(audit.lines.contains { $0.contains("does not unseal") })
    }

    @Test func withEtcdAwaySigningGoesOnAndWritesFailWith503() throws {
        let etcd = try EtcdFixture()
        defer { etcd.stop() }
        let n = try TestNode(etcd: etcd.settings)
        defer { n.stop() }
        let c = try n.client()
        try c.generateKey(password: pw, name: "ec", type: .asymmetric, spec: .ec, size: 256)
        kill(etcd.process.processIdentifier, SIGSTOP)
        defer { kill(etcd.process.processIdentifier, SIGCONT) }
        #expect(try n.post(c, Route.asymmetricSign, #"{"keyName":"ec","algorithm":"SHA256withECDSA","input":"\#(b64("x"))"}"#).0 == 200)
        let (status, body) = try n.post(
            c, Route.generateKey, #"{"adminPassword":"\#(pw)","keyName":"later","keyType":"SYMMETRIC","keySize":16}"#)
        #expect(status == 503)
        #expect(body.contains("etcd"))
        #expect(n.node.snapshot.symmetric["later"] == nil)
        // The refused write may still land once etcd resumes (etcd may have received it): the answer says so.
        #expect(body.contains("may still apply it"))
        kill(etcd.process.processIdentifier, SIGCONT)
        var created = false
        for _ in 0..<50 where !created {
            created = (try? c.generateKey(password: pw, name: "after", type: .symmetric, size: 16)) != nil
            if !created { usleep(100_000) }
        }
        #expect(created)
    }

    /// The store is untrusted for freshness (issue 20): whoever can write etcd but has no RPC key
    /// cannot put back an older principal table, delete it to switch tenancy off, or bring back a
    /// deleted key, while the node runs or across its restart (its floors are in its state
    /// directory). Each attack is made with etcd's own API, as such a writer would.
    @Test func theStoreCannotRollTheStateBack() throws {
        let etcd = try EtcdFixture()
        defer { etcd.stop() }
        let dir = TestNode.tempDir()
        var n = try TestNode(stateDir: dir, etcd: etcd.settings)
        defer { n.stop() }
        let admin = try n.client()
        let pki = TestNode.shared.pki
        func issue(_ name: String) throws -> (der: [UInt8], keyPEM: String) {
            try DevPKI.issueClient(name: name, caCertificateDER: pki.clientCACertificateDER, caKeyPEM: pki.clientCAKeyPEM)
        }
        let a = try issue("team-a"), b = try issue("team-b"), stranger = try issue("stranger")
        _ = try admin.addPrincipal(password: pw, name: "team-a", certificate: a.der, role: "officer", namespaces: ["default"], pin: nil)
        let oldTable = try #require(try rawRecords(etcd)["/vssm/p"])
        _ = try admin.addPrincipal(password: pw, name: "team-b", certificate: b.der, role: "officer", namespaces: ["team-b"], pin: nil)
        func eventually(_ what: String, _ condition: () throws -> Bool) rethrows {
            for _ in 0..<50 { if try condition() { return }; usleep(100_000) }
            Issue.record("not within 5 s: \(what)")
        }
        // An older principal table put back: refused, and the node's own written back.
        try put(etcd, "/vssm/p", oldTable)
        try eventually("the newer table is back in etcd") { try rawRecords(etcd)["/vssm/p"] != oldTable }
        #expect(n.node.snapshot.principals.count == 2)
        // The table deleted: the node keeps enforcing it (an unregistered certificate stays refused).
        try deleteRecord(etcd, "/vssm/p")
        try eventually("the table is written back") { try rawRecords(etcd)["/vssm/p"] != nil }
        #expect(n.node.snapshot.principals.count == 2)
        let strangerClient = try VSSMAPIClient(n.clientConfig(certDER: stranger.der, keyPEM: stranger.keyPEM))
        let teamA = try VSSMAPIClient(n.clientConfig(certDER: a.der, keyPEM: a.keyPEM))
        try teamA.generateKey(password: pw, name: "ec", type: .asymmetric, spec: .ec, size: 256)
        let sign = #"{"keyName":"ec","algorithm":"SHA256withECDSA","input":"\#(b64("x"))"}"#
        #expect(try n.post(strangerClient, Route.asymmetricSign, sign).0 == 403, "tenancy did not switch off")
        // A deleted key put back: stays deleted (and is deleted from etcd again).
        try teamA.generateKey(password: pw, name: "doomed", type: .asymmetric, spec: .ec, size: 256)
        let oldKey = try #require(try rawRecords(etcd)["/vssm/k/ASYMMETRIC/doomed"])
        #expect(try n.post(teamA, Route.extDeleteKey, #"{"adminPassword":"\#(pw)","keyName":"doomed","keyType":"ASYMMETRIC"}"#).0 == 200)
        try put(etcd, "/vssm/k/ASYMMETRIC/doomed", oldKey)
        usleep(600_000)
        _ = n.node.catchUp()
        #expect(n.node.snapshot.asymmetric["doomed"] == nil)
        #expect(try n.post(teamA, Route.asymmetricSign, #"{"keyName":"doomed","algorithm":"SHA256withECDSA","input":"AAAA"}"#).0 == 404)
        try eventually("the resurrected record is deleted again") { try rawRecords(etcd)["/vssm/k/ASYMMETRIC/doomed"] == nil }
        // Across a restart: the old table put back while the node is stopped is still refused.
        n.stop()
        try put(etcd, "/vssm/p", oldTable)
        try put(etcd, "/vssm/k/ASYMMETRIC/doomed", oldKey)
        n = try TestNode(stateDir: dir, etcd: etcd.settings)
        #expect(n.node.snapshot.principals.count == 2, "the restarted node keeps the newer table")
        #expect(n.node.snapshot.asymmetric["doomed"] == nil, "and the deleted key stays deleted")
        #expect(n.node.snapshot.asymmetric["ec"] != nil)
        #expect(n.node.audit.lines.contains { $0.contains("etcd record p has sequence") }, "the refusal is logged")
    }

    /// A used join credential put back in etcd (an older principal table, replayed by a writer
    /// without the RPC key) does not hand the RPC key over again: the join is judged against the
    /// newest table this node has seen, not the store's older one.
    @Test func aJoinIsNotJudgedAgainstAnOlderStore() throws {
        let etcd = try EtcdFixture()
        defer { etcd.stop() }
        let n = try TestNode(stateDir: TestNode.tempDir(), etcd: etcd.settings)
        defer { n.stop() }
        let secret = try #require(try n.client().addNode(password: pw, name: "n2").bytes("secret"))
        let withCredential = try #require(try rawRecords(etcd)["/vssm/p"])
        let url = "https://127.0.0.1:\(n.ports[.bootstrapSlave] ?? 0)"
        let second = try TestNode(bootstrap: false)
        defer { second.stop() }
        try second.node.joinCluster(urls: [url], name: "n2", secret: secret, seconds: 5)
        #expect(second.node.isRunning)
        try put(etcd, "/vssm/p", withCredential)  // the credential, unused, is back in etcd
        let third = try TestNode(bootstrap: false)
        defer { third.stop() }
        #expect(throws: ServiceError.self) { try third.node.joinCluster(urls: [url], name: "n2", secret: secret, seconds: 2) }
        #expect(!third.node.isRunning, "the replayed credential did not hand the RPC key over")
        #expect(n.node.audit.lines.contains { $0.contains("etcd record p has sequence") }, "the replay is logged")
    }

    /// A cluster node's audit head is in etcd as well: its trail and anchor file put back to an
    /// earlier copy while it was stopped are found at its next start and by `--verify`.
    @Test func theAuditHeadIsAnchoredInEtcd() throws {
        let etcd = try EtcdFixture()
        defer { etcd.stop() }
        let dir = TestNode.tempDir()
        let files = [dir + "/" + AuditTrail.fileName, dir + "/audit.anchor"]
        var early: [[UInt8]] = []
        do {
            let n = try TestNode(stateDir: dir, etcd: etcd.settings)
            defer { n.stop() }
            let c = try n.client()
            try c.generateKey(password: pw, name: "ec", type: .asymmetric, spec: .ec, size: 256)
            early = try files.map { try FileUtil.readFile($0) }
            for _ in 0..<3 { _ = try n.post(c, Route.asymmetricSign, #"{"keyName":"ec","algorithm":"SHA256withECDSA","input":"AAAA"}"#) }
            let head = try #require(n.node.auditTrail.withLock { $0 }).head
            var anchored: UInt64 = 0
            for _ in 0..<40 where anchored < head.seq { usleep(100_000); anchored = n.node.auditHeadInStore()?.seq ?? 0 }
            #expect(anchored >= head.seq, "the head reached etcd within 4 s")
        }
        for (path, bytes) in zip(files, early) { try FileUtil.writeAtomically(path: path, bytes: bytes, mode: 0o600) }
        let n = try TestNode(stateDir: dir, etcd: etcd.settings)
        defer { n.stop() }
        #expect(n.node.audit.lines.contains { $0.contains("missing at the end: etcd's anchor for this node") }, "found at start")
        let c = try n.client()
        let problem = try c.audit(password: pw, verify: true).string("problem")
        #expect(problem.contains("missing at the end"), "\(problem)")
        // The node's own head replaces etcd's at its next write; the cut is still reported once
        // the trail has records of those seqs again (another record at the anchored seq).
        for _ in 0..<4 { _ = try n.post(c, Route.asymmetricSign, #"{"keyName":"ec","algorithm":"SHA256withECDSA","input":"AAAA"}"#) }
        usleep(2_500_000)
        let later = try c.audit(password: pw, verify: true).string("problem")
        #expect(later.contains("its MAC differs"), "\(later)")
    }

    func deleteRecord(_ etcd: EtcdFixture, _ key: String) throws {
        _ = try gateway(etcd, "/v3/kv/deleterange", #"{"key":"\#(Base64.encode(Array(key.utf8)))"}"#)
    }

    func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        return (0...(haystack.count - needle.count)).contains { Array(haystack[$0..<($0 + needle.count)]) == needle }
    }

    /// The records as etcd holds them (its JSON gateway, our client certificate).
    func rawRecords(_ etcd: EtcdFixture) throws -> [String: [UInt8]] {
        let r = try gateway(
            etcd, "/v3/kv/range",
            #"{"key":"\#(Base64.encode(Array("/vssm/".utf8)))","range_end":"\#(Base64.encode(Array("/vssm0".utf8)))"}"#)
        var out: [String: [UInt8]] = [:]
        if case .array(let kvs)? = r["kvs"] {
            for kv in kvs {
                if case .string(let k)? = kv["key"], case .string(let v)? = kv["value"] {
                    out[String(decoding: try Base64.decode(k), as: UTF8.self)] = try Base64.decode(v)
                }
            }
        }
        return out
    }

    func put(_ etcd: EtcdFixture, _ key: String, _ value: [UInt8]) throws {
        _ = try gateway(etcd, "/v3/kv/put", #"{"key":"\#(Base64.encode(Array(key.utf8)))","value":"\#(Base64.encode(value))"}"#)
    }

    func gateway(_ etcd: EtcdFixture, _ path: String, _ json: String) throws -> JSONValue {
        var cfg = TLSClientConfiguration(endpoints: [Endpoint(host: "127.0.0.1", port: etcd.port)])
        cfg.serverName = "etcd"
        cfg.trustPEM = try FileUtil.readFile(etcd.dir + "/ca.pem")
        cfg.clientCertificatePEM = try FileUtil.readFile(etcd.dir + "/client.pem")
        cfg.clientKeyPEM = try FileUtil.readFile(etcd.dir + "/client-key.pem")
        let r = try HTTPSClient(cfg).post(path, body: Array(json.utf8), idempotent: true)
        return try JSONParser.parse(r.body)
    }
}
