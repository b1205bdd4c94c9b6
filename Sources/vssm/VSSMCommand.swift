public import ArgumentParser
import Glibc
import VSSMClient
import VSSMCrypto
import VSSMServer
import VSSMSync
import VSSMWire

@main
struct VSSMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vssm",
        abstract: "VSSM key service: a virtual software security module speaking the VSSM REST API over mutual TLS.",
        version: VSSMVersion.string,
        subcommands: [
            InitCommand.self, IssueClientCommand.self, ServeCommand.self, BootstrapCommand.self, HealthCommand.self,
            AdminCommand.self, PKCS11ConfigCommand.self, DoctorCommand.self, VerifyAttestationCommand.self,
        ])
}

/// Errors shown to the operator as one line, exit status 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

func readFile(_ path: String) throws -> [UInt8] {
    do { return try FileUtil.readFile(path) } catch { throw CLIError(error.message) }
}

func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o600) throws {
    do { try FileUtil.writeAtomically(path: path, bytes: bytes, mode: mode) } catch { throw CLIError(error.message) }
}

func printErr(_ s: String) {
    let line = s + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

func environment(_ name: String) -> String? {
    guard let v = getenv(name) else { return nil }
    let s = String(cString: v)
    return s.isEmpty ? nil : s
}

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create a dev PKI (RPC certificate, client CA, client certificate, attestation CA) and config.json in DIR.")

    @Argument(help: "Directory to create the files in.") var dir: String
    @Option(help: "Admin password (default: generate one and print it once).") var adminPassword: String?
    @Option(help: "File holding the admin password.") var adminPasswordFile: String?
    @Option(help: "Common name of the client certificate.") var clientName = "vssm-client"
    @Option(help: "API listener address.") var api = "127.0.0.1:8080"
    @Option(help: "Health listener address.") var health = "127.0.0.1:8081"
    @Option(name: .customLong("internal"), help: "Internal (sync) listener address.") var internalAddress = "127.0.0.1:8082"
    @Option(help: "Bootstrap-slave listener address.") var bootstrapSlave = "127.0.0.1:8083"
    @Option(help: "Directory of the sealed key store (default: DIR/state).") var stateDir: String?
    @Flag(
        help: ArgumentHelp(
            "Start a new deployment in a directory that has one: move its files aside first (into DIR/replaced-TIME/).",
            discussion:
                "Without it, vssm init refuses to touch an existing RPC key, configuration or key store: a new RPC key next to an old store would make the store unreadable."
        ))
    var newPki = false

    static let files = [
        "config.json", "pkcs11.json", "rpc-cert.pem", "ca.pem", "rpc-key.pem", "client-ca.pem", "client-ca-key.pem",
        "client-cert.pem", "client-key.pem", "attestation-ca.pem", "attestation-ca-key.pem",
    ]

    func run() throws {
        try FileUtil.makeDirectory(dir)
        let configPath = dir + "/config.json"
        let state = stateDir ?? absolutePath(dir) + "/state"
        var existing = InitCommand.files.map { dir + "/" + $0 }.filter { access($0, F_OK) == 0 }
        if let entries = FileUtil.listDirectory(state), !entries.isEmpty { existing.append(state) }
        if !existing.isEmpty {
            guard newPki else {
                throw CLIError(
                    """
                    \(dir) already holds a deployment (\(existing.joined(separator: ", "))); vssm init does not replace \
                    an RPC key or a key store: use another directory, or --new-pki to move these aside and start anew
                    """)
            }
            let aside = dir + "/replaced-" + InitCommand.stamp()
            try FileUtil.makeDirectory(aside)
            for path in existing {
                let name = path.split(separator: "/").last.map(String.init) ?? "state"
                guard rename(path, aside + "/" + name) == 0 else {
                    throw CLIError("cannot move \(path) to \(aside): \(String(cString: strerror(errno)))")
                }
            }
            printErr("moved the previous deployment's files to \(aside)")
        }
        var password = adminPassword
        if let f = adminPasswordFile {
            password = String(decoding: try readFile(f), as: UTF8.self).split(whereSeparator: { $0 == "\n" || $0 == "\r" }).first.map(
                String.init)
        }
        let generated = password == nil
        let pw = password ?? Base64.encode(SecureRandom.bytes(18)).replacingSlashes()
        guard !pw.isEmpty else { throw CLIError("the admin password must not be empty") }
        printErr("Creating RPC certificate (RSA-2048), client CA and client certificate...")
        let pki = try DevPKI.create(clientName: clientName)
        var config = ServerConfig(
            rpcCertificate: pki.rpcCertificateDER, clientTrustStore: [pki.clientCACertificateDER],
            rootPassword: try PasswordHash.create(password: pw))
        // The attestation CA; its certificate for the attestation key every node derives from the RPC key.
        var rpcDER = try PrivateKey(pem: Array(pki.rpcKeyPEM.utf8)).pkcs8DER
        defer { zeroize(&rpcDER) }
        let authority = try Attestation.createAuthority(rpcKeyPKCS8: rpcDER)
        config.attestationCA = authority.caCertificateDER
        config.attestationCertificate = authority.attestationCertificateDER
        config.listen.api = api
        config.listen.health = health
        config.listen.internal = internalAddress
        config.listen.bootstrapSlave = bootstrapSlave
        let absolute = absolutePath(dir)
        config.stateDirectory = state
        try writeFile(configPath, config.json)
        try writeFile(dir + "/rpc-cert.pem", Array(X509Info.pem(certificates: [pki.rpcCertificateDER]).utf8), mode: 0o644)
        try writeFile(dir + "/ca.pem", Array(X509Info.pem(certificates: [pki.rpcCertificateDER]).utf8), mode: 0o644)
        try writeFile(dir + "/rpc-key.pem", Array(pki.rpcKeyPEM.utf8))
        try writeFile(dir + "/client-ca.pem", Array(X509Info.pem(certificates: [pki.clientCACertificateDER]).utf8), mode: 0o644)
        try writeFile(dir + "/client-ca-key.pem", Array(pki.clientCAKeyPEM.utf8))
        try writeFile(dir + "/client-cert.pem", Array(X509Info.pem(certificates: [pki.clientCertificateDER]).utf8), mode: 0o644)
        try writeFile(dir + "/client-key.pem", Array(pki.clientKeyPEM.utf8))
        try writeFile(dir + "/attestation-ca.pem", Array(X509Info.pem(certificates: [authority.caCertificateDER]).utf8), mode: 0o644)
        try writeFile(dir + "/attestation-ca-key.pem", Array(authority.caKeyPEM.utf8))
        let module = ModuleConfigFile(
            endpoints: [ModuleConfigFile.url(forListener: api) ?? "https://127.0.0.1:8080"],
            ca: absolute + "/ca.pem", clientCert: absolute + "/client-cert.pem",
            clientKey: absolute + "/client-key.pem")
        try writeFile(dir + "/pkcs11.json", Array(module.text.utf8), mode: 0o644)
        print("Created \(configPath)")
        print("  RPC certificate (server CA for clients, name VSSM): \(dir)/ca.pem")
        print("  RPC private key (the bootstrap secret: keep it in a safe): \(dir)/rpc-key.pem")
        print("  client certificate and key: \(dir)/client-cert.pem, \(dir)/client-key.pem")
        print("  PKCS#11 module configuration for this client (user PIN = admin password): \(dir)/pkcs11.json")
        print("  attestation CA (give it to whoever checks key attestations; its key: keep offline): \(dir)/attestation-ca.pem")
        if generated { print("  admin password (shown once, stored only as a scrypt hash): \(pw)") }
        print("Next: vssm serve --config \(configPath) --bootstrap-key \(dir)/rpc-key.pem")
    }
}

