import VSSMCrypto
import VSSMSync
import VSSMWire

/// Who may call what (split out of `KeyServiceNode`, issue 21): the route's declared access
/// (`RouteTable`) against the caller's principal, and the credentials (admin password, a
/// principal's PIN) with their throttles, scrypt budget and verified-credential caches.
final class NodeAccess: Sendable {
    let password: PasswordHash
    let passwordGuard: PasswordGuard
    let verifiedPasswords = VerifiedPasswordCache()
    /// Verified principal PINs, per principal and PIN hash (`pinCache(for:)`).
    let verifiedPINs = Locked<[String: VerifiedPasswordCache]>([:])
    /// The principals are part of the key state.
    let store: NodeStore

    init(password: PasswordHash, passwordGuard: PasswordGuard, store: NodeStore) {
        self.password = password
        self.passwordGuard = passwordGuard
        self.store = store
    }

    /// Decides who the caller is (once principals exist) and what it may call; sets the
    /// context's principal and namespace. Every running API request passes here.
    /// The route's declared access (`RouteTable`) is enforced here, before any handler runs.
    func authorize(path: String, body: [UInt8], _ ctx: inout RequestContext) throws(ServiceError) {
        guard let spec = RouteTable.api[path] else { throw .notFound("404 page not found") }
        let fingerprint = ctx.clientFingerprint.lowercased()
        let (any, principal) = store.state.withLock { s in (!s.principals.isEmpty, s.principals[fingerprint]) }
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
        try passwordGuard.check(identity: NodeAccess.adminThrottleKey(ctx)) { () throws(ServiceError) -> Bool in
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
        let adminKey = NodeAccess.adminThrottleKey(ctx)
        let pinKey = NodeAccess.pinThrottleKey(ctx, p)
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
        case .root: try checkRootPassword(given: try NodeAccess.credential(in: body), ctx)
        case .officer where !sessionKey: try checkPassword(given: try NodeAccess.credential(in: body), ctx)
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
}
