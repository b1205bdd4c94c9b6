import Glibc
import Testing
import VSSMCrypto
import VSSMSync
import VSSMWire

@testable import VSSMServer

/// `NodeAudit` on its own (issue 21: the node's audit split out of `KeyServiceNode`): every answered
/// request is one chained record naming who, which route, key and mechanism and the status; a
/// burst of refused joins is one aggregate record; nothing without a trail but the log ring.
@Suite struct NodeAuditTests {
    @Test func recordsAreChainedAndRefusedJoinsAggregated() throws {
        let dir = "/tmp/vssm-nodeaudit-\(getpid())-\(Monotonic.ns())"
        mkdir(dir, 0o700)
        defer { _ = system("rm -rf '\(dir)'") }
        let log = AuditLog(echo: false)
        let auditing = NodeAudit(audit: log, metrics: ServiceMetrics(knownRoutes: []), syslog: false, stateDirectory: dir)
        var ctx = RequestContext(listener: .api, clientSubject: "CN=alice", peer: "127.0.0.1:5000", authenticated: true)
        ctx.requestID = "r-1"
        // Before the trail is open: the log ring only.
        auditing.record(
            path: Route.asymmetricSign, body: Array(#"{"keyName":"early","algorithm":"SHA256withECDSA"}"#.utf8), context: ctx, status: 200)
        #expect(log.lines.contains { $0.contains("key=\"early\"") })
        let trail = try AuditTrail(directory: dir, rpcKey: try PrivateKey.generateEC(.p256))
        auditing.trail.withLock { $0 = trail }
        auditing.record(
            path: Route.asymmetricSign, body: Array(#"{"keyName":"ca-root","algorithm":"SHA3-256withRSA"}"#.utf8), context: ctx, status: 200
        )
        let refused = RequestContext(listener: .bootstrapSlave, clientSubject: "CN=stranger", peer: "10.0.0.9:4444")
        for _ in 0..<30 { auditing.record(path: Route.extJoin, body: [], context: refused, status: 403) }
        let v = trail.verify()
        #expect(v.problem == nil && v.checked == 2, "one request record and one aggregate: \(v.checked), \(v.problem ?? "")")
        let first = try #require(v.records.first)
        #expect(
            first["key"] == .string("ca-root") && first["mechanism"] == .string("SHA3-256withRSA")
                && first["principal"] == .string("CN=alice"))
        #expect(first["status"] == .number("200") && first["route"] == .string(Route.asymmetricSign))
        let aggregate = try #require(v.records.last)
        #expect(aggregate["mechanism"] == .string("1 refused join attempt(s) from 10.0.0.9"), "\(aggregate)")
    }
}