extension InitCommand {
    /// `20261207-044700`: a directory name that sorts by time.
    static func stamp() -> String {
        var now = time(nil)
        var t = tm()
        gmtime_r(&now, &t)
        var buf = [CChar](repeating: 0, count: 32)
        let n = strftime(&buf, buf.count, "%Y%m%d-%H%M%S", &t)
        return String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// `vssm issue-client DIR --name NAME`: one more client certificate from the client CA that
/// `vssm init` made (a tenant's identity, to register with `vssm admin principal add`).
struct IssueClientCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "issue-client",
        abstract: "Issue a client certificate (P-256, EKU clientAuth) from the client CA in DIR (client-ca.pem, client-ca-key.pem).")
    @Argument(help: "Directory made by `vssm init`.") var dir: String
    @Option(help: "Common name of the certificate.") var name: String
    @Option(help: "Write OUT-cert.pem and OUT-key.pem (default: DIR/NAME).") var out: String?

    func run() throws {
        let caDER = X509Info.derBlocks(pem: String(decoding: try readFile(dir + "/client-ca.pem"), as: UTF8.self)).first ?? []
        let caKey = String(decoding: try readFile(dir + "/client-ca-key.pem"), as: UTF8.self)
        let issued = try DevPKI.issueClient(name: name, caCertificateDER: caDER, caKeyPEM: caKey)
        let prefix = out ?? dir + "/" + name
        try writeFile(prefix + "-cert.pem", Array(X509Info.pem(certificates: [issued.der]).utf8), mode: 0o644)
        try writeFile(prefix + "-key.pem", Array(issued.keyPEM.utf8))
        print("\(prefix)-cert.pem  \(prefix)-key.pem  (CN=\(name), SHA-256 \(Hex.encode(DigestAlgorithm.sha256.hash(issued.der))))")
    }
}

