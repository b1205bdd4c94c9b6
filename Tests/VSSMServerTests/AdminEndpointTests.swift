import Glibc
import Testing
import VSSMClient
import VSSMCrypto
import VSSMWire
@testable import VSSMServer
import VSSMTestSupport

@Suite struct AdminEndpointTests {
    let pw = TestNode.password

    @Test func emptyStoreListsLikeTheOriginal() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        let (s, body) = try n.post(c, Route.listKeys, #"{"adminPassword":"\#(pw)"}"#)
        #expect(s == 200 && body == #"{"symmetricKey":[],"asymmetricKey":[],"macKey":[]}"#)
    }

    @Test func wrongPasswordIsRefusedBeforeAnythingElse() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        // After three wrong passwords this identity is throttled (429, no scrypt): see HardeningTests.
        for (i, path) in [Route.generateKey, Route.injectKey, Route.listKeys, Route.generateBackup, Route.restoreBackup, Route.getLogs]
            .enumerated()
        {
            let (s, body) = try n.post(c, path, #"{"adminPassword":"wrong"}"#)
            if i < 3 {
                #expect(s == 403 && body == #"{"error":"Incorrect administrator password."}"#, "\(path)")
            } else {
                #expect(s == 429 && body.contains("Too many wrong passwords or PINs"), "\(path)")
            }
        }
    }

