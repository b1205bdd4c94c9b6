import VSSMCrypto
import VSSMSync
import VSSMWire

/// What a registered client may do (`Principal.role`). The root admin is whoever holds the admin
/// password: principals, backups, restore, the whole audit trail.
public enum PrincipalRole: String, Sendable, CaseIterable {
    /// Uses the keys of its namespaces (sign, decrypt, MAC, session keys); manages nothing.
    case user
    /// Also creates, imports, copies, deletes and changes keys and objects of its namespaces.
    case officer
    /// Reads the audit records of its namespaces; uses no key.
    case auditor
}

/// A tenant's client identity: the SHA-256 fingerprint of its verified client certificate, with
/// the role and namespaces the root admin gave it. Kept in the sealed state and version-2 backups.
/// While no principal is registered every trusted client behaves as with the original VSSM.
public struct Principal: Sendable, Equatable {
    public var name: String
    /// Lowercase hex SHA-256 of the certificate (DER).
    public var fingerprint: String
    public var subject: String
    public var role: PrincipalRole
    /// Its namespaces; the first is where its requests resolve unless `X-VSSM-Namespace` picks another.
    public var namespaces: [String]
    /// scrypt hash (`$s0$` format) of its PIN; nil: no PIN (the admin password is its credential).
    public var pinHash: String?
    public var createdAt: Int64
}

extension Principal {
    /// The namespace a request works in: the one it asks for (`X-VSSM-Namespace`) when that is one
    /// of this principal's, its first when it asks for none; nil when it asks for another's.
    func namespace(requested: String?) -> String? {
        guard let wanted = requested, !wanted.isEmpty else { return namespaces.first ?? Namespace.defaultName }
        return namespaces.contains(wanted) ? wanted : nil
    }
}

/// Namespaces partition keys and objects. Keys of the `default` namespace keep their plain names
/// (every key from before principals, from the original API and from Go peers); a key of
/// namespace `ns` is stored as `@ns/name`, so its namespace travels with it wherever the name goes
/// (peer sync and version-1 backups carry names only). `@` starts no other name.
public enum Namespace {
    public static let defaultName = "default"
    static let maxBytes = 64

    /// 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit (`NamespaceName`).
    static func check(_ ns: String) throws(ServiceError) {
        guard NamespaceName.isValid(ns) else {
            throw .badRequest(
                "Invalid namespace \"\(AuditNames.clean(ns))\": 1 to \(maxBytes) of a-z, 0-9, '.', '_', '-', starting with a letter or digit."
            )
        }
    }

    /// The stored name of key `name` of namespace `ns`.
    static func qualify(_ name: String, in ns: String) -> String { ns == defaultName ? name : "@" + ns + "/" + name }

    /// The namespace of a stored name and the name within it.
    static func split(_ stored: String) -> (namespace: String, name: String) {
        guard stored.startsWithByte("@"), let parts = stored.splitAtFirstSlash(droppingFirst: 1) else { return (defaultName, stored) }
        return (parts.before, parts.after)
    }
}

enum PrincipalCodec {
    static func encode(_ p: Principal, withPIN: Bool) -> JSONValue {
        var w = WireWriter()
        w.string("name", p.name)
        w.string("fingerprint", p.fingerprint)
        w.string("subject", p.subject)
        w.string("role", p.role.rawValue)
        w.strings("namespaces", p.namespaces)
        if withPIN { w.string("pinHash", p.pinHash ?? "") } else { w.bool("hasPin", p.pinHash != nil) }
        w.int64("createdAt", p.createdAt)
        return w.value
    }

    /// nil for anything malformed (it is read from our own sealed file or a backup, but never trusted).
    static func decode(_ v: JSONValue) -> Principal? {
        func str(_ k: String) -> String { if case .string(let s)? = v[k] { s } else { "" } }
        guard let role = PrincipalRole(rawValue: str("role")), !str("name").isEmpty,
            str("fingerprint").utf8.count == 64, case .array(let items)? = v["namespaces"]
        else { return nil }
        var namespaces: [String] = []
        for i in items {
            guard case .string(let ns) = i, (try? Namespace.check(ns)) != nil else { return nil }
            namespaces.append(ns)
        }
        guard !namespaces.isEmpty else { return nil }
        let pin = str("pinHash")
        if !pin.isEmpty && (try? PasswordHash(parsing: pin)) == nil { return nil }
        let created: Int64 = if case .string(let s)? = v["createdAt"] { Int64(s) ?? 0 } else { 0 }
        return Principal(
            name: str("name"), fingerprint: str("fingerprint").lowercased(), subject: str("subject"), role: role,
            namespaces: namespaces, pinHash: pin.isEmpty ? nil : pin, createdAt: created)
    }
}