func currentDirectory() -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    guard getcwd(&buf, buf.count) != nil else { return "." }
    return String(cBuffer: buf)
}

extension String {
    func replacingSlashes() -> String {
        String(self.map { $0 == "/" ? "_" : $0 == "+" ? "-" : $0 })
    }
}

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run a key service node (API, health, internal and bootstrap-slave listeners).")

    @Option(help: "config.json (default: ./config.json, then /etc/vssm/config.json).") var config: String?
    @Option(help: "Override the API listener address (host:port; port 0 picks a free port).") var api: String?
    @Option(help: "Override the health listener address.") var health: String?
    @Option(name: .customLong("internal"), help: "Override the internal (sync) listener address.") var internalAddress: String?
    @Option(help: "Override the bootstrap-slave listener address.") var bootstrapSlave: String?
    @Option(help: "Override the sealed key store directory.") var stateDir: String?
    @Option(help: "Peer internal listener (host:port); repeatable.") var peer: [String] = []
    @Option(help: "Bootstrap at start from this RPC private key file (PEM or PKCS#8 DER).") var bootstrapKey: String?
    @Option(help: "Write the bound ports as JSON to this file once listening.") var portsFile: String?
    @Flag(help: "Serve exactly the original VSSM API (no /REST/v1/ext/ extensions).") var compatOnly = false
    @Flag(
        help:
            "Answer every error with HTTP 500 and the message, as the original Go VSSM does (with --compat-only: test clients against Go's behaviour)."
    ) var goErrors = false
    @Option(help: "Worker threads for request handling.") var workers = 8
    @Option(
        help:
            "Keep the state in etcd: etcd:https://host:2379[,https://host:2379...] (TLS files from config.json's \"etcd\" or --etcd-ca/--etcd-cert/--etcd-key)."
    ) var store: String?
    @Option(help: "PEM CA of the etcd members' certificates.") var etcdCa: String?
    @Option(help: "PEM client certificate for etcd.") var etcdCert: String?
    @Option(help: "PEM client key for etcd.") var etcdKey: String?
    @Option(help: "Join a cluster: a running node's bootstrap-slave URL (https://host:port); repeatable.") var join: [String] = []
    @Option(help: "The join credential file from `vssm admin node add`.") var joinCredential: String?
    @Option(
        help:
            "Standard output and error: text (the original's lines) or json (one object per line: time, level, source, message; requests add listener, peer, principal, route, status, duration_ms, key, request)."
    )
    var logFormat: AuditLog.Format = .text
    @Flag(
        help:
            "Keep keys in memory only, as the original VSSM does: a restart loses every key made since the last restore (without it, a configuration with no stateDir is refused)."
    )
    var memoryOnly = false

    func run() throws {
        ProcessHardening.refuseCoreDumps()
        CryptoProviders.enableLegacyCiphers()
        let path = config ?? (access("config.json", R_OK) == 0 ? "config.json" : "/etc/vssm/config.json")
        var cfg: ServerConfig
        do { cfg = try ServerConfig(json: try readFile(path), path: path) } catch let e as ServiceError { throw CLIError(e.message) }
        if let api { cfg.listen.api = api }
        if let health { cfg.listen.health = health }
        if let internalAddress { cfg.listen.internal = internalAddress }
        if let bootstrapSlave { cfg.listen.bootstrapSlave = bootstrapSlave }
        if let stateDir { cfg.stateDirectory = stateDir }
        if !peer.isEmpty { cfg.peers = peer }
        if compatOnly { cfg.compatOnly = true }
        if goErrors { cfg.goStyleErrors = true }
        if let store {
            guard store.hasPrefix("etcd:") else { throw CLIError("--store must be etcd:https://host:port[,...]") }
            let endpoints = store.dropFirst(5).split(separator: ",").map(String.init)
            guard let ca = etcdCa ?? cfg.etcd?.ca, let cert = etcdCert ?? cfg.etcd?.cert, let key = etcdKey ?? cfg.etcd?.key else {
                throw CLIError("--store etcd: needs the TLS files (--etcd-ca, --etcd-cert, --etcd-key, or \"etcd\" in the config)")
            }
            var settings = EtcdSettings(endpoints: endpoints, ca: ca, cert: cert, key: key)
            if let old = cfg.etcd { settings.serverName = old.serverName; settings.prefix = old.prefix }
            cfg.etcd = settings
        }
        if cfg.stateDirectory == nil && cfg.etcd == nil && !memoryOnly {
            throw CLIError(
                """
                \(path) has no "stateDir": keys made on this node would be lost at its next restart. Set "stateDir" \
                (a directory the service user can write; vssm init writes one) or pass --state-dir DIR; --memory-only \
                runs without one, as the original VSSM does
                """)
        }
        if let dir = cfg.stateDirectory {
            try? FileUtil.makeDirectory(dir)
            guard access(dir, W_OK | X_OK) == 0 else {
                throw CLIError(
                    """
                    the state directory \(dir) is not writable by this process (uid \(getuid())): \
                    \(String(cString: strerror(errno))); give it to the service user (chown -R vssm: \(dir))
                    """)
            }
        }
        let node = try KeyServiceNode(config: cfg, audit: AuditLog(format: logFormat))
        if memoryOnly && cfg.stateDirectory == nil && cfg.etcd == nil {
            node.audit.error("--memory-only: keys are kept in memory only and every key made on this node is lost when it stops")
        }
        let listeners = try HTTPListeners(node: node, workerThreads: workers)
        let ports = try listeners.start()
        node.audit.info(
            "Listening: api \(ports[.api] ?? 0), health \(ports[.health] ?? 0), internal \(ports[.internal] ?? 0), bootstrap-slave \(ports[.bootstrapSlave] ?? 0)\(cfg.compatOnly ? " (compat-only: no extensions)" : "")"
        )
        node.audit.info(
            "Bootstrap-phase certificate SHA-256 fingerprint: \(listeners.bootstrapFingerprint) "
                + "(from another host: vssm bootstrap --url https://THIS-NODE:\(ports[.api] ?? 0) --fingerprint \(listeners.bootstrapFingerprint) ...)"
        )
        if let portsFile {
            var w = WireWriter()
            w.int64("api", Int64(ports[.api] ?? 0))
            w.int64("health", Int64(ports[.health] ?? 0))
            w.int64("internal", Int64(ports[.internal] ?? 0))
            w.int64("bootstrapSlave", Int64(ports[.bootstrapSlave] ?? 0))
            try writeFile(portsFile, w.bytes, mode: 0o644)
        }
        if let bootstrapKey {
            let der = try loadPKCS8(bootstrapKey)
            do { try node.bootstrap(rpcPrivateKeyPKCS8: der) } catch {
                throw CLIError("bootstrap from \(bootstrapKey) failed: \(error.message)")
            }
        } else if !join.isEmpty {
            guard let joinCredential else { throw CLIError("--join needs --join-credential FILE (from `vssm admin node add`)") }
            let text = try readFile(joinCredential)
            guard let v = try? JSONParser.parse(text), case .string(let name)? = v["name"], case .string(let s64)? = v["secret"],
                let secret = try? Base64.decode(s64)
            else { throw CLIError("\(joinCredential) is not a join credential") }
            node.audit.info("Joining the cluster as node \(name) through \(join.joined(separator: ", "))...")
            do { try node.joinCluster(urls: join, name: name, secret: secret) } catch { throw CLIError("join failed: \(error.message)") }
        } else {
            node.audit.info("Attempting bootstrap... waiting for POST \(Route.bootstrap) (vssm bootstrap)")
        }
        listeners.wait()
    }
}

