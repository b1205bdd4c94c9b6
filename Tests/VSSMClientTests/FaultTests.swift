import Glibc
import Testing
import VSSMClient
import VSSMServiceAdapter
import TokenCore
import VSSMCrypto
import VSSMServer
import VSSMTestSupport
import VSSMWire

/// The client against services that misbehave: hostile answers are errors (never a trap in the
/// host), and a hung endpoint costs at most one timeout before failover.
@Suite struct FaultTests {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    func config(_ ports: [Int], connectMs: Int = 500, requestMs: Int = 800) -> TLSClientConfiguration {
        let pki = TestNode.shared.pki
        var cfg = TLSClientConfiguration(endpoints: ports.map { Endpoint(host: "127.0.0.1", port: $0) })
        cfg.trustPEM = Array(X509Info.pem(certificates: [pki.rpcCertificateDER]).utf8)
        cfg.clientCertificatePEM = Array(X509Info.pem(certificates: [pki.clientCertificateDER]).utf8)
        cfg.clientKeyPEM = Array(pki.clientKeyPEM.utf8)
        cfg.connectTimeoutMs = connectMs
        cfg.requestTimeoutMs = requestMs
        return cfg
    }

    /// Regression: `Content-Length: -5` became a negative slice bound (SIGILL in the host).
    @Test func hostileLengthsAreProtocolErrors() throws {
        for reply in [
            "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nabc",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabc\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\nabc\r\n0\r\n\r\n",
        ] {
            let s = try HostileServer(.reply(Array(reply.utf8)))
            defer { s.stop() }
            let c = try HTTPSClient(config([s.port]))
            #expect(throws: ClientError.self, "\(reply)") { _ = try c.post("/x", body: [], idempotent: true) }
        }
    }

    /// A streamed answer (etcd's watch) is handed over line by line whatever its chunking: lines
    /// split across chunks, several in one chunk, blank ones; a line over the bound, a hostile
    /// chunk size or a truncated chunk are protocol errors; another status is an `.http` error.
    @Test func streamedLinesSurviveAnyChunking() throws {
        func lines(_ reply: String, maxLine: Int = 64) throws(ClientError) -> [String] {
            let s = try? HostileServer(.reply(Array(reply.utf8)))
            guard let s else { throw .connect("no server") }
            defer { s.stop() }
            var seen: [String] = []
            try HTTPSClient(config([s.port])).postStreaming(
                "/v3/watch", body: [], idleTimeoutMs: 2_000, maxLineBytes: maxLine, handle: LongPollHandle()
            ) { (line: [UInt8]) throws(ClientError) -> Bool in
                seen.append(String(decoding: line, as: UTF8.self))
                return line != Array("stop".utf8)
            }
            return seen
        }
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        #expect(try lines(head + "3\r\n{\"a\r\n6\r\n\":1}\n{\r\n4\r\n}\n\nx\r\n2\r\ny\n\r\n0\r\n\r\n") == [#"{"a":1}"#, "{}", "", "xy"])
        #expect(try lines(head + "a\r\none\nstop\ntw\r\n0\r\n\r\n") == ["one", "stop"], "onLine can end the stream")
        #expect(try lines("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nab\ncd\nef") == ["ab", "cd"])
        for hostile in [
            head + "40\r\n" + String(repeating: "z", count: 64) + "\r\n1\r\n\n\r\n0\r\n\r\n",
            head + "7fffffffffffffff\r\nabc\r\n0\r\n\r\n", head + "-1\r\nabc\r\n", head + "10\r\nabc",
        ] {
            #expect(throws: ClientError.self, "\(hostile.prefix(80))") { _ = try lines(hostile, maxLine: 63) }
        }
        do {
            _ = try lines("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found")
            Issue.record("a 404 streamed")
        } catch {
            guard case .http(let status, let message) = error else { Issue.record("\(error)"); return }
            #expect(status == 404 && message == "not found")
        }
    }