extension KeyServiceNode {
    /// Decides who the caller is (once principals exist) and what it may call; sets the
    /// context's principal and namespace. Every running API request passes here.
    /// The route's declared access (`RouteTable`) is enforced here, before any handler runs.
    func authorize(path: String, body: [UInt8], _ ctx: inout RequestContext) throws(ServiceError) {
        guard let spec = RouteTable.api[path] else { throw .notFound("404 page not found") }
        let fingerprint = ctx.clientFingerprint.lowercased()
        let (any, principal) = state.withLock { s in (!s.principals.isEmpty, s.principals[fingerprint]) }
        let keyName = (ctx.auditFields ?? AuditNames.fields(in: body)).key
        guard any else {
            // The original model: every trusted client, every key; the admin password for management.
            return try checkDeclaredCredential(spec, body: body, sessionKey: keyName.hasPrefix("~"), ctx)
        }
        ctx.restricted = true
        // The root admin may work from any trusted certificate (registering the first principal
        // must not lock out the one who did it); everything else needs a registered one.
        if let why = RouteTable.refusal(spec.access, role: principal?.role, sessionKey: keyName.hasPrefix("~")) {
            let who = principal.map { "principal \($0.name)" } ?? "this client certificate (\(ctx.clientSubject), SHA-256 \(fingerprint))"
            if let principal { ctx.principalName = principal.name }
            throw .forbidden("Not permitted: \(who) \(why) (route access: \(spec.access.rawValue)).")
        }
        if let principal {
            ctx.principal = principal
            ctx.principalName = principal.name
            guard let namespace = principal.namespace(requested: ctx.requestedNamespace) else {
                throw .forbidden(
                    "Not permitted: principal \(principal.name) has no namespace \"\(AuditNames.clean(ctx.requestedNamespace ?? ""))\".")
            }
            ctx.namespace = namespace
        }
        try checkDeclaredCredential(spec, body: body, sessionKey: keyName.hasPrefix("~"), ctx)
    }

    // MARK: - Credentials

    /// The admin password alone (root admin calls; C_Login as CKU_SO).
    func checkRootPassword(_ r: WireObject, _ ctx: RequestContext) throws(ServiceError) {
        try checkRootPassword(given: r.string("adminPassword"), ctx)
    }

    func checkRootPassword(given: String, _ ctx: RequestContext) throws(ServiceError) {
        try passwordGuard.check(identity: KeyServiceNode.adminThrottleKey(ctx)) { () throws(ServiceError) -> Bool in
            try password.verify(given, cache: verifiedPasswords) { () throws(ServiceError) in try hashPermit(ctx) }
        }
    }

    /// Whether a password check may run scrypt now: never on an event loop (`needsHashing`: the
    /// request moves to the admin pool), and within the client's budget (`PasswordGuard`).
    private func hashPermit(_ ctx: RequestContext) throws(ServiceError) {
        if ctx.noHashing { throw .needsHashing }
        try passwordGuard.spendHash(client: ctx.clientKey)
    }

    /// Throttle records per client certificate (its fingerprint; the subject only without one),
    /// one for the admin password and one for each principal's PIN: a right PIN never clears the
    /// admin password's failures (2 guesses and 1 own login, repeated, was 7 guesses a second).
    static func adminThrottleKey(_ ctx: RequestContext) -> String {
        "admin " + (ctx.clientFingerprint == "-" ? "subject " + ctx.clientSubject : ctx.clientFingerprint.lowercased())
    }

    static func pinThrottleKey(_ ctx: RequestContext, _ p: Principal) -> String {
        "pin " + p.fingerprint + " " + (ctx.clientFingerprint == "-" ? ctx.clientSubject : ctx.clientFingerprint.lowercased())
    }

    /// A registered principal's PIN, or the admin password; the admin password alone while no
    /// principal is registered. The PIN and the admin password are throttled each on its own; a
    /// credential that is neither counts against both.
    func checkCredential(_ r: WireObject, _ ctx: RequestContext) throws(ServiceError) {
        try checkCredential(given: r.string("adminPassword"), ctx)
    }

