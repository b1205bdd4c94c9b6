import Testing
import VSSMClient
import VSSMCrypto
import VSSMServer
import VSSMTestSupport
import VSSMWire

@Suite struct ClientTests {
    /// A failing identity load (wrong passphrase, mismatched key) is an error, never a crash:
    /// the context is freed exactly once (regression: double free on a wrong PIN).
    @Test func badIdentitiesAreErrorsNotCrashes() throws {
        let pki = TestNode.shared.pki
        let key = try PrivateKey(pem: Array(pki.clientKeyPEM.utf8))
        var cfg = TLSClientConfiguration(endpoints: [Endpoint(host: "127.0.0.1", port: 9)])
        cfg.trustPEM = Array(X509Info.pem(certificates: [pki.rpcCertificateDER]).utf8)
        cfg.clientCertificatePEM = Array(X509Info.pem(certificates: [pki.clientCertificateDER]).utf8)
        cfg.clientKeyPEM = Array(X509Info.pem(der: key.pkcs8DER, label: "PRIVATE KEY").utf8)
        cfg.clientKeyPassphrase = nil
        #expect(throws: Never.self) { _ = try HTTPSClient(cfg) }
        let other = try PrivateKey.generateEC(.p256)
        cfg.clientKeyPEM = Array(X509Info.pem(der: other.pkcs8DER, label: "PRIVATE KEY").utf8)
        for _ in 0..<20 {
            #expect(throws: ClientError.configuration("client key does not match the client certificate")) { _ = try HTTPSClient(cfg) }
        }
        cfg.trustPEM = Array("not a certificate".utf8)
        #expect(throws: ClientError.configuration("no certificate found in the CA file")) { _ = try HTTPSClient(cfg) }
        #expect(throws: ClientError.configuration("no endpoints configured")) { _ = try HTTPSClient(TLSClientConfiguration(endpoints: [])) }
    }

    @Test func endpointsParse() {
        #expect(Endpoint("https://127.0.0.1:8080/") == Endpoint(host: "127.0.0.1", port: 8080))
        #expect(Endpoint("[::1]:443") == Endpoint(host: "::1", port: 443))
        #expect(Endpoint("host") == nil)
        #expect(Endpoint("host:99999") == nil)
    }

    /// Keep-alive pooling: many requests, one TLS connection; a dead first endpoint fails over.
    @Test func poolsConnectionsAndFailsOver() throws {
        let n = try TestNode()
        defer { n.stop() }
        var cfg = n.clientConfig()
        cfg.endpoints = [Endpoint(host: "127.0.0.1", port: 1), Endpoint(host: "127.0.0.1", port: n.ports[.api] ?? 0)]
        let c = try VSSMAPIClient(cfg)
        for _ in 0..<50 {
            let r = try c.raw(Route.extCapabilities, body: Array("{}".utf8), idempotent: true)
            #expect(r.status == 200)
        }
        #expect(c.http.stats.connectCount == 1, "one TLS connection for 50 requests")
        #expect(c.http.stats.requestCount >= 50)
    }
}
