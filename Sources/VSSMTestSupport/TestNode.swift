import Glibc
public import VSSMClient
import VSSMCrypto
public import VSSMServer
import VSSMWire

/// A real node in-process: NIO listeners on 127.0.0.1 port 0, real mTLS, optional sealed store.
/// Used by the server and module tests.
public final class TestNode: @unchecked Sendable {
    public static let password = "test-admin-password"
    /// One PKI and password hash for all tests (RSA keygen and scrypt are slow-ish).
    public static let shared: (pki: DevPKI, hash: String) = {
        CryptoProviders.enableLegacyCiphers()
        // swiftlint:disable:next force_try
        let pki = try! DevPKI.create(clientName: "test-client")
        let hash = try! PasswordHash.create(password: password)
        return (pki, hash)
    }()
    /// The tests' attestation CA, for the attestation key derived from the shared RPC key.
    public static let attestation: Attestation.Authority = {
        // swiftlint:disable:next force_try
        try! Attestation.createAuthority(rpcKeyPKCS8: rpcPKCS8)
    }()

    public let node: KeyServiceNode
    public let listeners: HTTPListeners
    public let ports: [RequestContext.Listener: Int]
    public let stateDir: String?

    public init(
        stateDir: String? = nil, compatOnly: Bool = false, goStyleErrors: Bool = false, bootstrap: Bool = true, peers: [String] = [],
        limits: ServiceLimits = ServiceLimits(), etcd: EtcdSettings? = nil, requestsPerSecondPerClient: Int = 0
    ) throws {
        var cfg = ServerConfig(
            rpcCertificate: TestNode.shared.pki.rpcCertificateDER,
            clientTrustStore: [TestNode.shared.pki.clientCACertificateDER],
            rootPassword: TestNode.shared.hash)
        cfg.listen.api = "127.0.0.1:0"
        cfg.listen.health = "127.0.0.1:0"
        cfg.listen.internal = "127.0.0.1:0"
        cfg.listen.bootstrapSlave = "127.0.0.1:0"
        cfg.stateDirectory = stateDir
        cfg.compatOnly = compatOnly
        cfg.goStyleErrors = goStyleErrors
        cfg.peers = peers
        cfg.limits = limits
        cfg.etcd = etcd
        cfg.requestsPerSecondPerClient = requestsPerSecondPerClient
        cfg.attestationCA = TestNode.attestation.caCertificateDER
        cfg.attestationCertificate = TestNode.attestation.attestationCertificateDER
        self.stateDir = stateDir
        node = try KeyServiceNode(config: cfg, audit: AuditLog(echo: false))
        listeners = try HTTPListeners(node: node, eventLoopThreads: 1, workerThreads: 4)
        ports = try listeners.start()
        if bootstrap { try node.bootstrap(rpcPrivateKeyPKCS8: TestNode.rpcPKCS8) }
    }

    public static var rpcPKCS8: [UInt8] {
        // swiftlint:disable:next force_try
        try! PrivateKey(pem: Array(shared.pki.rpcKeyPEM.utf8)).pkcs8DER
    }

    public func stop() { listeners.shutdown() }

    public func clientConfig(certDER: [UInt8]? = nil, keyPEM: String? = nil) -> TLSClientConfiguration {
        let pki = TestNode.shared.pki
        var cfg = TLSClientConfiguration(endpoints: [Endpoint(host: "127.0.0.1", port: ports[.api] ?? 0)])
        cfg.trustPEM = Array(X509Info.pem(certificates: [pki.rpcCertificateDER]).utf8)
        cfg.clientCertificatePEM = Array(X509Info.pem(certificates: [certDER ?? pki.clientCertificateDER]).utf8)
        cfg.clientKeyPEM = Array((keyPEM ?? pki.clientKeyPEM).utf8)
        cfg.requestTimeoutMs = 120_000
        return cfg
    }

    public func client() throws -> VSSMAPIClient { try VSSMAPIClient(clientConfig()) }

    /// POSTs raw JSON and returns status and body text.
    public func post(_ client: VSSMAPIClient, _ path: String, _ json: String) throws -> (Int, String) {
        let r = try client.raw(path, body: Array(json.utf8), idempotent: false)
        return (r.status, r.text)
    }

    public static func tempDir() -> String {
        var template = Array("/tmp/vssm-test-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { buf in buf.baseAddress.flatMap { mkdtemp($0) } }
        return p.map { String(cString: $0) } ?? "/tmp/vssm-test-fallback"
    }
}

public func b64(_ s: String) -> String { Base64.encode(Array(s.utf8)) }
public func b64(_ b: [UInt8]) -> String { Base64.encode(b) }
public func unb64(_ s: String) -> [UInt8] { (try? Base64.decode(s)) ?? [] }

public func field(_ json: String, _ name: String) -> String {
    guard let v = try? JSONParser.parse(json), case .string(let s)? = v[name] else { return "" }
    return s
}
