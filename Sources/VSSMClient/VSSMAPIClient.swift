public import VSSMWire

/// Typed access to a VSSM key service (original API and our `/REST/v1/ext/` extensions).
public final class VSSMAPIClient: Sendable {
    public let http: HTTPSClient

    public init(_ configuration: TLSClientConfiguration) throws(ClientError) {
        http = try HTTPSClient(configuration)
    }

    public init(http: HTTPSClient) { self.http = http }

    /// POSTs a message and decodes the answer. Non-200 answers become `.http(status, error text)`.
    public func call(
        _ path: String, _ request: WireWriter, response schema: MessageSchema,
        idempotent: Bool
    ) throws(ClientError) -> WireObject {
        try call(path, body: request.bytes, response: schema, idempotent: idempotent)
    }

    /// The same with a request body given as bytes (e.g. a file sent as is).
    public func call(
        _ path: String, body: [UInt8], response schema: MessageSchema,
        idempotent: Bool
    ) throws(ClientError) -> WireObject {
        let r = try http.post(path, body: body, idempotent: idempotent)
        guard r.status == 200 else { throw VSSMAPIClient.error(from: r) }
        do {
            return try WireObject.decode(r.body, as: schema)
        } catch {
            throw .protocolError("unexpected response from \(path): \(error.message)")
        }
    }

    /// A long poll on a connection of its own (`HTTPSClient.postWaiting`), decoded like `call`.
    public func callWaiting(
        _ path: String, _ request: WireWriter, response schema: MessageSchema, waitMs: Int, handle: LongPollHandle
    ) throws(ClientError) -> WireObject {
        let r = try http.postWaiting(path, body: request.bytes, waitMs: waitMs, handle: handle)
        guard r.status == 200 else { throw VSSMAPIClient.error(from: r) }
        do {
            return try WireObject.decode(r.body, as: schema)
        } catch {
            throw .protocolError("unexpected response from \(path): \(error.message)")
        }
    }

    /// Raw POST of a JSON body, for tools that print the answer as is.
    public func raw(_ path: String, body: [UInt8], idempotent: Bool) throws(ClientError) -> HTTPResponse {
        try http.post(path, body: body, idempotent: idempotent)
    }

    static func error(from r: HTTPResponse) -> ClientError {
        if let v = try? JSONParser.parse(r.body), case .string(let m)? = v["error"] {
            return .http(status: r.status, message: m)
        }
        let text = r.text.count > 200 ? String(r.text.prefix(200)) + "..." : r.text
        return .http(status: r.status, message: text.isEmpty ? "HTTP status \(r.status)" : text)
    }

    // MARK: - Admin helpers used by the CLI and tests

    public func generateKey(password: String, name: String, type: KeyType, spec: KeySpec? = nil, size: UInt64) throws(ClientError) {
        var w = WireWriter()
        w.string("adminPassword", password)
        w.string("keyName", name)
        w.string("keyType", type.rawValue)
        w.string("keySpec", spec?.rawValue ?? "")
        w.uint64("keySize", size)
        _ = try call(Route.generateKey, w, response: Schemas.empty, idempotent: false)
    }

    public func injectKey(password: String, name: String, type: KeyType, key: [UInt8]) throws(ClientError) {
        var w = WireWriter()
        w.string("adminPassword", password)
        w.string("keyName", name)
        w.string("keyType", type.rawValue)
        w.bytes("key", key)
        _ = try call(Route.injectKey, w, response: Schemas.empty, idempotent: false)
    }

    public func listKeys(password: String, name: String = "", type: KeyType? = nil) throws(ClientError) -> WireObject {
        var w = WireWriter()
        w.string("adminPassword", password)
        w.string("keyName", name)
        w.string("keyType", type?.rawValue ?? "")
        return try call(Route.listKeys, w, response: Schemas.listKeysResponse, idempotent: true)
    }

    public func generateBackup(password: String) throws(ClientError) -> WireObject {
        var w = WireWriter()
        w.string("adminPassword", password)
        let r = try call(Route.generateBackup, w, response: Schemas.generateBackupResponse, idempotent: true)
        guard let blob = r.object("backup") else { throw .protocolError("backup response without a backup") }
        return blob
    }

