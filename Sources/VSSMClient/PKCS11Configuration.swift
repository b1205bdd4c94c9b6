import Glibc
public import VSSMWire

/// The PKCS#11 module's configuration file (`pkcs11.json`), parsed strictly (every member known,
/// of the right type, in range; problems name the file, member, line and column). Shared by the
/// module and `vssm doctor`. Reference: docs/config-module.md.
public struct PKCS11Configuration: Sendable {
    public struct Slot: Sendable {
        public var label: String
        public var endpoints: [Endpoint]
        public var serverName: String
        public var ca: String
        public var clientCert: String
        public var clientKey: String
        public var userPinIsAdminPassword: Bool
        public var refreshSeconds: Double
        public var connectTimeoutMs: Int
        public var requestTimeoutMs: Int
        public var endpointOrder: EndpointOrder = .ordered
        /// The namespace of the service this slot shows (`X-VSSM-Namespace`; nil: the principal's first).
        public var namespace: String?
        /// `"namespaces": "auto"`: one slot per namespace of the principal, asked at C_Initialize.
        public var autoNamespaces = false
        /// `"attestationObjects": true`: each key generated in the service shows its attestation
        /// statement as a certificate object with the key's CKA_ID (off by default: a second
        /// certificate with a key's ID would confuse hosts that pair them by ID).
        public var attestationObjects = false
        /// `"followChanges"` (default true): learn of keys made, changed or deleted elsewhere from
        /// the service's long poll instead of listing every `refreshSeconds`.
        public var followChanges = true
        /// The PEM files' contents, read when the configuration is loaded.
        public var caPEM: [UInt8] = []
        public var certPEM: [UInt8] = []
        public var keyPEM: [UInt8] = []
    }
    /// The optional `"log"` member (the module applies it; `VSSM_PKCS11_LOG` overrides it).
    public struct LogSettings: Sendable {
        public var level: String?
        public var file: String?
        public var syslog: Bool?
    }

    public var path: String
    public var slots: [Slot]
    public var log: LogSettings?

    public init(path: String, slots: [Slot], log: LogSettings? = nil) {
        self.path = path
        self.slots = slots
        self.log = log
    }

    public static let topMembers = ["slots", "log"]
    public static let slotMembers = [
        "label", "endpoints", "endpointOrder", "serverName", "ca", "clientCert", "clientKey",
        "userPinIsAdminPassword", "namespace", "namespaces", "refreshSeconds", "connectTimeoutMs",
        "requestTimeoutMs", "attestationObjects", "followChanges",
    ]