    func checkCredential(given: String, _ ctx: RequestContext) throws(ServiceError) {
        guard let p = ctx.principal else { return try checkRootPassword(given: given, ctx) }
        let adminKey = KeyServiceNode.adminThrottleKey(ctx)
        let pinKey = KeyServiceNode.pinThrottleKey(ctx, p)
        let pinWait = p.pinHash == nil ? Int.max : passwordGuard.throttledFor(pinKey)
        let adminWait = passwordGuard.throttledFor(adminKey)
        if let pinWait, let adminWait {
            passwordGuard.throttledCounter?.increment()
            throw .throttled(min(pinWait, adminWait))
        }
        if pinWait == nil, let hash = p.pinHash, let parsed = try? PasswordHash(parsing: hash), let cache = pinCache(for: p),
            try parsed.verify(given, cache: cache, permit: { () throws(ServiceError) in try hashPermit(ctx) })
        {
            passwordGuard.clear(pinKey)
            return
        }
        if adminWait == nil,
            try password.verify(given, cache: verifiedPasswords, permit: { () throws(ServiceError) in try hashPermit(ctx) })
        {
            passwordGuard.clear(adminKey)
            return
        }
        if p.pinHash != nil && pinWait == nil { passwordGuard.failed(pinKey) }
        // Not the PIN, and the admin password could not be tried: say when it can be.
        if let adminWait {
            passwordGuard.throttledCounter?.increment()
            throw .throttled(adminWait)
        }
        passwordGuard.failed(adminKey)
        throw .wrongPassword
    }

    /// Key and object management (create, import, copy, derive or unwrap into a token key, change,
    /// delete): an officer of the namespace with its credential; the admin password while no
    /// principal is registered.
    func checkPassword(_ r: WireObject, _ ctx: RequestContext) throws(ServiceError) {
        try checkPassword(given: r.string("adminPassword"), ctx)
    }

    func checkPassword(given: String, _ ctx: RequestContext) throws(ServiceError) {
        if ctx.restricted {
            guard let p = ctx.principal else { throw .forbidden("Not permitted: key management needs a registered principal.") }
            guard p.role == .officer else {
                throw .forbidden("Not permitted: principal \(p.name) has role \(p.role.rawValue); managing keys needs role officer.")
            }
        }
        try checkCredential(given: given, ctx)
    }

    /// The credential a route's declaration requires (`RouteTable`), checked by the router before
    /// its handler runs: the admin password for root routes, an officer's credential for officer
    /// routes on a token key (a `~` session key needs none). Audit and login routes decide in their
    /// handlers (an auditor's PIN or the admin password; C_Login as SO or user).
    func checkDeclaredCredential(_ spec: RouteSpec, body: [UInt8], sessionKey: Bool, _ ctx: RequestContext) throws(ServiceError) {
        switch spec.access {
        case .root: try checkRootPassword(given: try KeyServiceNode.credential(in: body), ctx)
        case .officer where !sessionKey: try checkPassword(given: try KeyServiceNode.credential(in: body), ctx)
        default: return
        }
    }

    /// The request's `adminPassword` (or `admin_password`), read as the handler's decoding reads it
    /// (given twice, or under both names: refused).
    static func credential(in body: [UInt8]) throws(ServiceError) -> String {
        guard !body.isEmpty else { return "" }
        let value: JSONValue
        do { value = try JSONParser.parse(body) } catch { throw .json(error) }
        guard case .object(let members) = value else { return "" }
        let given = members.filter { $0.0 == "adminPassword" || $0.0 == "admin_password" }
        guard given.count <= 1 else { throw .badRequest("field \"adminPassword\" is given more than once") }
        guard let first = given.first else { return "" }
        guard case .string(let s) = first.1 else { throw .badRequest("adminPassword must be a string") }
        return s
    }

    /// One verified-PIN memory per principal and PIN hash (a changed PIN starts a new one).
    func pinCache(for p: Principal) -> VerifiedPasswordCache? {
        guard let hash = p.pinHash else { return nil }
        let id = p.fingerprint + hash
        return verifiedPINs.withLock { all in
            if let c = all[id] { return c }
            if all.count >= 4096 { all.removeAll() }
            let c = VerifiedPasswordCache()
            all[id] = c
            return c
        }
    }

    // MARK: - Names