    public func restoreBackup(password: String, blob: JSONValue) throws(ClientError) {
        var w = WireWriter()
        w.string("adminPassword", password)
        w.object("backup", blob)
        _ = try call(Route.restoreBackup, w, response: Schemas.empty, idempotent: false)
    }

    public func logs(password: String) throws(ClientError) -> [String] {
        var w = WireWriter()
        w.string("adminPassword", password)
        return try call(Route.getLogs, w, response: Schemas.getLogsResponse, idempotent: true).strings("log")
    }

    /// The audit trail (`ext/audit`), filtered, and its chain verified when asked.
    public func audit(
        password: String, principal: String = "", key: String = "", since: String = "",
        verify: Bool = false, limit: UInt64 = 0, head: String = ""
    ) throws(ClientError) -> WireObject {
        var w = WireWriter()
        w.string("adminPassword", password)
        w.string("principal", principal)
        w.string("key", key)
        w.string("since", since)
        w.bool("verify", verify)
        w.uint64("limit", limit)
        if !head.isEmpty { w.string("head", head) }
        return try call(Route.extAudit, w, response: ExtSchemas.auditResponse, idempotent: true)
    }

    // MARK: - Principals (root admin)

    /// Registers a client certificate (DER) as a principal; returns its SHA-256 fingerprint.
    public func addPrincipal(
        password: String, name: String, certificate: [UInt8], role: String, namespaces: [String], pin: String?
    ) throws(ClientError) -> String {
        var w = WireWriter()
        w.string("adminPassword", password)
        w.string("name", name)
        w.bytes("certificate", certificate)
        w.string("role", role)
        w.strings("namespaces", namespaces)
        w.string("pin", pin ?? "")
        let r = try call(Route.extPrincipalAdd, w, response: ExtSchemas.principalAddResponse, idempotent: false)
        return r.string("fingerprint")
    }

    public func listPrincipals(password: String) throws(ClientError) -> [WireObject] {
        var w = WireWriter()
        w.string("adminPassword", password)
        return try call(Route.extPrincipalList, w, response: ExtSchemas.principalListResponse, idempotent: true).objects("principals")
    }

    public func removePrincipal(password: String, name: String) throws(ClientError) {
        var w = WireWriter()
        w.string("adminPassword", password)
        w.string("name", name)
        _ = try call(Route.extPrincipalRemove, w, response: Schemas.empty, idempotent: false)
    }

    /// Sets (or with "" removes) a principal's PIN.
    public func setPrincipalPIN(password: String, name: String, pin: String) throws(ClientError) {
        var w = WireWriter()
        w.string("adminPassword", password)
        w.string("name", name)
        w.string("pin", pin)
        _ = try call(Route.extPrincipalSetPIN, w, response: Schemas.empty, idempotent: false)
    }

    /// A join credential for a new node (`name`, `secret`).
    public func addNode(password: String, name: String) throws(ClientError) -> WireObject {
        var w = WireWriter()
        w.string("adminPassword", password)
        w.string("name", name)
        return try call(Route.extNodeAdd, w, response: ExtSchemas.nodeAddResponse, idempotent: false)
    }

    public func removeNode(password: String, name: String) throws(ClientError) {
        var w = WireWriter()
        w.string("adminPassword", password)
        w.string("name", name)
        _ = try call(Route.extNodeRemove, w, response: Schemas.empty, idempotent: false)
    }

    public func listNodes(password: String) throws(ClientError) -> [String] {
        var w = WireWriter()
        w.string("adminPassword", password)
        return try call(Route.extNodeList, w, response: ExtSchemas.nodeListResponse, idempotent: true).strings("names")
    }

    public func whoAmI() throws(ClientError) -> WireObject {
        try call(Route.extWhoAmI, WireWriter(), response: ExtSchemas.whoAmIResponse, idempotent: true)
    }

    public func sign(key: String, algorithm: String, input: [UInt8]? = nil, hashed: [UInt8]? = nil) throws(ClientError) -> [UInt8] {
        var w = WireWriter()
        w.bytes("input", input)
        w.bytes("hashed", hashed)
        w.string("keyName", key)
        w.string("algorithm", algorithm)
        return try call(Route.asymmetricSign, w, response: Schemas.asymmetricSignResponse, idempotent: true).bytes("output") ?? []
    }
}
