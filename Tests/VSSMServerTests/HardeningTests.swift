import VSSMSync
import Glibc
import Testing
import VSSMClient
import VSSMCrypto
import VSSMWire
@testable import VSSMServer
import VSSMTestSupport

/// Hostile connections and slow faults (issue 9): each test fails without its fix.
@Suite struct HardeningTests {
    let pw = TestNode.password

    /// A raw TCP socket to a listener (never sends unless told).
    static func tcp(_ port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    /// Reads until EOF (or the 5 s receive timeout); returns what came and whether EOF was seen.
    static func drain(_ fd: Int32) -> (String, closed: Bool) {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n == 0 { return (String(decoding: out, as: UTF8.self), true) }
            if n < 0 { return (String(decoding: out, as: UTF8.self), false) }
            out += buf.prefix(n)
        }
    }

    static func send(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }

    /// Critical: a connection accepted while bootstrapping (no client certificate asked then) is
    /// refused once the node runs, although it stayed open; a new connection with a certificate works.
    @Test func bootstrapWindowConnectionIsRefusedAfterBootstrap() throws {
        let n = try TestNode(bootstrap: false)
        defer { n.stop() }
        var cfg = n.clientConfig()
        cfg.trustPEM = nil  // the bootstrap certificate is self-signed; the attacker does not care
        cfg.clientCertificatePEM = nil
        cfg.clientKeyPEM = nil
        let early = try VSSMAPIClient(cfg)
        let r0 = try early.raw(Route.extCapabilities, body: Array("{}".utf8), idempotent: true)
        #expect(r0.status == 503)
        try n.node.bootstrap(rpcPrivateKeyPKCS8: TestNode.rpcPKCS8)
        let r1 = try early.raw(Route.listKeys, body: Array(#"{"adminPassword":"\#(pw)"}"#.utf8), idempotent: true)
        #expect(r1.status == 401, "\(r1.status) \(r1.text)")
        #expect(early.http.stats.connectCount == 1, "the refused request went over the bootstrap-window connection")
        #expect(n.node.audit.lines.contains { $0.contains("client=\"-\"") && $0.contains("status=401") })
        // A client with a certificate on a fresh connection is served.
        let good = try n.client()
        #expect(try good.raw(Route.extCapabilities, body: Array("{}".utf8), idempotent: true).status == 200)
    }

    /// Unauthenticated listeners buffer at most 64 KiB per request; the 413 comes before the body ends.
    @Test func unauthenticatedBodiesAreSmall() throws {
        let n = try TestNode()
        defer { n.stop() }
        let fd = HardeningTests.tcp(n.ports[.health] ?? 0)
        defer { close(fd) }
        HardeningTests.send(fd, "POST /REST/v1/healthcheck HTTP/1.1\r\nHost: x\r\nContent-Length: 16000000\r\n\r\nabc")
        let (answer, closed) = HardeningTests.drain(fd)
        #expect(answer.hasPrefix("HTTP/1.1 413"), "\(answer)")
        #expect(closed)
    }

    /// A request the HTTP parser rejects gets 400 with `Connection: close`, and the connection closes.
    @Test func protocolErrorClosesTheConnection() throws {
        let n = try TestNode()
        defer { n.stop() }
        let fd = HardeningTests.tcp(n.ports[.health] ?? 0)
        defer { close(fd) }
        HardeningTests.send(fd, "GARBAGE \u{1}\u{2} NOT HTTP\r\n\r\n")
        let (answer, closed) = HardeningTests.drain(fd)
        #expect(answer.hasPrefix("HTTP/1.1 400"))
        #expect(closed)
    }

    /// Idle sockets that never send a byte are closed after the handshake timeout, and at the
    /// connection cap the oldest of them makes room: a real client is still served.
    @Test func idleSocketsNeitherStayNorLockClientsOut() throws {
        var limits = ServiceLimits()
        limits.maxConnectionsAPI = 8
        limits.handshakeTimeoutMs = 1500
        let n = try TestNode(limits: limits)
        defer { n.stop() }
        let port = n.ports[.api] ?? 0
        let idle = (0..<20).map { _ in HardeningTests.tcp(port) }
        defer { idle.forEach { close($0) } }
        usleep(200_000)
        #expect(n.listeners.openConnections(.api) <= 8)
        let c = try n.client()
        #expect(try c.raw(Route.extCapabilities, body: Array("{}".utf8), idempotent: true).status == 200)
        // The idle ones are gone after the handshake timeout.
        let (_, closed) = HardeningTests.drain(idle[19])
        #expect(closed, "an idle socket is closed by the server")
    }

    /// CKA_ID and labels are bounded: 413 before anything is stored.
    @Test func oversizeAttributesAreRefused() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        #expect(
            try n.post(c, Route.extGenerateKey, #"{"adminPassword":"\#(pw)","keyName":"k","keyType":"SYMMETRIC","keySize":16}"#).0 == 200)
        let bigID = b64([UInt8](repeating: 7, count: 10_000))
        #expect(
            try n.post(c, Route.extSetAttributes, #"{"adminPassword":"\#(pw)","keyName":"k","keyType":"SYMMETRIC","id":"\#(bigID)"}"#).0
                == 413)
        let bigLabel = String(repeating: "x", count: 5_000_000)
        #expect(
            try n.post(c, Route.extCreateObject, #"{"adminPassword":"\#(pw)","class":"DATA","label":"\#(bigLabel)","value":"AAAA"}"#).0
                == 413)
        #expect(n.node.snapshot.objects.isEmpty)
        #expect(n.node.snapshot.symmetric["k"]?.attributes.id == nil)
        let bigInput = b64([UInt8](repeating: 1, count: 9 << 20))
        #expect(try n.post(c, Route.symmetricEncrypt, #"{"keyName":"k","algorithm":"AES/GCM/NoPadding","input":"\#(bigInput)"}"#).0 == 413)
    }

    /// Filling the state to its cap ends in 413s; everything acknowledged is back after a restart.
    @Test func stateFilledToItsLimitStillRestarts() throws {
        let dir = TestNode.tempDir()
        var limits = ServiceLimits()
        limits.maxStateBytes = 256 << 10
        var acknowledged = 0
        do {
            let n = try TestNode(stateDir: dir, limits: limits)
            defer { n.stop() }
            let c = try n.client()
            let value = b64([UInt8](repeating: 9, count: 20_000))
            for _ in 0..<40 {
                let (s, _) = try n.post(
                    c, Route.extCreateObject, #"{"adminPassword":"\#(pw)","class":"DATA","label":"d","value":"\#(value)"}"#)
                if s == 200 { acknowledged += 1 } else { #expect(s == 413); break }
            }
            #expect(acknowledged > 5 && acknowledged < 40)
        }
        let again = try TestNode(stateDir: dir, limits: limits)
        defer { again.stop() }
        #expect(again.node.snapshot.objects.count == acknowledged)
    }

    /// One flipped bit in the newest sealed file: the node loads the previous generation and says so.
    @Test func corruptNewestStateFallsBackToThePreviousGeneration() throws {
        let dir = TestNode.tempDir()
        do {
            let n = try TestNode(stateDir: dir)
            defer { n.stop() }
            let c = try n.client()
            try c.generateKey(password: pw, name: "first", type: .symmetric, size: 16)
            try c.generateKey(password: pw, name: "second", type: .symmetric, size: 16)
        }
        let path = dir + "/keystore.sealed"
        var bytes = try FileUtil.readFile(path)
        bytes[bytes.count / 2] ^= 0x01
        try FileUtil.writeAtomically(path: path, bytes: bytes, mode: 0o600)
        let n = try TestNode(stateDir: dir)
        defer { n.stop() }
        #expect(n.node.snapshot.symmetric["first"] != nil)
        #expect(n.node.snapshot.symmetric["second"] == nil, "written after the previous generation")
        #expect(n.node.audit.lines.contains { $0.contains("loaded the previous generation") })
    }

    /// Wrong admin passwords: three cost a scrypt each, then the identity waits (429, no scrypt),
    /// even with the right password, until the backoff has passed.
    @Test func passwordGuessingIsThrottledPerIdentity() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        var statuses: [Int] = []
        for _ in 0..<6 { statuses.append(try n.post(c, Route.listKeys, #"{"adminPassword":"wrong"}"#).0) }
        #expect(statuses == [403, 403, 403, 429, 429, 429])
        #expect(try n.post(c, Route.listKeys, #"{"adminPassword":"\#(pw)"}"#).0 == 429)
        sleep(2)
        #expect(try n.post(c, Route.listKeys, #"{"adminPassword":"\#(pw)"}"#).0 == 200)
        #expect(try n.post(c, Route.listKeys, #"{"adminPassword":"wrong"}"#).0 == 403, "a right password clears the record")
    }

    /// The admin password verified by scrypt is remembered (HMAC under a key of this process only)
    /// for 15 minutes: the next login skips scrypt; any other password still runs it and fails.
    @Test func verifiedPasswordSkipsScryptOnlyForTheSamePassword() throws {
        let hash = try PasswordHash(parsing: try PasswordHash.create(password: "right"))
        let cache = VerifiedPasswordCache()
        func timed(_ body: () -> Bool) -> (Bool, Int64) {
            let t0 = Monotonic.ms()
            let ok = body()
            return (ok, Monotonic.ms() - t0)
        }
        let first = timed { (try? hash.verify("right", cache: cache)) ?? false }
        let second = timed { (try? hash.verify("right", cache: cache)) ?? false }
        let wrong = timed { (try? hash.verify("wrong", cache: cache)) ?? false }
        #expect(first.0 && second.0 && !wrong.0)
        // scrypt with N = 32768, r = 8 takes tens of milliseconds; an HMAC takes microseconds.
        #expect(first.1 >= 10 && wrong.1 >= 10, "scrypt ran: \(first.1) ms, \(wrong.1) ms")
        #expect(second.1 < first.1 / 4, "remembered: \(second.1) ms vs \(first.1) ms")
        let now = Monotonic.ms()
        #expect(cache.contains("right", nowMs: now))
        #expect(!cache.contains("right", nowMs: now + VerifiedPasswordCache.lifetimeMs + 1), "expires")
        #expect(!VerifiedPasswordCache().contains("right", nowMs: now), "per process: a new cache knows nothing")
    }

    /// A newline in a label or key name cannot start a forged record.
    @Test func auditRecordsCannotBeForged() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        let forged = #"x\n[2026-01-01T00:00:00Z] VSSMServer/KeyServiceNode.swift:1, INFO: AUDIT client=\"CN=admin\" forged"#
        #expect(
            try n.post(c, Route.extCreateObject, #"{"adminPassword":"\#(pw)","class":"DATA","label":"\#(forged)","value":"AAAA"}"#).0 == 200
        )
        let lines = n.node.audit.lines
        #expect(!lines.contains { $0.contains("\n") })
        #expect(lines.filter { $0.contains("forged") }.allSatisfy { $0.contains("object labelled x\\n[") })
    }

    /// Keys from a peer pass the creation checks: no 0-byte AES key, no createdAt in the far future.
    @Test func syncRefusesKeysThatCouldNotBeCreated() throws {
        let n = try TestNode()
        defer { n.stop() }
        var incoming = KeyState()
        incoming.symmetric["empty"] = SecretKeyEntry(name: "empty", createdAt: 1, key: [])
        incoming.symmetric["forever"] = SecretKeyEntry(name: "forever", createdAt: .max, key: [UInt8](repeating: 1, count: 16))
        incoming.symmetric["fine"] = SecretKeyEntry(name: "fine", createdAt: 1, key: [UInt8](repeating: 2, count: 16))
        var decoded = StateCodec.Decoded()
        decoded.state = incoming
        try n.node.absorb(decoded, from: "test")
        #expect(Set(n.node.snapshot.symmetric.keys) == ["fine"])
    }

    /// The limits table reads and writes `config.json`; values out of range name the field.
    @Test func limitsRoundTripThroughConfig() throws {
        var cfg = ServerConfig(
            rpcCertificate: TestNode.shared.pki.rpcCertificateDER,
            clientTrustStore: [TestNode.shared.pki.clientCACertificateDER], rootPassword: TestNode.shared.hash)
        cfg.limits.maxConnectionsAPI = 7
        cfg.limits.minStoredRSABits = 1024
        let parsed = try ServerConfig(json: cfg.json)
        #expect(parsed.limits == cfg.limits)
        let text = String(decoding: cfg.json, as: UTF8.self)
        #expect(text.contains(#""minStoredRSABits": "1024""#))
        let bad = Array(text.replacing(#""minStoredRSABits": "1024""#, with: #""minStoredRSABits": "512""#).utf8)
        let line =
            text.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("minStoredRSABits") }.map { $0 + 1 } ?? 0
        #expect(
            throws: ServiceError.badRequest(
                "config.json:\(line):5: limits.minStoredRSABits: must be an integer from 1024 to 4096, not the string \"512\"")
        ) {
            _ = try ServerConfig(json: bad)
        }
    }
}
