import Glibc
import Testing
import VSSMClient
import VSSMCrypto
import VSSMWire
@testable import VSSMServer
import VSSMTestSupport

/// The hash-chained audit trail (`audit.jsonl` in the state directory): one record per request
/// naming the principal, and `ext/audit` (`vssm admin logs --verify`) finds any change.
@Suite(.serialized) struct AuditTrailTests {
    let pw = TestNode.password

    func trailFile(_ dir: String) -> String { dir + "/" + AuditTrail.fileName }

    func lines(_ path: String) throws -> [String] {
        String(decoding: try FileUtil.readFile(path), as: UTF8.self).split(separator: "\n").map(String.init)
    }

    /// Rewrites the file in place (same inode: the node keeps appending to it), as an intruder would.
    func write(_ path: String, _ lines: [String]) throws {
        let bytes = Array((lines.joined(separator: "\n") + "\n").utf8)
        let fd = open(path, O_WRONLY | O_TRUNC)
        #expect(fd >= 0)
        defer { close(fd) }
        #expect(bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count)
    }

    /// Signs a few times with key `ec` and returns the node's verdict.
    func exercise(_ n: TestNode, _ c: VSSMAPIClient, signs: Int) throws {
        for _ in 0..<signs {
            #expect(
                try n.post(c, Route.asymmetricSign, #"{"keyName":"ec","algorithm":"SHA256withECDSA","input":"\#(b64("data"))"}"#).0 == 200)
        }
    }

    /// A node with a state directory and the EC key `ec` (the caller stops it).
    func nodeWithKey(_ dir: String, limits: ServiceLimits = ServiceLimits()) throws -> (TestNode, VSSMAPIClient) {
        let n = try TestNode(stateDir: dir, limits: limits)
        let c = try n.client()
        try c.generateKey(password: pw, name: "ec", type: .asymmetric, spec: .ec, size: 256)
        return (n, c)
    }

    @Test func recordsNamePrincipalKeyMechanismAndVerify() throws {
        let dir = TestNode.tempDir()
        let (n, c) = try nodeWithKey(dir)
        defer { n.stop() }
        try exercise(n, c, signs: 3)
        let r = try c.audit(password: pw, key: "ec", verify: true)
        #expect(r.bool("enabled"))
        #expect(r.string("problem") == "")
        let records = r.objects("records")
        let signs = records.filter { $0.string("route") == Route.asymmetricSign }
        #expect(signs.count == 3)
        let fingerprint = Hex.encode(DigestAlgorithm.sha256.hash(TestNode.shared.pki.clientCertificateDER))
        for s in signs {
            #expect(s.string("principal").contains("CN="))
            #expect(s.string("fingerprint") == fingerprint)
            #expect(s.string("mechanism") == "SHA256withECDSA")
            #expect(s.int64("status") == 200)
            #expect(!s.string("request").isEmpty)
        }
        #expect(Set(signs.map { $0.string("request") }).count == 3, "one request ID each")
        // Filters: another key, a principal that is not there, a time after every record.
        #expect(try c.audit(password: pw, key: "other").objects("records").isEmpty)
        #expect(try c.audit(password: pw, principal: "CN=nobody").objects("records").isEmpty)
        #expect(try c.audit(password: pw, principal: fingerprint).objects("records").count >= 4)
        #expect(try c.audit(password: pw, since: "9999-01-01T00:00:00Z").objects("records").isEmpty)
        #expect(try c.audit(password: pw, limit: 2).objects("records").count == 2)
        // A wrong password reads nothing.
        #expect(try n.post(c, Route.extAudit, #"{"adminPassword":"wrong"}"#).0 == 403)
    }

    @Test func anEditedRemovedOrReorderedRecordIsFound() throws {
        let dir = TestNode.tempDir()
        let (n, c) = try nodeWithKey(dir)
        defer { n.stop() }
        try exercise(n, c, signs: 4)
        let path = trailFile(dir)
        #expect(try lines(path).count >= 5)
        #expect(try c.audit(password: pw, verify: true).string("problem") == "")
        /// Changes the file, asks for verification, then puts the file back as it was plus what the
        /// node appended meanwhile (the verification call is a record too).
        func tamper(_ change: ([String]) -> [String]) throws -> String {
            let current = try lines(path)
            let changed = change(current)
            try write(path, changed)
            let problem = try c.audit(password: pw, verify: true).string("problem")
            let appended = Array(try lines(path).dropFirst(changed.count))
            try write(path, current + appended)
            return problem
        }
        let edited = try tamper { l in
            var l = l
            l[2] = l[2].replacingFirst("\"key\":\"ec\"", with: "\"key\":\"ex\"")
            return l
        }
        #expect(edited.contains("line 3") && edited.contains("changed"), "\(edited)")
        let removed = try tamper { l in
            var l = l
            l.remove(at: 2)
            return l
        }
        #expect(removed.contains("line 3") && removed.contains("missing"), "\(removed)")
        let swapped = try tamper { l in
            var l = l
            l.swapAt(1, 2)
            return l
        }
        #expect(!swapped.isEmpty)
        // Put back: intact again, and the next request extends it.
        let before = try lines(path).count
        #expect(try c.audit(password: pw, verify: true).string("problem") == "")
        try exercise(n, c, signs: 1)
        #expect(try c.audit(password: pw, verify: true).string("problem") == "")
        #expect(try lines(path).count == before + 3, "two verifications and a signature")
        // The newest records cut off: the running node knows what it wrote last; and once a later
        // record exists, the chain shows the gap to any verifier.
        let all = try lines(path)
        try write(path, Array(all.dropLast(2)))
        let cut = try c.audit(password: pw, verify: true).string("problem")
        #expect(cut.contains("missing at the end"), "\(cut)")
        try exercise(n, c, signs: 1)
        let gap = try c.audit(password: pw, verify: true).string("problem")
        #expect(gap.contains("missing"), "\(gap)")
    }

    /// After a restart the chain goes on from the last record; at the size limit the file rotates
    /// and the chain runs across the files.
    @Test func chainSurvivesRestartAndRotation() throws {
        let dir = TestNode.tempDir()
        var limits = ServiceLimits()
        limits.auditFileBytes = 4096
        do {
            let (n, c) = try nodeWithKey(dir, limits: limits)
            defer { n.stop() }
            try exercise(n, c, signs: 3)
        }
        let n = try TestNode(stateDir: dir, limits: limits)
        defer { n.stop() }
        let c = try n.client()
        try exercise(n, c, signs: 20)
        #expect(access(trailFile(dir) + ".1", F_OK) == 0, "rotated at 4 KiB")
        let r = try c.audit(password: pw, verify: true, limit: 100_000)
        #expect(r.string("problem") == "")
        let seqs = r.objects("records").map { $0.uint64("seq") }
        #expect(seqs == Array(seqs.first!...(seqs.first! + UInt64(seqs.count) - 1)), "no gap across the restart and the rotation")
        #expect(r.uint64("chainStart") == 1, "nothing rotated away yet")
    }

    /// The anchor outside the chain (issue 20): cutting the newest records or emptying the file
    /// while the node is stopped, and deleting the oldest records of an unrotated trail, no longer
    /// pass `--verify`; a node started on such a trail says so.
    @Test func truncationWipeAndAHeadCutAreFound() throws {
        func verdict(_ dir: String) throws -> (problem: String, startup: [String]) {
            let n = try TestNode(stateDir: dir)
            defer { n.stop() }
            let c = try n.client()
            let problem = try c.audit(password: pw, verify: true).string("problem")
            return (problem, n.node.audit.lines.filter { $0.contains("Audit trail:") })
        }
        // The newest records cut while stopped.
        let cut = TestNode.tempDir()
        do { let (n, c) = try nodeWithKey(cut); defer { n.stop() }; try exercise(n, c, signs: 5) }
        let all = try lines(trailFile(cut))
        try write(trailFile(cut), Array(all.dropLast(2)))
        var (problem, startup) = try verdict(cut)
        #expect(startup.contains { $0.contains("were removed while the node was stopped") }, "\(startup)")
        #expect(problem.contains("missing"), "cut at the end: \(problem)")
        // The file emptied while stopped.
        let wiped = TestNode.tempDir()
        do { let (n, c) = try nodeWithKey(wiped); defer { n.stop() }; try exercise(n, c, signs: 3) }
        try write(trailFile(wiped), [])
        (problem, startup) = try verdict(wiped)
        #expect(startup.contains { $0.contains("were removed while the node was stopped") }, "\(startup)")
        #expect(!problem.isEmpty, "emptied: \(problem)")
        // The oldest records of an unrotated trail deleted (the node running).
        let head = TestNode.tempDir()
        let (n, c) = try nodeWithKey(head)
        defer { n.stop() }
        try exercise(n, c, signs: 4)
        let records = try lines(trailFile(head))
        try write(trailFile(head), Array(records.dropFirst(2)))
        let r = try c.audit(password: pw, verify: true)
        #expect(r.string("problem").contains("missing at the start"), "\(r.string("problem"))")
        // The anchor itself removed.
        unlink(head + "/audit.anchor")
        #expect(try c.audit(password: pw, verify: true).string("problem").contains("anchor"))
    }

    /// The trail and its anchor file put back together to an earlier copy (one host's files, while
    /// stopped): the file anchor agrees with the trail, but a head seen outside (the seq= and mac=
    /// of the newest AUDIT line in syslog, `--head`) does not.
    @Test func aTrailRolledBackWithItsAnchorIsFoundAgainstAnOutsideHead() throws {
        let dir = TestNode.tempDir()
        let anchor = dir + "/audit.anchor"
        var outside: (seq: UInt64, mac: String) = (0, "")
        do {
            let (n, c) = try nodeWithKey(dir)
            defer { n.stop() }
            try exercise(n, c, signs: 2)
            let earlyTrail = try FileUtil.readFile(trailFile(dir)), earlyAnchor = try FileUtil.readFile(anchor)
            try exercise(n, c, signs: 3)
            outside = try #require(n.node.auditTrail.withLock { $0 }).head
            n.stop()
            try FileUtil.writeAtomically(path: trailFile(dir), bytes: earlyTrail, mode: 0o600)
            try FileUtil.writeAtomically(path: anchor, bytes: earlyAnchor, mode: 0o600)
        }
        let n = try TestNode(stateDir: dir)
        defer { n.stop() }
        let c = try n.client()
        #expect(try c.audit(password: pw, verify: true).string("problem").isEmpty, "the file anchor alone cannot tell")
        let problem = try c.audit(password: pw, verify: true, head: "\(outside.seq):\(outside.mac)").string("problem")
        #expect(problem.contains("missing at the end") && problem.contains("seen outside the trail"), "\(problem)")
        // A head that is in the trail passes; one whose MAC differs is a replaced record.
        let inTrail = try #require(n.node.auditTrail.withLock { $0 }).head
        #expect(try c.audit(password: pw, verify: true, head: "\(inTrail.seq):\(inTrail.mac)").string("problem").isEmpty)
        let forged = "\(inTrail.seq):" + String(repeating: "0", count: 64)
        #expect(try c.audit(password: pw, verify: true, head: forged).string("problem").contains("replaced"))
        #expect(throws: ClientError.self) { try c.audit(password: pw, verify: true, head: "x:y") }
    }

    /// A node without a state directory keeps no trail and says so.
    @Test func memoryOnlyNodeHasNoTrail() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        #expect(try c.audit(password: pw, verify: true).bool("enabled") == false)
    }
}

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        var s = self
        if let r = s.firstRange(of: target) { s.replaceSubrange(r, with: replacement) }
        return s
    }
}