    /// The response head is parsed as bytes: header names in any case, blanks around values,
    /// a status line without a reason; malformed status lines are protocol errors.
    @Test func responseHeadsAreReadAsHTTPAllows() throws {
        let good: [(String, Int, String)] = [
            ("HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh:\t 3 \r\nX-Other: a:b\r\n\r\nabc", 200, "abc"),
            ("HTTP/1.1 404\r\nContent-Length: 2\r\nConnection: Close\r\n\r\nno", 404, "no"),
            ("HTTP/1.0 500 Internal Server Error\r\nContent-Length: 1\r\n\r\nx", 500, "x"),
            ("HTTP/1.1 200 OK\nContent-Length: 2\n\r\n\r\nhi", 200, "hi"),
        ]
        for (reply, status, body) in good {
            let s = try HostileServer(.reply(Array(reply.utf8)))
            defer { s.stop() }
            let c = try HTTPSClient(config([s.port]))
            let r = try c.post("/x", body: [], idempotent: true)
            #expect(r.status == status && r.text == body, "\(reply)")
        }
        for reply in [
            "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 2000\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
        ] {
            let s = try HostileServer(.reply(Array(reply.utf8)))
            defer { s.stop() }
            let c = try HTTPSClient(config([s.port]))
            #expect(throws: ClientError.self, "\(reply)") { _ = try c.post("/x", body: [], idempotent: true) }
        }
    }

    /// A node that accepts TCP but never completes the handshake (SIGSTOP) costs the connect
    /// timeout, not the request timeout, and is then skipped.
    /// Round-robin spreads calls over every endpoint; ordered keeps them on the one that answered;
    /// with round-robin a dead endpoint is skipped and no call fails.
    @Test func roundRobinSpreadsCallsAndSkipsADeadEndpoint() throws {
        let a = try TestNode(), b = try TestNode()
        defer { a.stop(); b.stop() }
        func served(_ n: TestNode) -> Int { n.node.audit.lines.filter { $0.contains("endpoint=\(Route.extCapabilities)") }.count }
        var cfg = config([a.ports[.api] ?? 0, b.ports[.api] ?? 0])
        cfg.order = .roundRobin
        let rr = try HTTPSClient(cfg)
        for _ in 0..<10 { #expect(try rr.post(Route.extCapabilities, body: Array("{}".utf8), idempotent: true).status == 200) }
        #expect(served(a) == 5 && served(b) == 5, "\(served(a)) / \(served(b))")
        let ordered = try HTTPSClient(config([a.ports[.api] ?? 0, b.ports[.api] ?? 0]))
        for _ in 0..<10 { _ = try ordered.post(Route.extCapabilities, body: Array("{}".utf8), idempotent: true) }
        #expect(served(a) == 15 && served(b) == 5, "ordered stays on the first: \(served(a)) / \(served(b))")
        // A dead endpoint (nothing listens) among live ones.
        let dead = try HostileServer(.silent)
        let deadPort = dead.port
        dead.stop()
        var withDead = config([deadPort, a.ports[.api] ?? 0, b.ports[.api] ?? 0])
        withDead.order = .roundRobin
        let c = try HTTPSClient(withDead)
        for _ in 0..<9 { #expect(try c.post(Route.extCapabilities, body: Array("{}".utf8), idempotent: true).status == 200) }
        #expect(served(a) + served(b) == 29)
        #expect(served(a) > 15 && served(b) > 5, "both live nodes took calls")
    }

    @Test func hungHandshakeFailsOverWithinTheConnectTimeout() throws {
        let hung = try HostileServer(.unaccepted)
        defer { hung.stop() }
        let n = try TestNode()
        defer { n.stop() }
        let c = try HTTPSClient(config([hung.port, n.ports[.api] ?? 0], connectMs: 400, requestMs: 5000))
        let t0 = FaultTests.now()
        #expect(try c.post(Route.extCapabilities, body: Array("{}".utf8), idempotent: true).status == 200)
        let first = FaultTests.now() - t0
        #expect(first < 2.0, "first call took \(first) s")
        let t1 = FaultTests.now()
        for _ in 0..<5 { _ = try c.post(Route.extCapabilities, body: Array("{}".utf8), idempotent: true) }
        #expect(FaultTests.now() - t1 < 1.0, "the hung endpoint is skipped once marked bad")
    }

    /// A pooled connection to a node that stops answering: one request timeout, then the next
    /// endpoint; no second pooled connection to the hung node is tried.
    @Test func silentNodeCostsOneRequestTimeout() throws {
        let silent = try HostileServer(.silent)
        defer { silent.stop() }
        let n = try TestNode()
        defer { n.stop() }
        let c = try HTTPSClient(config([silent.port, n.ports[.api] ?? 0], connectMs: 500, requestMs: 700))
        let t0 = FaultTests.now()
        #expect(try c.post(Route.extCapabilities, body: Array("{}".utf8), idempotent: true).status == 200)
        let took = FaultTests.now() - t0
        #expect(took >= 0.6 && took < 2.0, "took \(took) s")
        // Non-idempotent calls are never sent twice: against only the silent node it fails after one timeout.
        let only = try HTTPSClient(config([silent.port], connectMs: 500, requestMs: 500))
        let t1 = FaultTests.now()
        #expect(throws: ClientError.self) { _ = try only.post("/x", body: [], idempotent: false) }
        #expect(FaultTests.now() - t1 < 1.5)
    }

    /// Every endpoint is tried for idempotent calls: two dead of three still succeeds.
    @Test func twoOfThreeEndpointsDead() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try HTTPSClient(config([1, 2, n.ports[.api] ?? 0]))
        for _ in 0..<10 {
            #expect(try c.post(Route.extCapabilities, body: Array("{}".utf8), idempotent: true).status == 200)
        }
    }
}

/// A listing from a hostile service: lengths beyond any key size are left out, never converted
/// with a trap (regression: `keyLength` above Int.max killed the host).
@Suite struct HostileListingTests {
    static func http(_ body: String) -> [UInt8] {
        Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
    }

