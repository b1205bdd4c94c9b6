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
    /// The access checks (`NodeAccess`), for the router and the handlers that decide by target.
    func authorize(path: String, body: [UInt8], _ ctx: inout RequestContext) throws(ServiceError) {
        try access.authorize(path: path, body: body, &ctx)
    }
    func checkRootPassword(_ r: WireObject, _ ctx: RequestContext) throws(ServiceError) { try access.checkRootPassword(r, ctx) }
    func checkRootPassword(given: String, _ ctx: RequestContext) throws(ServiceError) { try access.checkRootPassword(given: given, ctx) }
    func checkCredential(_ r: WireObject, _ ctx: RequestContext) throws(ServiceError) { try access.checkCredential(r, ctx) }
    func checkCredential(given: String, _ ctx: RequestContext) throws(ServiceError) { try access.checkCredential(given: given, ctx) }
    func checkPassword(_ r: WireObject, _ ctx: RequestContext) throws(ServiceError) { try access.checkPassword(r, ctx) }
    func checkPassword(given: String, _ ctx: RequestContext) throws(ServiceError) { try access.checkPassword(given: given, ctx) }

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
