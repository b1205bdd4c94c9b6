import Glibc
import VSSMSync
import TokenCore
import VSSMClient
import VSSMServiceAdapter
import VSSMWire

/// The module's configuration file (JSON):
/// ```json
/// {"slots": [{"label": "vssm", "endpoints": ["https://127.0.0.1:8080"], "serverName": "VSSM",
///             "ca": "/etc/vssm/ca.pem", "clientCert": "...pem", "clientKey": "...pem",
///             "userPinIsAdminPassword": false, "refreshSeconds": 60,
///             "connectTimeoutMs": 3000, "requestTimeoutMs": 30000}]}
/// ```
/// Tenants: `"namespace": "ns"` picks one of the principal's namespaces; `"namespaces": ["a", "b"]`
/// makes one slot per namespace (labelled with it), `"namespaces": "auto"` asks the service which.
/// Found at: `pInitArgs->pReserved` (a path), else `$VSSM_PKCS11_CONFIG`, else
/// `$XDG_CONFIG_HOME/vssm/pkcs11.json` (default `~/.config/vssm/pkcs11.json`), else `/etc/vssm/pkcs11.json`.
struct ModuleConfig {
    struct Slot {
        var label: String
        var endpoints: [Endpoint]
        var serverName: String
        var ca: String
        var clientCert: String
        var clientKey: String
        var userPinIsAdminPassword: Bool
        var refreshSeconds: Double
        var connectTimeoutMs: Int
        var requestTimeoutMs: Int
        var endpointOrder: EndpointOrder = .ordered
        /// The namespace of the service this slot shows (`X-VSSM-Namespace`; nil: the principal's first).
        var namespace: String?
        /// `"namespaces": "auto"`: one slot per namespace of the principal, asked at C_Initialize.
        var autoNamespaces = false
        /// The PEM files' contents, read when the configuration is loaded.
        var caPEM: [UInt8] = []
        var certPEM: [UInt8] = []
        var keyPEM: [UInt8] = []
    }
    var path: String
    var slots: [Slot]

    /// The configuration this address space loaded last, and the process that loaded it. A forked
    /// child that calls C_Initialize again without an explicit path reuses it: servers such as nginx
    /// clear their workers' environment and drop privileges after fork, so reading again could find
    /// another file or none, or fail on the client key's permissions.
    private static let lastLoaded = Locked<(pid: pid_t, config: ModuleConfig)?>(nil)

    /// The configuration for C_Initialize (see `lastLoaded` for the forked-child rule).
    static func forInitialize(explicit: String?) throws(TokenError) -> ModuleConfig {
        if explicit == nil, let last = lastLoaded.withLock({ $0 }), last.pid != getpid() {
            Log.write(.info, "forked child: reusing the configuration loaded by process \(last.pid) from \(last.config.path)")
            return last.config
        }
        let config = try load(explicit: explicit)
        let pid = getpid()
        lastLoaded.withLock { $0 = (pid, config) }
        return config
    }

    /// After C_Finalize: the client key bytes are not kept beyond the library's life.
    static func forget() { lastLoaded.withLock { $0 = nil } }

    static func candidatePaths(explicit: String?) -> [String] {
        if let explicit { return [explicit] }
        if let e = env("VSSM_PKCS11_CONFIG") { return [e] }
        var paths: [String] = []
        if let x = env("XDG_CONFIG_HOME") { paths.append(x + "/vssm/pkcs11.json") } else if let h = env("HOME") {
            paths.append(h + "/.config/vssm/pkcs11.json")
        }
        paths.append("/etc/vssm/pkcs11.json")
        return paths
    }

    static func env(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        let s = String(cString: v)
        return s.isEmpty ? nil : s
    }