    /// Every member checked (known, right type, in range); the PEM files read.
    public static func parse(
        _ file: ConfigFile, readFile: (String) throws(ConfigFile.Problem) -> [UInt8]
    ) throws(ConfigFile.Problem) -> PKCS11Configuration {
        let path = file.path
        try file.onlyKnown(file.root, at: "", topMembers)
        var logSettings: LogSettings?
        if let log = try file.object(file.root, "log", at: "") {
            try file.onlyKnown(log, at: "log", ["level", "file", "syslog"])
            logSettings = LogSettings(
                level: try file.string(log, "level", at: "log"), file: try file.string(log, "file", at: "log"),
                syslog: try file.bool(log, "syslog", at: "log"))
        }
        guard let slotsValue = file.root["slots"] else {
            throw ConfigFile.Problem("\(path): no \"slots\" member (see docs/config-module.md)")
        }
        guard case .array(let items) = slotsValue, !items.isEmpty else {
            throw file.problem("slots", "must be a non-empty array of slot objects")
        }
        // The directory of the file (plain slicing: a generic `joined` here was the process's first
        // protocol-conformance lookup, a scan of the whole image's records: 0.5 ms of C_Initialize).
        let dir = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? ""
        func resolve(_ p: String) -> String { p.hasPrefix("/") || dir.isEmpty ? p : dir + "/" + p }
        var slots: [Slot] = []
        for (i, item) in items.enumerated() {
            let at = "slots[\(i)]"
            guard case .object = item else { throw file.problem(at, "must be an object ({...})") }
            try file.onlyKnown(item, at: at, slotMembers)
            func required(_ k: String) throws(ConfigFile.Problem) -> String {
                guard let s = try file.string(item, k, at: at), !s.isEmpty else {
                    throw ConfigFile.Problem("\(file.location(at)): \(at).\(k) is missing (a path to a PEM file)")
                }
                return s
            }
            /// A whole number of milliseconds in `range` (never a trapping conversion).
            func ms(_ k: String, _ d: Int, _ range: ClosedRange<Double>) throws(ConfigFile.Problem) -> Int {
                guard let v = try file.number(item, k, at: at, range, integer: true) else { return d }
                return Int(exactly: v) ?? d
            }
            guard let eps = try file.strings(item, "endpoints", at: at), !eps.isEmpty else {
                throw ConfigFile.Problem("\(file.location(at)): \(at).endpoints is missing (a list of https://host:port)")
            }
            var endpoints: [Endpoint] = []
            for (j, e) in eps.enumerated() {
                guard let ep = Endpoint(e), ep.port > 0 else {
                    throw file.problem("\(at).endpoints[\(j)]", "\"\(e)\" is not an https://host:port URL")
                }
                endpoints.append(ep)
            }
            let admin = try file.bool(item, "userPinIsAdminPassword", at: at) ?? false
            let serverName = try file.string(item, "serverName", at: at).flatMap { $0.isEmpty ? nil : $0 } ?? "VSSM"
            let label = try file.string(item, "label", at: at).flatMap { $0.isEmpty ? nil : $0 } ?? "vssm"
            var slot = Slot(
                label: label, endpoints: endpoints, serverName: serverName, ca: resolve(try required("ca")),
                clientCert: resolve(try required("clientCert")), clientKey: resolve(try required("clientKey")),
                userPinIsAdminPassword: admin,
                refreshSeconds: try file.number(item, "refreshSeconds", at: at, 0...86_400, integer: false) ?? 60,
                connectTimeoutMs: try ms("connectTimeoutMs", 3000, 1...600_000),
                requestTimeoutMs: try ms("requestTimeoutMs", 30000, 1...3_600_000))
            slot.attestationObjects = try file.bool(item, "attestationObjects", at: at) ?? false
            slot.followChanges = try file.bool(item, "followChanges", at: at) ?? true
            if let text = try file.string(item, "endpointOrder", at: at) {
                guard let order = EndpointOrder(rawValue: text) else {
                    throw file.problem("\(at).endpointOrder", "must be \"ordered\" or \"round-robin\", not \"\(text)\"")
                }
                slot.endpointOrder = order
            }
            do throws(ConfigFile.Problem) {
                slot.caPEM = try readFile(slot.ca)
                slot.certPEM = try readFile(slot.clientCert)
                slot.keyPEM = try readFile(slot.clientKey)
            } catch {
                throw ConfigFile.Problem("\(file.location(at)): \(at): \(error.message)")
            }
            if let ns = try file.string(item, "namespace", at: at) {
                guard NamespaceName.isValid(ns) else {
                    throw file.problem("\(at).namespace", "\(ns) is not a namespace (a-z, 0-9, '.', '_', '-')")
                }
                slot.namespace = ns
            }
            // "namespaces": one slot per namespace of the principal, each labelled with its name.
            if case .string(let text)? = item["namespaces"] {
                guard text == "auto" else {
                    throw file.problem("\(at).namespaces", "must be \"auto\" or an array of names, not \"\(text)\"")
                }
                slot.autoNamespaces = true
                slots.append(slot)
                continue
            }
            if let list = try file.strings(item, "namespaces", at: at) {
                guard !list.isEmpty, list.count <= 64 else {
                    throw file.problem("\(at).namespaces", "must be \"auto\" or a non-empty array of up to 64 names")
                }
                for ns in list {
                    guard NamespaceName.isValid(ns) else {
                        throw file.problem("\(at).namespaces", "\(ns) is not a namespace (a-z, 0-9, '.', '_', '-')")
                    }
                    slots.append(slot.inNamespace(ns))
                }
                continue
            }
            slots.append(slot)
        }
        return PKCS11Configuration(path: path, slots: slots, log: logSettings)
    }

}

extension PKCS11Configuration.Slot {
    /// The slot, showing namespace `ns` (labelled with it).
    public func inNamespace(_ ns: String) -> PKCS11Configuration.Slot {
        var one = self
        one.namespace = ns
        one.label = ns
        return one
    }

    /// The TLS settings of the slot's key service.
    public func tls(passphrase: String?) -> TLSClientConfiguration {
        var tls = TLSClientConfiguration(endpoints: endpoints)
        tls.serverName = serverName
        tls.trustPEM = caPEM
        tls.trustDescription = "the CA file \(ca)"
        tls.clientCertificatePEM = certPEM
        tls.clientKeyPEM = keyPEM
        tls.clientKeyPassphrase = passphrase
        tls.connectTimeoutMs = connectTimeoutMs
        tls.requestTimeoutMs = requestTimeoutMs
        tls.order = endpointOrder
        tls.namespace = namespace
        return tls
    }
}