/// PKCS#8 DER of a private key file (PEM of any OpenSSL-readable kind, or DER PKCS#8).
func loadPKCS8(_ path: String) throws -> [UInt8] {
    let bytes = try readFile(path)
    if let k = try? PrivateKey(pem: bytes) { return k.pkcs8DER }
    if let k = try? PrivateKey(pkcs8: bytes) { return k.pkcs8DER }
    throw CLIError("\(path) is not a readable RSA or EC private key (PEM or PKCS#8 DER)")
}

struct BootstrapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bootstrap",
        abstract: "Send the RPC private key, or one share of it, to a node in the bootstrapping phase.",
        discussion: """
            With --share, each operator sends the share file `vssm admin split-rpc-key` gave them, one call each; \
            the node bootstraps when the threshold of shares of one split is in (shares are kept in memory for \
            15 minutes, and a share that is damaged, repeated or from another split is refused).
            """)

    @Option(help: "API URL of the node.") var url = environment("VSSM_URL") ?? "https://127.0.0.1:8080"
    @Option(help: "RPC private key file (PEM or PKCS#8 DER).") var key: String?
    @Option(help: "One RPC key share file (from `vssm admin split-rpc-key`).") var share: String?
    @Option(
        help: ArgumentHelp(
            "The node's bootstrap-phase certificate fingerprint, SHA256:AB:CD:... (`vssm serve` logs it at start).",
            discussion: "Required for a node that is not on this machine (a URL other than localhost, 127.0.0.0/8, ::1)."))
    var fingerprint: String?
    @Flag(help: "Send the secret to a non-loopback node without checking its certificate (anyone on the path can take it).")
    var insecureUnverified = false

    func run() throws {
        guard let ep = Endpoint(url) else { throw CLIError("invalid URL: \(url)") }
        guard (key == nil) != (share == nil) else { throw CLIError("pass either --key or --share") }
        // The bootstrap-phase certificate is throwaway and self-signed (as in the original): no CA
        // vouches for it, so the node is identified by the fingerprint it logs. Sending the RPC key
        // (or a share) anywhere else unverified is refused before any lookup or connection.
        var tls = TLSClientConfiguration(endpoints: [ep])
        if let fingerprint {
            guard let pin = Endpoint.parseFingerprint(fingerprint) else {
                throw CLIError("--fingerprint must be SHA256: and 64 hex digits (as `vssm serve` logs it), not \(fingerprint)")
            }
            tls.pinnedCertificateSHA256 = pin
        } else if !ep.isLoopback && !insecureUnverified {
            throw CLIError(
                """
                refusing to send the \(key != nil ? "RPC private key" : "share") to \(ep) without verifying it: \
                pass --fingerprint SHA256:... from the node's log ("Bootstrap-phase certificate SHA-256 fingerprint"), \
                or run this on the node (https://127.0.0.1:PORT), or accept the risk with --insecure-unverified
                """)
        }
        let client = try VSSMAPIClient(tls)
        if let share {
            let bytes = try readFile(share)
            let parsed: RPCKeyShare
            do { parsed = try RPCKeyShare(json: bytes) } catch { throw CLIError("\(share): \(error.message)") }
            let r: WireObject
            do {
                r = try client.call(Route.extBootstrapShare, body: bytes, response: ExtSchemas.bootstrapShareResponse, idempotent: false)
            } catch { throw CLIError("share \(parsed.index) (\(parsed.label)) refused: \(error)") }
            if r.bool("running") {
                print(
                    "share \(parsed.index) (\(parsed.label)) accepted: \(r.int64("received")) of \(r.int64("threshold")); bootstrapped \(ep)"
                )
            } else {
                print(
                    "share \(parsed.index) (\(parsed.label)) accepted: \(r.int64("received")) of \(r.int64("threshold")) received; waiting for more"
                )
            }
            return
        }
        var w = WireWriter()
        w.bytes("rpcPrivateKey", try loadPKCS8(key ?? ""))
        do {
            _ = try client.call(Route.bootstrap, w, response: Schemas.empty, idempotent: false)
        } catch { throw CLIError("bootstrap failed: \(error)") }
        print("bootstrapped \(ep)")
    }
}