    static func load(explicit: String?) throws(TokenError) -> ModuleConfig {
        let candidates = candidatePaths(explicit: explicit)
        guard let path = candidates.first(where: { access($0, R_OK) == 0 }) else {
            let message = "no configuration file (looked at \(candidates.joined(separator: ", ")); set VSSM_PKCS11_CONFIG)"
            // A path the caller passed in pReserved is its argument; a file we looked for is our failure.
            if explicit != nil { throw .argumentsBad(message) }
            if env("VSSM_PKCS11_CONFIG") != nil { throw .functionFailed(message) }
            // Registered with p11-kit, the module is loaded into every NSS and GnuTLS program of
            // every user; one without a configuration gets a library with no slot, quietly (no
            // file read but the lookups above, no network, nothing printed).
            Log.write(.info, message + "; no slots")
            return ModuleConfig(path: "(no configuration)", slots: [])
        }
        let bytes = try readFile(path)
        let root: JSONValue
        do { root = try JSONParser.parse(bytes) } catch { throw .functionFailed("\(path): not valid JSON: \(error.message)") }
        guard case .array(let items)? = root["slots"], !items.isEmpty else { throw .functionFailed("\(path): no \"slots\" array") }
        // The directory of the file (plain slicing: a generic `joined` here was the process's first
        // protocol-conformance lookup, a scan of the whole image's records: 0.5 ms of C_Initialize).
        let dir = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? ""
        func resolve(_ p: String) -> String { p.hasPrefix("/") || dir.isEmpty ? p : dir + "/" + p }
        var slots: [Slot] = []
        for (i, item) in items.enumerated() {
            func str(_ k: String) throws(TokenError) -> String {
                guard case .string(let s)? = item[k], !s.isEmpty else { throw .functionFailed("\(path): slots[\(i)].\(k) is missing") }
                return s
            }
            /// A number from the file, refused unless finite and within `range` (a hostile or
            /// mistyped `1e400` or `2^40` must never reach an integer conversion).
            func num(_ k: String, _ d: Double, _ range: ClosedRange<Int>) throws(TokenError) -> Double {
                guard let value = item[k] else { return d }
                guard case .number(let n) = value, let v = Double(n), v.isFinite,
                      v >= Double(range.lowerBound), v <= Double(range.upperBound) else {
                    throw .functionFailed("\(path): slots[\(i)].\(k) must be a number from \(range.lowerBound) to \(range.upperBound)")
                }
                return v
            }
            /// A whole number of milliseconds from the file, in `range` (never a trapping conversion).
            func ms(_ k: String, _ d: Int, _ range: ClosedRange<Int>) throws(TokenError) -> Int {
                Int(exactly: try num(k, Double(d), range).rounded(.towardZero)) ?? d
            }
            guard case .array(let eps)? = item["endpoints"], !eps.isEmpty else { throw .functionFailed("\(path): slots[\(i)].endpoints is missing") }
            var endpoints: [Endpoint] = []
            for e in eps {
                guard case .string(let s) = e, let ep = Endpoint(s), ep.port > 0 else { throw .functionFailed("\(path): slots[\(i)]: bad endpoint \(e)") }
                endpoints.append(ep)
            }
            var admin = false
            if case .bool(let b)? = item["userPinIsAdminPassword"] { admin = b }
            let serverName: String = if case .string(let s)? = item["serverName"], !s.isEmpty { s } else { "VSSM" }
            let label: String = if case .string(let s)? = item["label"], !s.isEmpty { s } else { "vssm" }
            var slot = Slot(label: label, endpoints: endpoints, serverName: serverName, ca: resolve(try str("ca")),
                            clientCert: resolve(try str("clientCert")), clientKey: resolve(try str("clientKey")),
                            userPinIsAdminPassword: admin, refreshSeconds: try num("refreshSeconds", 60, 0...86_400),
                            connectTimeoutMs: try ms("connectTimeoutMs", 3000, 1...600_000),
                            requestTimeoutMs: try ms("requestTimeoutMs", 30000, 1...3_600_000))
            if let value = item["endpointOrder"] {
                guard case .string(let text) = value, let order = EndpointOrder(rawValue: text) else {
                    throw .functionFailed("\(path): slots[\(i)].endpointOrder must be \"ordered\" or \"round-robin\"")
                }
                slot.endpointOrder = order
            }
            slot.caPEM = try readFile(slot.ca)
            slot.certPEM = try readFile(slot.clientCert)
            slot.keyPEM = try readFile(slot.clientKey)
            // "namespaces": one slot per namespace of the principal, each labelled with its name.
            if case .string(let ns)? = item["namespace"] {
                guard NamespaceName.isValid(ns) else {
                    throw .functionFailed("\(path): slots[\(i)].namespace: \(ns) is not a namespace (a-z, 0-9, '.', '_', '-')")
                }
                slot.namespace = ns
            }
            if case .string("auto")? = item["namespaces"] {
                slot.autoNamespaces = true
                slots.append(slot)
                continue
            }
            if let value = item["namespaces"] {
                guard case .array(let list) = value, !list.isEmpty, list.count <= 64 else {
                    throw .functionFailed("\(path): slots[\(i)].namespaces must be \"auto\" or a non-empty array of up to 64 names")
                }
                for entry in list {
                    guard case .string(let ns) = entry, NamespaceName.isValid(ns) else {
                        throw .functionFailed("\(path): slots[\(i)].namespaces: \(entry) is not a namespace (a-z, 0-9, '.', '_', '-')")
                    }
                    slots.append(slot.inNamespace(ns))
                }
                continue
            }
            slots.append(slot)
        }
        return ModuleConfig(path: path, slots: slots)
    }

