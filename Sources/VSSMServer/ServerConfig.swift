import VSSMClient
import VSSMCrypto
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

    public init(json bytes: [UInt8]) throws(ServiceError) {
        let v: JSONValue
        do { v = try JSONParser.parse(bytes) } catch { throw .badRequest("config is not valid JSON: \(error.message)") }
        guard case .object = v else { throw .badRequest("config must be a JSON object") }
        func b64(_ field: String, _ value: JSONValue?) throws(ServiceError) -> [UInt8] {
            guard case .string(let s)? = value else { throw .badRequest("config: \(field) is missing or not a string") }
            do { return try Base64.decode(s) } catch { throw .badRequest("config: \(field): \(error.message)") }
        }
        rpcCertificate = try b64("rpcCertificate", v["rpcCertificate"])
        guard case .array(let trust)? = v["clientTrustStore"] else {
            throw .badRequest("config: clientTrustStore is missing or not an array")
        }
        clientTrustStore = []
        for (i, t) in trust.enumerated() { clientTrustStore.append(try b64("clientTrustStore[\(i)]", t)) }
        guard case .string(let root)? = v["rootPassword"] else { throw .badRequest("config: rootPassword is missing or not a string") }
        rootPassword = root
        _ = try PasswordHash(parsing: root)
        if case .object? = v["listen"], let l = v["listen"] {
            if case .string(let s)? = l["api"] { listen.api = s }
            if case .string(let s)? = l["health"] { listen.health = s }
            if case .string(let s)? = l["internal"] { listen.internal = s }
            if case .string(let s)? = l["bootstrapSlave"] { listen.bootstrapSlave = s }
        }
        if case .string(let s)? = v["stateDir"], !s.isEmpty { stateDirectory = s }
        if case .array(let p)? = v["peers"] {
            peers = p.compactMap { if case .string(let s) = $0 { s } else { nil } }
        }
        if case .bool(let b)? = v["compatOnly"] { compatOnly = b }
        if case .bool(let b)? = v["auditSyslog"] { auditSyslog = b }
        if case .bool(let b)? = v["goStyleErrors"] { goStyleErrors = b }
        limits = try ServiceLimits(json: v["limits"])
        if let e = v["etcd"] {
            guard case .object = e, case .array(let eps)? = e["endpoints"] else { throw .badRequest("config: etcd.endpoints is missing") }
            func str(_ k: String) throws(ServiceError) -> String {
                guard case .string(let s)? = e[k], !s.isEmpty else { throw .badRequest("config: etcd.\(k) is missing") }
                return s
            }
            var settings = EtcdSettings(endpoints: eps.compactMap { if case .string(let s) = $0 { s } else { nil } },
                                        ca: try str("ca"), cert: try str("cert"), key: try str("key"))
            if case .string(let s)? = e["serverName"], !s.isEmpty { settings.serverName = s }
            if case .string(let s)? = e["prefix"], !s.isEmpty { settings.prefix = s }
            guard !settings.endpoints.isEmpty, settings.endpoints.allSatisfy({ Endpoint($0) != nil }) else {
                throw .badRequest("config: etcd.endpoints must be https://host:port URLs")
            }
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
