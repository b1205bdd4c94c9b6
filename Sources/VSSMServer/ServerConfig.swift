import VSSMClient
public import VSSMCrypto
import VSSMWire

/// `config.json` in the original's format (`rpcCertificate`, `clientTrustStore`, `rootPassword`)
/// plus our optional fields. Like the original, unknown members are ignored, so one file serves
/// both a Go node and ours.
public struct ServerConfig: Sendable {
    /// DER of the RPC certificate (server certificate of every listener, and sync client identity).
    public var rpcCertificate: [UInt8]
    /// DER CA certificates that client certificates must chain to.
    public var clientTrustStore: [[UInt8]]
    /// `$s0$` scrypt hash of the admin password.
    public var rootPassword: String
    public var listen = Listeners()
    /// Where the sealed key store lives; nil keeps keys in memory only (like the original).
    public var stateDirectory: String?
    /// Other nodes' internal (sync) listeners, `host:port`.
    public var peers: [String] = []
    /// Serve only the original API (no `/REST/v1/ext/`).
    public var compatOnly = false
    /// Audit records also go to syslog (facility authpriv), e.g. for journald or a log collector.
    public var auditSyslog = false
    /// Answer every handler error with HTTP 500 and the message, as the original Go VSSM does
    /// (only an unknown path is a 404): for testing clients against Go's behaviour.
    public var goStyleErrors = false
    /// Connection, time and size bounds (the original had none).
    public var limits = ServiceLimits()
    /// A cluster's shared store; nil: this node's sealed file (`stateDirectory`) or memory.
    public var etcd: EtcdSettings?
    /// API requests per second one client certificate may make (`"requestsPerSecondPerClient"`);
    /// 0: no limit. Over it: 429 with Retry-After.
    public var requestsPerSecondPerClient = 0
    /// How far this node's clock may be from etcd's (or most of its peers') before it refuses the
    /// changes that stamp a time (`"maxClockSkewSeconds"`); 0: not checked.
    public var maxClockSkewSeconds = 10
    /// DER of the attestation CA and of its certificate for the deployment's attestation key
    /// (`vssm init` writes both; without them the node attests nothing).
    public var attestationCA: [UInt8]?
    public var attestationCertificate: [UInt8]?

    public struct Listeners: Sendable {
        public var api = "127.0.0.1:8080"
        public var health = "127.0.0.1:8081"
        public var `internal` = "127.0.0.1:8082"
        public var bootstrapSlave = "127.0.0.1:8083"
        public init() {}
    }

    public init(rpcCertificate: [UInt8], clientTrustStore: [[UInt8]], rootPassword: String) {
        self.rpcCertificate = rpcCertificate
        self.clientTrustStore = clientTrustStore
        self.rootPassword = rootPassword
    }

    /// Parses the file; errors name the field so an operator can fix it (the original panicked).
    /// Whether `key` is the private key of `rpcCertificate` (bootstrap, key splitting).
    public func isRPCKey(_ key: PrivateKey) throws(ServiceError) -> Bool {
        do { return key.matches(spki: try X509Info.subjectPublicKeyInfo(certificateDER: rpcCertificate)) } catch {
            throw .internalError("rpcCertificate: \(error.message)")
        }
    }

    /// The members of `config.json` (the Go VSSM's three first); any other member is refused.
    static let members = [
        "rpcCertificate", "clientTrustStore", "rootPassword", "listen", "stateDir", "peers", "compatOnly",
        "auditSyslog", "goStyleErrors", "limits", "etcd", "requestsPerSecondPerClient",
        "maxClockSkewSeconds", "attestationCA", "attestationCertificate",
    ]
    static let listenMembers = ["api", "health", "internal", "bootstrapSlave"]
    static let etcdMembers = ["endpoints", "ca", "cert", "key", "serverName", "prefix"]

    /// Parses the file strictly: an unknown member, a wrong type or a bad value stops the node,
    /// with the file, the member and its line and column (the original panicked, and ignored typos).
    public init(json bytes: [UInt8], path: String = "config.json") throws(ServiceError) {
        do throws(ConfigFile.Problem) {
            try self.init(ConfigFile(path: path, bytes: bytes))
        } catch {
            throw .badRequest(error.message)
        }
    }

