import VSSMWire

/// Every bound the key service enforces, in one place (the README's "Limits" table lists these
/// numbers). A request over a bound is refused with 413/400 before anything is acknowledged; a
/// connection over a bound is closed. Configurable in `config.json` under `"limits"`.
public struct ServiceLimits: Sendable, Equatable {
    /// Open connections per listener. At the cap, the oldest connection that has not completed a
    /// request yet (handshaking or idle before its first request) is closed to admit the new one,
    /// so a flood of idle sockets cannot lock real clients out; when every connection has been used,
    /// the new one is closed instead.
    public var maxConnectionsAPI = 1024
    public var maxConnectionsInternal = 64
    public var maxConnectionsHealth = 64
    public var maxConnectionsBootstrapSlave = 16
    /// From accept to the end of the first request's header (covers TCP idle and the TLS handshake).
    public var handshakeTimeoutMs = 10_000
    /// From a request's first byte to its last (slow headers and bodies).
    public var requestTimeoutMs = 30_000
    /// Keep-alive between requests.
    public var idleTimeoutMs = 120_000
    /// Request bodies: crypto and key calls on the API listener (8 MiB of input, base64, plus JSON).
    public var maxBodyBytes = 12 << 20
    /// Backup restore on the API listener and state sync on the internal listener carry the whole state.
    public var maxStateBodyBytes = 48 << 20
    /// The plaintext of the sealed state (everything a node acknowledged). Stays below the 64 MiB read
    /// cap of the sealed file, so a node filled to the limit still restarts and bootstraps.
    public var maxStateBytes = 32 << 20
    /// Input of one crypto call (after base64).
    public var maxCryptoInputBytes = 8 << 20
    /// Smallest RSA key stored (generated, imported or copied to the token); session keys may be
    /// 1024. Lower it only for test suites that make RSA-1024 token keys.
    public var minStoredRSABits = 2048
    /// Which keys may be made readable (PKCS#11 CKA_SENSITIVE=FALSE with CKA_EXTRACTABLE=TRUE:
    /// C_GetAttributeValue(CKA_VALUE) returns the key): 0 none, 1 session keys only (they live in
    /// memory with the application that asked), 2 session and stored keys (test suites only).
    public var readableKeys = 1
    /// Size at which the audit trail file (`audit.jsonl`) is rotated (8 rotated files are kept).
    public var auditFileBytes = 64 << 20
    /// Unauthenticated listeners (health, bootstrap-slave) and the API listener while bootstrapping.
    public static let maxUnauthenticatedBodyBytes = 64 << 10
    /// CKA_ID of a key or object.
    public static let maxIdBytes = 256
    /// The module's opaque PKCS#11 attributes of a key (usage flags).
    public static let maxKeyAttributeBytes = 1024
    /// Object labels and CKA_APPLICATION.
    public static let maxLabelBytes = 1024
    /// Certificate and data object values.
    public static let maxObjectBytes = 1 << 20
    /// Wrong admin passwords per client identity before each further try waits (exponential backoff).
    public static let freePasswordFailures = 3
    public static let maxPasswordBackoffMs = 60_000
    /// Admin calls (scrypt) waiting for the admin worker; beyond this they are refused with 503.
    public static let maxQueuedAdminCalls = 32

    public init() {}

    func maxConnections(_ l: RequestContext.Listener) -> Int {
        switch l {
        case .api: maxConnectionsAPI
        case .internal: maxConnectionsInternal
        case .health: maxConnectionsHealth
        case .bootstrapSlave: maxConnectionsBootstrapSlave
        }
    }

    /// Largest body accepted for a request to `path` on `listener`, decided from the header alone.
    func maxBody(listener: RequestContext.Listener, path: String, authenticated: Bool) -> Int {
        switch listener {
        case .health, .bootstrapSlave: return ServiceLimits.maxUnauthenticatedBodyBytes
        case .internal: return authenticated ? maxStateBodyBytes : ServiceLimits.maxUnauthenticatedBodyBytes
        case .api:
            guard authenticated else { return ServiceLimits.maxUnauthenticatedBodyBytes }
            return RouteTable.api[path]?.stateBody == true ? maxStateBodyBytes : maxBodyBytes
        }
    }

    /// Reads the optional `"limits"` object of `config.json`; names the member that is unknown or
    /// out of range. Integers may be written as numbers or, as jsonpb writes int64, as strings.
    init(_ file: ConfigFile, _ v: JSONValue?) throws(ConfigFile.Problem) {
        self.init()
        guard let v else { return }
        try file.onlyKnown(v, at: "limits", ServiceLimits.configurable.map(\.0))
        for (name, key, range) in ServiceLimits.configurable {
            guard let field = v[name] else { continue }
            let n: Int?
            switch field {
            // Int(String) refuses fractions, exponents and anything beyond Int's range.
            case .number(let s), .string(let s): n = Int(s)
            default: n = nil
            }
            guard let n, range.contains(n) else {
                throw file.problem(
                    "limits.\(name)", "must be an integer from \(range.lowerBound) to \(range.upperBound), not \(ConfigFile.kind(field))")
            }
            self[keyPath: key] = n
        }
    }

    /// The limits `config.json` may set: its name there, the field, the accepted range. Reading
    /// and writing the file both go through this one table.
    static let configurable: [(String, WritableKeyPath<ServiceLimits, Int> & Sendable, ClosedRange<Int>)] = [
        ("maxConnectionsAPI", \.maxConnectionsAPI, 1...1_000_000),
        ("maxConnectionsInternal", \.maxConnectionsInternal, 1...100_000),
        ("maxConnectionsHealth", \.maxConnectionsHealth, 1...100_000),
        ("maxConnectionsBootstrapSlave", \.maxConnectionsBootstrapSlave, 1...100_000),
        ("handshakeTimeoutMs", \.handshakeTimeoutMs, 100...600_000),
        ("requestTimeoutMs", \.requestTimeoutMs, 100...3_600_000),
        ("idleTimeoutMs", \.idleTimeoutMs, 100...3_600_000),
        ("maxBodyBytes", \.maxBodyBytes, 1024...(256 << 20)),
        ("maxStateBodyBytes", \.maxStateBodyBytes, 1024...(256 << 20)),
        ("maxStateBytes", \.maxStateBytes, 1024...(48 << 20)),
        ("maxCryptoInputBytes", \.maxCryptoInputBytes, 1024...(64 << 20)),
        ("minStoredRSABits", \.minStoredRSABits, 1024...4096),
        ("readableKeys", \.readableKeys, 0...2),
        ("auditFileBytes", \.auditFileBytes, 4096...(1 << 30)),
    ]

    var json: JSONValue {
        var w = WireWriter()
        for (name, key, _) in ServiceLimits.configurable { w.int64(name, Int64(self[keyPath: key])) }
        return w.value
    }
}