    static func readFile(_ path: String) throws(TokenError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .functionFailed("cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 { if errno == EINTR { continue }; throw .functionFailed("cannot read \(path)") }
            if n == 0 { break }
            out += chunk.prefix(n)
            if out.count > 4 << 20 { throw .functionFailed("\(path) is too large") }
        }
        return out
    }

    /// The TLS settings of a slot's key service.
    static func tls(_ s: Slot, passphrase: String?) -> TLSClientConfiguration {
        var tls = TLSClientConfiguration(endpoints: s.endpoints)
        tls.serverName = s.serverName
        tls.trustPEM = s.caPEM
        tls.clientCertificatePEM = s.certPEM
        tls.clientKeyPEM = s.keyPEM
        tls.clientKeyPassphrase = passphrase
        tls.connectTimeoutMs = s.connectTimeoutMs
        tls.requestTimeoutMs = s.requestTimeoutMs
        tls.order = s.endpointOrder
        tls.namespace = s.namespace
        return tls
    }

    /// The slots with `"namespaces": "auto"` expanded: one per namespace of the slot's principal,
    /// asked from the service (`ext/whoami`, one round trip, only for such slots). Without an
    /// answer — an encrypted client key (no PIN yet), a service without principals, an error —
    /// the slot stays one slot in the principal's default namespace.
    func expandedSlots() -> [Slot] {
        var out: [Slot] = []
        for slot in slots {
            guard slot.autoNamespaces, !String(decoding: slot.keyPEM, as: UTF8.self).contains("ENCRYPTED") else {
                out.append(slot)
                continue
            }
            let namespaces: [String]
            do throws(TokenError) {
                let service = try VSSMKeyService(ModuleConfig.tls(slot, passphrase: nil))
                namespaces = try service.principalNamespaces() ?? []
                service.closeConnections()
            } catch {
                Log.write(.warn, "\(path): slot \(slot.label): cannot ask the service for the principal's namespaces (\(error)); one slot")
                namespaces = []
            }
            guard !namespaces.isEmpty else {
                out.append(slot)
                continue
            }
            for ns in namespaces.prefix(64) where NamespaceName.isValid(ns) { out.append(slot.inNamespace(ns)) }
        }
        return out
    }

    /// Tokens for the library: each builds its key service lazily (no network here, except to
    /// expand `"namespaces": "auto"`).
    func tokens() -> [Token] {
        var tokens: [Token] = []
        for (i, slot) in expandedSlots().enumerated() {
            let encrypted = String(decoding: slot.keyPEM, as: UTF8.self).contains("ENCRYPTED")
            let serial = String(format16: UInt(clamping: i) &+ 1, seed: (slot.endpoints.first?.description ?? "") + (slot.namespace ?? ""))
            let cfg = SlotConfiguration(label: slot.label, serial: serial, loginRequired: encrypted,
                                        userPinIsAdminPassword: slot.userPinIsAdminPassword, refreshSeconds: slot.refreshSeconds)
            let s = slot
            tokens.append(Token(slotID: UInt(clamping: i), configuration: cfg) { (pin: String?) throws(TokenError) -> any KeyService in
                do throws(TokenError) { return try VSSMKeyService(ModuleConfig.tls(s, passphrase: pin)) } catch {
                    if encrypted, case .functionFailed(let m) = error, m.contains("wrong passphrase") || m.contains("decrypt") { throw .pinIncorrect }
                    throw error
                }
            })
        }
        return tokens
    }
}

extension ModuleConfig.Slot {
    /// The slot, showing namespace `ns` (labelled with it).
    func inNamespace(_ ns: String) -> ModuleConfig.Slot {
        var one = self
        one.namespace = ns
        one.label = ns
        return one
    }
}

extension String {
    /// A 16-character serial: slot number and a hash of the first endpoint (unique per slot).
    init(format16 slot: UInt, seed: String) {
        var h: UInt32 = 2166136261
        for b in seed.utf8 { h = (h ^ UInt32(b)) &* 16777619 }
        let hex = String(h, radix: 16, uppercase: true)
        let s = String(slot) + "-" + String(repeating: "0", count: Swift.max(0, 8 - hex.count)) + hex
        self = String(s.prefix(16))
    }
}