    @Test func hugeKeyLengthsAreLeftOut() throws {
        let listing =
            #"{"keys":[{"name":"huge","keyType":"SYMMETRIC","keyLength":"18446744073709551615"},"#
            + #"{"name":"big","keyType":"MAC","keyLength":"9223372036854775807"},{"name":"fine","keyType":"SYMMETRIC","keyLength":"16"}]}"#
        let s = try HostileServer(
            .byPath([
                (Route.extCapabilities, HostileListingTests.http(#"{"version":"1","features":["listkeys"]}"#)),
                (Route.extListKeys, HostileListingTests.http(listing)),
            ]))
        defer { s.stop() }
        let svc = try VSSMKeyService(FaultTests().config([s.port]))
        let l = try svc.list(adminPassword: nil, owner: nil)
        #expect(l.keys.map(\.name) == ["fine"])
    }
}

@Suite struct DEREncodingTests {
    /// Regression: OCTET STRING lengths of 65536 bytes and more trapped (two-byte form only).
    @Test func octetStringsOfAnyLength() {
        for n in [0, 127, 128, 255, 256, 65535, 65536, 70000, 1 << 20] {
            let bytes = [UInt8](repeating: 0xAB, count: n)
            #expect(DER.unwrapOctetString(DER.octetString(bytes)) == bytes, "\(n)")
        }
    }
}

/// Against a node that answers like the original Go VSSM (every error HTTP 500 with Go's message),
/// the adapter classifies the message: a wrong admin password is still CKR_PIN_INCORRECT's error,
/// bad ciphertexts and tags are the caller's input (400), an unknown key is 404.
@Suite struct GoStyleErrorTests {
    @Test func goMessagesAreClassified() throws {
        let n = try TestNode(compatOnly: true, goStyleErrors: true)
        defer { n.stop() }
        let c = try n.client()
        #expect(try n.post(c, Route.generateKey, #"{"adminPassword":"wrong","keyName":"x","keyType":"SYMMETRIC","keySize":16}"#).0 == 500)
        #expect(
            try n.post(
                c, Route.generateKey,
                #"{"adminPassword":"\#(TestNode.password)","keyName":"rsa","keyType":"ASYMMETRIC","keySpec":"RSA","keySize":2048}"#
            ).0 == 200)
        #expect(
            try n.post(
                c, Route.generateKey, #"{"adminPassword":"\#(TestNode.password)","keyName":"aes","keyType":"SYMMETRIC","keySize":16}"#
            ).0 == 200)
        #expect(try n.post(c, "/REST/v1/nothing", "{}").0 == 404, "only an unknown path is a 404")
        let svc = try VSSMKeyService(FaultTests().config([n.ports[.api] ?? 0], requestMs: 10_000))
        #expect(try svc.hasExtensions() == false)
        #expect(throws: TokenError.adminPasswordRejected) { try svc.verifyAdminPassword("wrong", asSO: false) }
        #expect(throws: TokenError.device("crypto/rsa: decryption error", status: 400)) {
            _ = try svc.decrypt(key: "rsa", .rsaPKCS1, [UInt8](repeating: 7, count: 256))
        }
        #expect(throws: TokenError.device("cipher: message authentication failed", status: 400)) {
            _ = try svc.symmetric(
                encrypt: false, key: "aes", SymmetricScheme("AES", .gcm(iv: [UInt8](repeating: 1, count: 12), aad: [], tagLength: 16)),
                [UInt8](repeating: 1, count: 28))
        }
        #expect(throws: TokenError.device("Invalid key name: nope", status: 404)) {
            _ = try svc.sign(key: "nope", .ecdsa(.sha256), [UInt8](repeating: 0, count: 32))
        }
    }
}

