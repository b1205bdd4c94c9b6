import Testing
import VSSMClient
import VSSMCrypto
import VSSMWire
@testable import VSSMServer
import VSSMTestSupport

/// k-of-n bootstrap: shares of the RPC key sent one by one (no client certificate, as the
/// original's bootstrap call); the node runs once the threshold is in, not before.
@Suite struct BootstrapShareTests {
    func bootstrapClient(_ n: TestNode) throws -> VSSMAPIClient {
        try VSSMAPIClient(TLSClientConfiguration(endpoints: [Endpoint(host: "127.0.0.1", port: n.ports[.api] ?? 0)]))
    }

    func send(_ c: VSSMAPIClient, _ share: RPCKeyShare) throws -> (Int, String) {
        let r = try c.raw(Route.extBootstrapShare, body: share.json, idempotent: false)
        return (r.status, r.text)
    }

    @Test func thresholdSharesBootstrapAndFewerDoNot() throws {
        let n = try TestNode(bootstrap: false)
        defer { n.stop() }
        let c = try bootstrapClient(n)
        let cert = TestNode.shared.pki.rpcCertificateDER
        let shares = try RPCKeyShare.split(
            rpcKey: TestNode.rpcPKCS8, certificateDER: cert, threshold: 3, count: 5,
            labels: ["alice", "bob", "carol", "dave", "erin"])
        #expect(shares.map(\.label) == ["alice", "bob", "carol", "dave", "erin"])
        // Parsed back from its file form, a share is equal to itself; a changed byte is refused.
        #expect(try RPCKeyShare(json: shares[0].json) == shares[0])
        let edited = String(decoding: shares[1].json, as: UTF8.self).replacingFirst("\"index\":\"2\"", with: "\"index\":\"3\"")
        #expect(edited != String(decoding: shares[1].json, as: UTF8.self))
        #expect(throws: ServiceError.self) { try RPCKeyShare(json: Array(edited.utf8)) }

        let first = try send(c, shares[0])
        #expect(first.0 == 200 && first.1.contains("\"received\":\"1\""), "\(first)")
        #expect(try send(c, shares[0]).0 == 400, "the same share twice")
        // A share of another split waits beside this one's, it does not shut it out.
        let other = try RPCKeyShare.split(rpcKey: TestNode.rpcPKCS8, certificateDER: cert, threshold: 3, count: 5, labels: [])
        #expect(try send(c, other[1]).0 == 200)
        // A damaged file (checksum) is refused by the node too.
        var raw = String(decoding: shares[1].json, as: UTF8.self)
        raw = raw.replacingFirst("\"label\":\"bob\"", with: "\"label\":\"bobby\"")
        #expect(try c.raw(Route.extBootstrapShare, body: Array(raw.utf8), idempotent: false).text.contains("damaged"))
        #expect(try send(c, shares[3]).0 == 200)
        #expect(!n.node.isRunning, "two of three")
        let last = try send(c, shares[4])
        #expect(last.0 == 200 && last.1.contains("\"running\":true"), "\(last)")
        #expect(n.node.isRunning)
        // Once running, shares are refused (the route needs the mTLS identity then, too).
        let running = try n.client()
        #expect(try n.post(running, Route.extBootstrapShare, String(decoding: shares[2].json, as: UTF8.self)).0 == 400)
    }

    /// Shares of a key that is not the RPC key combine to a key the node refuses; it stays
    /// bootstrapping and takes a correct set afterwards.
    @Test func sharesOfAnotherKeyAreRefused() throws {
        let n = try TestNode(bootstrap: false)
        defer { n.stop() }
        let c = try bootstrapClient(n)
        let cert = TestNode.shared.pki.rpcCertificateDER
        let stranger = try PrivateKey.generateRSA(bits: 2048).pkcs8DER
        let wrong = try RPCKeyShare.split(rpcKey: stranger, certificateDER: cert, threshold: 2, count: 2, labels: [])
        #expect(try send(c, wrong[0]).0 == 200)
        let refused = try send(c, wrong[1])
        #expect(refused.0 == 400 && refused.1.contains("do not give the RPC key"), "\(refused)")
        #expect(!n.node.isRunning)
        let right = try RPCKeyShare.split(rpcKey: TestNode.rpcPKCS8, certificateDER: cert, threshold: 2, count: 3, labels: [])
        #expect(try send(c, right[2]).0 == 200)
        #expect(try send(c, right[0]).1.contains("\"running\":true"))
        #expect(n.node.isRunning)
    }

    /// A made-up share cannot block a ceremony (issue 20): one with the real split's set and an
    /// index a holder has, sent first, and one of a made-up split; the holders' shares still
    /// bootstrap the node.
    @Test func forgedSharesDoNotBlockTheHolders() throws {
        let n = try TestNode(bootstrap: false)
        defer { n.stop() }
        let c = try bootstrapClient(n)
        let cert = TestNode.shared.pki.rpcCertificateDER
        let real = try RPCKeyShare.split(rpcKey: TestNode.rpcPKCS8, certificateDER: cert, threshold: 3, count: 5, labels: [])
        var forged = real[0]
        forged.data = SecureRandom.bytes(real[0].data.count)
        forged.label = "mallory"
        let forgedSet = RPCKeyShare(
            set: "made-up", label: "x", index: 2, threshold: 3, count: 5,
            certificateSHA256: real[0].certificateSHA256, data: SecureRandom.bytes(64))
        #expect(try send(c, forged).0 == 200)
        #expect(try send(c, forgedSet).0 == 200)
        #expect(try send(c, real[0]).0 == 200, "the real share 1 is taken beside the forged one")
        #expect(try send(c, real[1]).0 == 200)
        let last = try send(c, real[2])
        #expect(last.0 == 200 && last.1.contains("\"running\":true"), "\(last)")
        #expect(n.node.isRunning)
    }
}