struct HealthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "health", abstract: "Ask a node's health listener (exit 0 when running).")
    @Option(help: "Health URL (http://host:port).") var url = environment("VSSM_HEALTH_URL") ?? "http://127.0.0.1:8081"
    @Option(help: "Wait up to this many seconds for the node to answer \"running\" (it may still be starting or bootstrapping).")
    var wait: UInt = 0

    func run() throws {
        var t = Substring(url)
        if t.hasPrefix("http://") { t = t.dropFirst(7) }
        guard let ep = Endpoint(String(t.split(separator: "/").first ?? "")) else { throw CLIError("invalid URL: \(url)") }
        let deadline = Monotonic.ms() + Int64(clamping: min(wait, 86_400)) * 1000
        while true {
            let answer = Result { try plainHTTPGet(ep, path: Route.healthcheck) }
            if case .success(let (status, body)) = answer, status == 200 || Monotonic.ms() >= deadline {
                print(body)
                if status != 200 { throw ExitCode(1) }
                return
            }
            if case .failure(let error) = answer, Monotonic.ms() >= deadline { throw error }
            usleep(100_000)
        }
    }
}

/// One plain-HTTP GET (health listener only).
func plainHTTPGet(_ ep: Endpoint, path: String) throws -> (Int, String) {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var res: UnsafeMutablePointer<addrinfo>? = nil
    guard getaddrinfo(ep.host, String(ep.port), &hints, &res) == 0, let ai = res else { throw CLIError("cannot resolve \(ep.host)") }
    defer { freeaddrinfo(res) }
    let fd = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw CLIError("socket failed") }
    defer { close(fd) }
    guard connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else {
        throw CLIError("cannot connect to \(ep): \(String(cString: strerror(errno)))")
    }
    let req = "GET \(path) HTTP/1.1\r\nHost: \(ep.host)\r\nConnection: close\r\n\r\n"
    _ = req.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = recv(fd, &buf, buf.count, 0)
        if n <= 0 { break }
        out += buf.prefix(n)
    }
    let text = String(decoding: out, as: UTF8.self)
    let parts = text.split(separator: "\r\n\r\n", maxSplits: 1, omittingEmptySubsequences: false)
    let status = Int(parts.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
    return (status, parts.count > 1 ? String(parts[1]) : "")
}

extension AuditLog.Format: ExpressibleByArgument {}