/// The operator's per-client request rate (issue 20): the service answers 429 with Retry-After
/// beyond it, for that client only; the adapter then holds the whole client back until then
/// (nothing is sent) and reports `rateLimited` (the module's CKR_VSSM_RATE_LIMITED).
@Suite struct RateLimitTests {
    @Test func overTheRateOneClientWaitsAndOthersDoNot() throws {
        let n = try TestNode(requestsPerSecondPerClient: 5)
        defer { n.stop() }
        try n.client().generateKey(password: TestNode.password, name: "ec", type: .asymmetric, spec: .ec, size: 256)
        usleep(1_100_000)
        let svc = try VSSMKeyService(FaultTests().config([n.ports[.api] ?? 0], requestMs: 10_000))
        var limited: TokenError?
        for _ in 0..<20 {
            do { _ = try svc.sign(key: "ec", .ecdsa(.sha256), [UInt8](repeating: 1, count: 32)) } catch {
                limited = error
                break
            }
        }
        guard case .rateLimited(let message)? = limited else { Issue.record("no rate limit: \(String(describing: limited))"); return }
        #expect(message.contains("5 requests per second"))
        let sent = svc.requestCount
        #expect(throws: TokenError.self) {
            _ = try svc.sign(key: "ec", .ecdsa(.sha256), [UInt8](repeating: 1, count: 32))
        }
        #expect(svc.requestCount == sent, "held back locally: nothing sent while Retry-After runs")
        // Another client certificate is not limited by this one's rate.
        let pki = TestNode.shared.pki
        let other = try DevPKI.issueClient(name: "other", caCertificateDER: pki.clientCACertificateDER, caKeyPEM: pki.clientCAKeyPEM)
        let c = try VSSMAPIClient(n.clientConfig(certDER: other.der, keyPEM: other.keyPEM))
        #expect(try n.post(c, Route.asymmetricSign, #"{"keyName":"ec","algorithm":"SHA256withECDSA","input":"AAAA"}"#).0 == 200)
        // After Retry-After the first client signs again.
        usleep(2_100_000)
        _ = try svc.sign(key: "ec", .ecdsa(.sha256), [UInt8](repeating: 1, count: 32))
    }
}