    init(_ file: ConfigFile) throws(ConfigFile.Problem) {
        let v = file.root
        try file.onlyKnown(v, at: "", ServerConfig.members)
        func b64(_ field: String, _ value: JSONValue?) throws(ConfigFile.Problem) -> [UInt8] {
            guard let value else { throw ConfigFile.Problem("\(file.path): \(field) is missing (vssm init writes it)") }
            guard case .string(let s) = value else { throw file.typeProblem("", field, "a base64 string", value) }
            do { return try Base64.decode(s) } catch { throw file.problem(field, "not base64 (\(error.message))") }
        }
        rpcCertificate = try b64("rpcCertificate", v["rpcCertificate"])
        guard let trust = v["clientTrustStore"] else {
            throw ConfigFile.Problem("\(file.path): clientTrustStore is missing (vssm init writes it)")
        }
        guard case .array(let items) = trust else { throw file.typeProblem("", "clientTrustStore", "an array of base64 strings", trust) }
        clientTrustStore = []
        for (i, t) in items.enumerated() { clientTrustStore.append(try b64("clientTrustStore[\(i)]", t)) }
        guard let root = try file.string(v, "rootPassword", at: "") else {
            throw ConfigFile.Problem("\(file.path): rootPassword is missing (vssm init writes it)")
        }
        rootPassword = root
        do { _ = try PasswordHash(parsing: root) } catch { throw file.problem("rootPassword", "not a $s0$ scrypt hash (\(error.message))") }
        if let l = try file.object(v, "listen", at: "") {
            try file.onlyKnown(l, at: "listen", ServerConfig.listenMembers)
            for (name, key) in [
                ("api", \Listeners.api), ("health", \.health), ("internal", \.internal), ("bootstrapSlave", \.bootstrapSlave),
            ] {
                guard let text = try file.string(l, name, at: "listen") else { continue }
                guard Endpoint(text) != nil else { throw file.problem("listen.\(name)", "\"\(text)\" is not host:port") }
                listen[keyPath: key] = text
            }
        }
        if let s = try file.string(v, "stateDir", at: ""), !s.isEmpty { stateDirectory = s }
        if let p = try file.strings(v, "peers", at: "") { peers = p }
        compatOnly = try file.bool(v, "compatOnly", at: "") ?? false
        auditSyslog = try file.bool(v, "auditSyslog", at: "") ?? false
        goStyleErrors = try file.bool(v, "goStyleErrors", at: "") ?? false
        limits = try ServiceLimits(file, file.object(v, "limits", at: ""))
        if let rate = try file.number(v, "requestsPerSecondPerClient", at: "", 0...1_000_000, integer: true) {
            requestsPerSecondPerClient = Int(exactly: rate) ?? 0
        }
        if let skew = try file.number(v, "maxClockSkewSeconds", at: "", 0...86_400, integer: true) {
            maxClockSkewSeconds = Int(exactly: skew) ?? 10
        }
        if v["attestationCA"] != nil || v["attestationCertificate"] != nil {
            attestationCA = try b64("attestationCA", v["attestationCA"])
            attestationCertificate = try b64("attestationCertificate", v["attestationCertificate"])
        }
        if let e = try file.object(v, "etcd", at: "") {
            try file.onlyKnown(e, at: "etcd", ServerConfig.etcdMembers)
            guard let eps = try file.strings(e, "endpoints", at: "etcd"), !eps.isEmpty else {
                throw ConfigFile.Problem("\(file.location("etcd")): etcd.endpoints is missing (https://host:2379 URLs)")
            }
            for (i, ep) in eps.enumerated() where Endpoint(ep) == nil {
                throw file.problem("etcd.endpoints[\(i)]", "\"\(ep)\" is not an https://host:port URL")
            }
            func str(_ k: String) throws(ConfigFile.Problem) -> String {
                guard let s = try file.string(e, k, at: "etcd"), !s.isEmpty else {
                    throw ConfigFile.Problem("\(file.location("etcd")): etcd.\(k) is missing")
                }
                return s
            }
            var settings = EtcdSettings(endpoints: eps, ca: try str("ca"), cert: try str("cert"), key: try str("key"))
            if let s = try file.string(e, "serverName", at: "etcd"), !s.isEmpty { settings.serverName = s }
            if let s = try file.string(e, "prefix", at: "etcd"), !s.isEmpty { settings.prefix = s }
            etcd = settings
        }
    }

    public var json: [UInt8] {
        var w = WireWriter()
        w.string("rpcCertificate", Base64.encode(rpcCertificate))
        w.array("clientTrustStore", clientTrustStore.map { .string(Base64.encode($0)) })
        w.string("rootPassword", rootPassword)
        var l = WireWriter()
        l.string("api", listen.api)
        l.string("health", listen.health)
        l.string("internal", listen.internal)
        l.string("bootstrapSlave", listen.bootstrapSlave)
        w.object("listen", l.value)
        w.string("stateDir", stateDirectory ?? "")
        w.strings("peers", peers)
        w.bool("compatOnly", compatOnly)
        w.bool("auditSyslog", auditSyslog)
        w.bool("goStyleErrors", goStyleErrors)
        if limits != ServiceLimits() { w.object("limits", limits.json) }
        if requestsPerSecondPerClient > 0 { w.int64("requestsPerSecondPerClient", Int64(requestsPerSecondPerClient)) }
        if maxClockSkewSeconds != 10 { w.int64("maxClockSkewSeconds", Int64(maxClockSkewSeconds)) }
        if let ca = attestationCA, let cert = attestationCertificate {
            w.string("attestationCA", Base64.encode(ca))
            w.string("attestationCertificate", Base64.encode(cert))
        }
        if let e = etcd {
            var x = WireWriter()
            x.strings("endpoints", e.endpoints)
            x.string("ca", e.ca)
            x.string("cert", e.cert)
            x.string("key", e.key)
            x.string("serverName", e.serverName)
            x.string("prefix", e.prefix)
            w.object("etcd", x.value)
        }
        return JSONPretty.format(w.value)
    }
}

/// Indented JSON for files people read (config). Wire bodies stay compact.
enum JSONPretty {
    static func format(_ v: JSONValue, indent: String = "") -> [UInt8] {
        var out: [UInt8] = []
        write(v, indent: indent, into: &out)
        out.append(10)
        return out
    }

    private static func write(_ v: JSONValue, indent: String, into out: inout [UInt8]) {
        let inner = indent + "  "
        switch v {
        case .object(let members) where !members.isEmpty:
            out += Array("{\n".utf8)
            for (i, (k, value)) in members.enumerated() {
                out += Array(inner.utf8) + JSONWriter.serialize(.string(k)) + Array(": ".utf8)
                write(value, indent: inner, into: &out)
                out += Array((i + 1 < members.count ? ",\n" : "\n").utf8)
            }
            out += Array((indent + "}").utf8)
        case .array(let items) where !items.isEmpty:
            out += Array("[\n".utf8)
            for (i, item) in items.enumerated() {
                out += Array(inner.utf8)
                write(item, indent: inner, into: &out)
                out += Array((i + 1 < items.count ? ",\n" : "\n").utf8)
            }
            out += Array((indent + "]").utf8)
        default:
            out += JSONWriter.serialize(v)
        }
    }
}