    @Test func generateKeyValidation() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        func gen(_ fields: String) throws -> (Int, String) {
            try n.post(c, Route.generateKey, #"{"adminPassword":"\#(pw)",\#(fields)}"#)
        }
        #expect(try gen(#""keyName":"a","keyType":"SYMMETRIC","keySize":16"#).0 == 200)
        #expect(try gen(#""keyName":"a","keyType":"SYMMETRIC","keySize":"32""#) == (409, #"{"error":"Key with name a already exists."}"#))
        #expect(try gen(#""key_name":"a","key_type":"MAC","key_size":32"#).0 == 200, "namespaces are per type")
        #expect(try gen(#""keyName":"","keyType":"SYMMETRIC","keySize":16"#) == (400, #"{"error":"Key name cannot be blank."}"#))
        #expect(try gen(#""keyName":"b","keyType":"symmetric","keySize":16"#) == (400, #"{"error":"Invalid key type: symmetric"}"#))
        #expect(
            try gen(#""keyName":"b","keyType":"ASYMMETRIC","keySpec":"DSA","keySize":2048"#) == (
                400, #"{"error":"Unsupported key spec: DSA"}"#
            ))
        #expect(
            try gen(#""keyName":"b","keyType":"ASYMMETRIC","keySpec":"EC","keySize":226"#) == (
                400, #"{"error":"Unsupported ECDSA key size: 226"}"#
            ))
        // Sizes the original accepted and broke on later, or crashed on.
        for bad in [
            #""keyType":"SYMMETRIC""#, #""keyType":"SYMMETRIC","keySize":7"#, #""keyType":"SYMMETRIC","keySize":"1099511627776""#,
            #""keyType":"SYMMETRIC","keySize":"18446744073709551615""#, #""keyType":"MAC","keySize":8"#,
            #""keyType":"MAC","keySize":"9223372036854775807""#, #""keyType":"ASYMMETRIC","keySpec":"RSA","keySize":16"#,
            #""keyType":"ASYMMETRIC","keySpec":"RSA""#, #""keyType":"ASYMMETRIC","keySpec":"RSA","keySize":16384"#,
        ] {
            let (s, body) = try gen(#""keyName":"bad",\#(bad)"#)
            #expect(s == 400, "\(bad) -> \(s) \(body)")
        }
        for (bits, curve) in [(224, NamedCurve.p224), (256, .p256), (384, .p384), (521, .p521)] {
            #expect(try gen(#""keyName":"ec\#(bits)","keyType":"ASYMMETRIC","keySpec":"EC","keySize":\#(bits)"#).0 == 200)
            #expect(n.node.snapshot.asymmetric["ec\(bits)"]?.key.curve == curve)
        }
        let list = try c.listKeys(password: pw)
        #expect(list.objects("asymmetricKey").map { $0.string("name") } == ["ec224", "ec256", "ec384", "ec521"])
        let one = try n.post(c, Route.listKeys, #"{"adminPassword":"\#(pw)","keyName":"a","keyType":"MAC"}"#)
        #expect(one.0 == 200 && one.1.hasPrefix(#"{"macKey":[{"name":"a","createdAt":""#) && one.1.hasSuffix(#"","keyLength":"32"}]}"#))
        #expect(
            try n.post(c, Route.listKeys, #"{"adminPassword":"\#(pw)","keyName":"zz","keyType":"MAC"}"#) == (
                404, #"{"error":"No key by that name exists."}"#
            ))
        #expect(
            try n.post(c, Route.listKeys, #"{"adminPassword":"\#(pw)","keyName":"a"}"#) == (400, #"{"error":"Unsupported key type: "}"#))
    }

    @Test func injectKeyAcceptsPKCS8AndValidates() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        let ec = try PrivateKey.generateEC(.p384)
        try c.injectKey(password: pw, name: "inj384", type: .asymmetric, key: ec.pkcs8DER)
        #expect(n.node.snapshot.asymmetric["inj384"]?.spki == ec.spkiDER)
        #expect(n.node.snapshot.asymmetric["inj384"]?.pkcs8 == ec.pkcs8DER, "injected PKCS#8 is kept byte-for-byte")
        try c.injectKey(password: pw, name: "aes", type: .symmetric, key: Array(0..<16))
        #expect(throws: ClientError.http(status: 409, message: "Key with name aes already exists.")) {
            try c.injectKey(password: pw, name: "aes", type: .symmetric, key: Array(0..<16))
        }
        #expect(throws: ClientError.self) { try c.injectKey(password: pw, name: "short", type: .symmetric, key: Array(0..<5)) }
        #expect(throws: ClientError.self) { try c.injectKey(password: pw, name: "m", type: .mac, key: Array(0..<8)) }
        #expect(throws: ClientError.self) { try c.injectKey(password: pw, name: "junk", type: .asymmetric, key: [0x30, 0x00]) }
        let weak = try PrivateKey.generateRSA(bits: 1024)
        #expect(throws: ClientError.http(status: 400, message: "Unsupported RSA key size: 1024 (2048 to 8192 bits)")) {
            try c.injectKey(password: pw, name: "weak", type: .asymmetric, key: weak.pkcs8DER)
        }
    }

    @Test func backupRestoresIntoAFreshNode() throws {
        let a = try TestNode()
        defer { a.stop() }
        let ca = try a.client()
        try ca.generateKey(password: pw, name: "rsa", type: .asymmetric, spec: .rsa, size: 2048)
        try ca.generateKey(password: pw, name: "aes", type: .symmetric, size: 16)
        try ca.generateKey(password: pw, name: "mac", type: .mac, size: 32)
        let blob = try ca.generateBackup(password: pw)
        #expect(blob.int64("version") == 1)
        #expect(blob.bytes("encryptionKey")?.count == 256)
        // Decrypt the blob independently of the restore code: OAEP-SHA256 then AES-256-GCM.
        let rpc = try PrivateKey(pkcs8: TestNode.rpcPKCS8)
        let dataKey = try rpc.decrypt(try #require(blob.bytes("encryptionKey")), padding: .oaep(.sha256, mgf1: .sha256, label: []))
        let sealed = try #require(blob.bytes("encryptedState"))
        let plain = try BlockCipher(kind: .aes, key: dataKey).gcmOpen(
            nonce: Array(sealed.prefix(12)), aad: [],
            Array(sealed.dropFirst(12).dropLast(16)), tag: Array(sealed.suffix(16)))
        let state = try WireObject.decode(plain, as: Schemas.synchronizeStateResponse)
        #expect(state.objects("symmetricKey").map { $0.string("name") } == ["aes"])

        let b = try TestNode()
        defer { b.stop() }
        let cb = try b.client()
        var w = WireWriter()
        w.bytes("encryptionKey", blob.bytes("encryptionKey"))
        w.int64("version", 1)
        w.int64("timestamp", blob.int64("timestamp"))
        w.bytes("encryptedState", blob.bytes("encryptedState"))
        try cb.restoreBackup(password: pw, blob: w.value)
        let msg = Array("restored".utf8)
        let sig = try cb.sign(key: "rsa", algorithm: "SHA256withRSA", input: msg)
        #expect(sig == (try ca.sign(key: "rsa", algorithm: "SHA256withRSA", input: msg)), "same key on both nodes")
        #expect(b.node.snapshot.mac["mac"]?.key == a.node.snapshot.mac["mac"]?.key)
    }

    @Test func restoreRejectsBadBlobsCleanly() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        let cases: [(String, Int, String)] = [
            (#"{"adminPassword":"\#(pw)"}"#, 400, "Missing backup."),
            (#"{"adminPassword":"\#(pw)","backup":null}"#, 400, "Missing backup."),
            (#"{"adminPassword":"\#(pw)","backup":{"version":2}}"#, 400, "Unsupported backup version."),
            (#"{"adminPassword":"\#(pw)","backup":{"version":"abc"}}"#, 400, "invalid character 'a' looking for beginning of value"),
            // The original said "crypto/rsa: decryption error"; ours says what it means (issue 19).
            (
                #"{"adminPassword":"\#(pw)","backup":{"version":1,"encryptionKey":"AAAA"}}"#, 400,
                "This backup cannot be opened with this node's RPC key"
            ),
        ]
        for (json, status, message) in cases {
            let (s, body) = try n.post(c, Route.restoreBackup, json)
            #expect(s == status && field(body, "error").hasPrefix(message), "\(json) -> \(s) \(body)")
        }
        // A valid key wrapping but a too-short state (the original panicked).
        let pub = try #require(try PrivateKey(pkcs8: TestNode.rpcPKCS8).publicKey)
        let ek = try pub.encrypt([UInt8](repeating: 1, count: 32), padding: .oaep(.sha256, mgf1: .sha256, label: []))
        let (s, body) = try n.post(
            c, Route.restoreBackup,
            #"{"adminPassword":"\#(pw)","backup":{"version":1,"encryptionKey":"\#(b64(ek))","encryptedState":"AAAA"}}"#)
        #expect(s == 400 && body.contains("too short"))
    }

    @Test func stateSurvivesRestartAndNeedsTheRPCKey() throws {
        let dir = TestNode.tempDir()
        var n: TestNode? = try TestNode(stateDir: dir)
        let c = try #require(n).client()
        try c.generateKey(password: pw, name: "persist-ec", type: .asymmetric, spec: .ec, size: 256)
        try c.generateKey(password: pw, name: "persist-aes", type: .symmetric, size: 32)
        let spki = n?.node.snapshot.asymmetric["persist-ec"]?.spki
        n?.stop()
        n = nil
        // The sealed file holds no plaintext key material.
        let sealed = try FileUtil.readFile(dir + "/keystore.sealed")
        #expect(!String(decoding: sealed, as: UTF8.self).contains("persist-ec"))

        let again = try TestNode(stateDir: dir)
        defer { again.stop() }
        #expect(again.node.snapshot.asymmetric["persist-ec"]?.spki == spki)
        #expect(again.node.snapshot.symmetric["persist-aes"]?.key.count == 32)
    }

    @Test func bootstrapRefusesAForeignKeyAndStaysBootstrapping() throws {
        let n = try TestNode(bootstrap: false)
        defer { n.stop() }
        #expect(!n.node.isRunning)
        let foreign = try PrivateKey.generateRSA(bits: 2048)
        #expect(throws: ServiceError.badRequest("rpcPrivateKey does not match the RPC certificate")) {
            try n.node.bootstrap(rpcPrivateKeyPKCS8: foreign.pkcs8DER)
        }
        #expect(throws: ServiceError.self) { try n.node.bootstrap(rpcPrivateKeyPKCS8: [1, 2, 3]) }
        #expect(!n.node.isRunning)
        // Over the wire: bootstrap-phase TLS (unverified throwaway certificate), then health says running.
        var cfg = TLSClientConfiguration(endpoints: [Endpoint(host: "127.0.0.1", port: n.ports[.api] ?? 0)])
        cfg.trustPEM = nil
        let boot = try VSSMAPIClient(cfg)
        let (s, _) = try n.post(boot, Route.bootstrap, #"{"rpcPrivateKey":"\#(b64(foreign.pkcs8DER))"}"#)
        #expect(s == 400)
        let (s2, b2) = try n.post(boot, Route.bootstrap, #"{"rpcPrivateKey":"\#(b64(TestNode.rpcPKCS8))"}"#)
        #expect(s2 == 200 && b2 == "{}")
        #expect(n.node.isRunning)
        #expect(n.node.handle(path: Route.healthcheck, body: [], context: RequestContext(listener: .health)).body == Array("running".utf8))
    }

    @Test func concurrentWritersLoseNothing() async throws {
        let dir = TestNode.tempDir()
        let n = try TestNode(stateDir: dir)
        defer { n.stop() }
        let c = try n.client()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    for i in 0..<5 { try c.generateKey(password: TestNode.password, name: "k\(worker)-\(i)", type: .mac, size: 32) }
                }
            }
            try await group.waitForAll()
        }
        #expect(n.node.snapshot.mac.count == 20)
        n.stop()
        let again = try TestNode(stateDir: dir)
        defer { again.stop() }
        #expect(again.node.snapshot.mac.count == 20)
    }

    @Test func logsRecordAuditLines() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        try c.generateKey(password: pw, name: "logged", type: .mac, size: 16)
        let lines = try c.logs(password: pw)
        #expect(lines.contains { $0.contains("INFO: Generating a MAC key named logged...") })
        #expect(
            lines.contains {
                $0.contains("client=\"CN=test-client\"") && $0.contains("endpoint=/REST/v1/admin/generatekey") && $0.contains("status=200")
            })
        #expect(lines.last?.contains("Retrieving logs...") == true)
        #expect(!lines.joined().contains(pw), "passwords never reach the log")
    }
}
