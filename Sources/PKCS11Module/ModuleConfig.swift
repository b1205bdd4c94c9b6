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
    typealias Slot = PKCS11Configuration.Slot
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

    /// fork() support (see `Library.prepareFork`): this lock too is never inherited locked.
    static func prepareFork() { lastLoaded.lockForFork() }
    static func afterFork() { lastLoaded.unlockAfterFork() }

    /// After C_Finalize: the client key bytes are not kept beyond the library's life.
    static func forget() { lastLoaded.withLock { $0 = nil } }

    static func candidatePaths(explicit: String?) -> [String] {
        if let explicit { return [explicit] }
        if let e = env("VSSM_PKCS11_CONFIG") { return [e] }
        var paths: [String] = []
        if let x = env("XDG_CONFIG_HOME") {
            paths.append(x + "/vssm/pkcs11.json")
        } else if let h = env("HOME") {
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
        do throws(ConfigFile.Problem) {
            let file = try ConfigFile(path: path, bytes: bytes)
            return try parse(file)
        } catch {
            throw .functionFailed(error.message)
        }
    }

    /// Every member checked (PKCS11Configuration); the log settings applied; the client
    /// certificate's dates checked (an expiry is seen before the service refuses it: warned at the
    /// default log level 30 days ahead).
    static func parse(_ file: ConfigFile) throws(ConfigFile.Problem) -> ModuleConfig {
        let parsed = try PKCS11Configuration.parse(file) { (p: String) throws(ConfigFile.Problem) -> [UInt8] in
            do throws(TokenError) { return try readFile(p) } catch { throw ConfigFile.Problem(error.message) }
        }
        if let log = parsed.log { Log.apply(level: log.level, file: log.file, syslog: log.syslog, source: file.path) }
        for slot in parsed.slots {
            if let warning = CertificateValidity(pem: slot.certPEM)?.warning(file: slot.clientCert) {
                Log.write(.error, "warning: slot \(slot.label): " + warning)
            }
        }
        return ModuleConfig(path: parsed.path, slots: parsed.slots)
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
                let service = try VSSMKeyService(slot.tls(passphrase: nil))
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
    /// `threads`: the host lets the module start threads (no CKF_LIBRARY_CANT_CREATE_OS_THREADS).
    func tokens(threads: Bool = true) -> [Token] {
        var tokens: [Token] = []
        for (i, slot) in expandedSlots().enumerated() {
            let encrypted = String(decoding: slot.keyPEM, as: UTF8.self).contains("ENCRYPTED")
            let serial = String(format16: UInt(clamping: i) &+ 1, seed: (slot.endpoints.first?.description ?? "") + (slot.namespace ?? ""))
            let cfg = SlotConfiguration(
                label: slot.label, serial: serial, loginRequired: encrypted,
                userPinIsAdminPassword: slot.userPinIsAdminPassword, refreshSeconds: slot.refreshSeconds,
                attestationObjects: slot.attestationObjects, followChanges: slot.followChanges && threads)
            let s = slot
            tokens.append(
                Token(slotID: UInt(clamping: i), configuration: cfg) { (pin: String?) throws(TokenError) -> any KeyService in
                    do throws(TokenError) { return try VSSMKeyService(s.tls(passphrase: pin)) } catch {
                        if encrypted, case .functionFailed(let m) = error, m.contains("wrong passphrase") || m.contains("decrypt") {
                            throw .pinIncorrect
                        }
                        throw error
                    }
                })
        }
        return tokens
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