    /// The stored name of the key a request names. Once principals exist a name resolves in the
    /// caller's namespace (`@`-names cannot be given) and a session key's owner is bound to the
    /// caller's certificate, so no tenant can reach another's keys even by name.
    func storedName(_ name: String, _ ctx: RequestContext) throws(ServiceError) -> String {
        guard ctx.restricted else { return name }
        guard ctx.principal != nil else { throw .forbidden("Not permitted: keys are used by registered principals only.") }
        if name.startsWithByte("~") {
            guard let owner = EphemeralStore.owner(of: name) else { return name }
            return "~" + boundOwner(owner, ctx) + name.dropFirst(1 + owner.utf8.count)
        }
        guard !name.startsWithByte("@") else { throw .invalidKeyName(name) }
        return Namespace.qualify(name, in: ctx.namespace)
    }

    /// The stored name of a new key the request names (checked as a new name first).
    func newStoredName(_ name: String, _ ctx: RequestContext) throws(ServiceError) -> String {
        try KeyPolicy.checkNewName(name)
        return try storedName(name, ctx)
    }

    /// A module instance's session-key owner id as this caller's (32 hex digits, from its certificate).
    func boundOwner(_ owner: String, _ ctx: RequestContext) -> String {
        guard ctx.restricted else { return owner }
        return String(Hex.encode(DigestAlgorithm.sha256.hash(Array((ctx.clientFingerprint.lowercased() + "/" + owner).utf8))).prefix(32))
    }

    /// The name a caller knows a stored key by; nil when the key is not in its namespace.
    func visibleName(_ stored: String, _ ctx: RequestContext, owner: String? = nil) -> String? {
        guard ctx.restricted else { return stored }
        if stored.startsWithByte("~") {
            guard let owner, let bound = EphemeralStore.owner(of: stored) else { return nil }
            return "~" + owner + stored.dropFirst(1 + bound.utf8.count)
        }
        let (ns, name) = Namespace.split(stored)
        return ns == ctx.namespace ? name : nil
    }

    /// The keys of a state the caller may see, under the names it knows them by.
    func visibleKeys(_ s: KeyState, _ ctx: RequestContext, owner: String? = nil) -> KeyState {
        guard ctx.restricted else { return s }
        var out = KeyState()
        for e in s.symmetric.values {
            if let n = visibleName(e.name, ctx, owner: owner) {
                out.symmetric[n] = SecretKeyEntry(name: n, createdAt: e.createdAt, key: e.key, attributes: e.attributes)
            }
        }
        for e in s.mac.values {
            if let n = visibleName(e.name, ctx, owner: owner) {
                out.mac[n] = SecretKeyEntry(name: n, createdAt: e.createdAt, key: e.key, attributes: e.attributes)
            }
        }
        for e in s.asymmetric.values {
            if let n = visibleName(e.name, ctx, owner: owner) {
                out.asymmetric[n] = AsymmetricKeyEntry(
                    name: n, createdAt: e.createdAt, keyType: e.keyType, pkcs8: e.pkcs8, key: e.key,
                    spki: e.spki, attributes: e.attributes)
            }
        }
        for o in s.objects.values where !ctx.restricted || (o.namespace ?? Namespace.defaultName) == ctx.namespace {
            out.objects[o.uid] = o
        }
        return out
    }

    /// A stored object the caller may change; 404 for another namespace's.
    func checkObjectNamespace(_ o: StoredObject?, uid: String, _ ctx: RequestContext) throws(ServiceError) {
        guard let o, !ctx.restricted || (o.namespace ?? Namespace.defaultName) == ctx.namespace else {
            throw .notFound("No object with uid \(uid).")
        }
    }

    // MARK: - Routes

    static let principalRoutes: [String: Handler] = [
        Route.extPrincipalAdd: { n, b, c throws(ServiceError) in try n.principalAdd(b, c) },
        Route.extPrincipalList: { n, b, c throws(ServiceError) in
            let r = try n.decode(b, ExtSchemas.principalListRequest)
            var w = WireWriter()
            w.array(
                "principals", n.snapshot.principals.values.sorted { $0.name < $1.name }.map { PrincipalCodec.encode($0, withPIN: false) })
            return n.ok(w)
        },
        Route.extPrincipalRemove: { n, b, c throws(ServiceError) in
            let r = try n.decode(b, ExtSchemas.principalRemoveRequest)
            let name = r.string("name")
            n.audit.info("Removing principal \(AuditNames.clean(name))...")
            try n.mutate { (s: inout KeyState) throws(ServiceError) in
                guard let fp = s.principals.first(where: { $0.value.name == name })?.key else {
                    throw .notFound("No principal named \(name).")
                }
                s.principals.removeValue(forKey: fp)
                s.principalsChanged()
            }
            return n.ok(WireWriter())
        },
        Route.extPrincipalSetPIN: { n, b, c throws(ServiceError) in
            let r = try n.decode(b, ExtSchemas.principalSetPINRequest)
            let name = r.string("name")
            let hash = try KeyServiceNode.pinHash(r.string("pin"))
            try n.mutate { (s: inout KeyState) throws(ServiceError) in
                guard let fp = s.principals.first(where: { $0.value.name == name })?.key else {
                    throw .notFound("No principal named \(name).")
                }
                s.principals[fp]?.pinHash = hash
                s.principalsChanged()
            }
            n.audit.info("\(hash == nil ? "Removed" : "Set") the PIN of principal \(AuditNames.clean(name)).")
            return n.ok(WireWriter())
        },
        Route.extWhoAmI: { n, b, c throws(ServiceError) in
            _ = try n.decode(b, Schemas.empty)
            var w = WireWriter()
            w.bool("restricted", c.restricted)
            w.string("fingerprint", c.clientFingerprint.lowercased())
            if let p = c.principal {
                w.string("principal", p.name)
                w.string("role", p.role.rawValue)
                w.strings("namespaces", p.namespaces)
                w.string("namespace", c.namespace)
            }
            return n.ok(w)
        },
    ]

    static func pinHash(_ pin: String) throws(ServiceError) -> String? {
        guard !pin.isEmpty else { return nil }
        guard pin.utf8.count >= 4, pin.utf8.count <= 256 else { throw .badRequest("A PIN is 4 to 256 bytes long.") }
        do { return try PasswordHash.create(password: pin) } catch { throw .internalError(error.message) }
    }

    func principalAdd(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.principalAddRequest)
        let name = r.string("name")
        guard !name.isEmpty, name.utf8.count <= 128, !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0 == "\"" || $0 == "\\" })
        else {
            throw .badRequest("A principal name is 1 to 128 characters, without control characters, quotes or backslashes.")
        }
        guard let role = PrincipalRole(rawValue: r.string("role")) else {
            throw .badRequest("Invalid role \"\(AuditNames.clean(r.string("role")))\": user, officer or auditor.")
        }
        let namespaces = r.strings("namespaces").isEmpty ? [Namespace.defaultName] : r.strings("namespaces")
        guard namespaces.count <= 64 else { throw .badRequest("A principal has at most 64 namespaces.") }
        for ns in namespaces { try Namespace.check(ns) }
        let der = r.bytes("certificate") ?? []
        do { _ = try X509Info.subjectPublicKeyInfo(certificateDER: der) } catch {
            throw .badRequest("certificate is not a DER X.509 certificate")
        }
        let principal = Principal(
            name: name, fingerprint: Hex.encode(DigestAlgorithm.sha256.hash(der)), subject: DevPKI.subject(ofDER: der),
            role: role, namespaces: uniqued(namespaces), pinHash: try KeyServiceNode.pinHash(r.string("pin")),
            createdAt: KeyServiceNode.nowMillis())
        audit.info(
            "Registering principal \(name) (\(role.rawValue), namespaces \(principal.namespaces.joined(separator: ",")), SHA-256 \(principal.fingerprint))..."
        )
        try mutate { (s: inout KeyState) throws(ServiceError) in
            if s.principals[principal.fingerprint] != nil {
                throw .conflict("This certificate is already registered (as \(s.principals[principal.fingerprint]?.name ?? "")).")
            }
            if s.principals.values.contains(where: { $0.name == name }) { throw .conflict("A principal named \(name) exists.") }
            s.principals[principal.fingerprint] = principal
            s.principalsChanged()
        }
        var w = WireWriter()
        w.string("fingerprint", principal.fingerprint)
        return ok(w)
    }
}

extension KeyState {
    /// Stamps a change of the principal table (never backwards, even if the clock is).
    mutating func principalsChanged() {
        principalsVersion = Swift.max(KeyServiceNode.nowMillis(), principalsVersion &+ 1)
    }
}

/// The strings in order, each once.
func uniqued(_ items: [String]) -> [String] {
    var seen = Set<String>()
    return items.filter { seen.insert($0).inserted }
}
