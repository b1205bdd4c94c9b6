import VSSMWire

/// The running API's routes, each declared once (issue 21): who may call it, where it runs and
/// how large its body may be. The router enforces the access before any handler runs
/// (`authorize`), the listener takes the pool and the body limit from here, and a path without a
/// declaration is a 404 whatever handler exists (`RouteTableTests` checks both sets agree and
/// drives every route with every kind of caller through a real node).
struct RouteSpec: Sendable {
    /// Who may call a route once principals are registered (before, every trusted client may call
    /// every route, as in the original; the handlers still check the admin password).
    enum Access: String, Sendable, CaseIterable {
        /// Any registered principal (auditors too): capabilities, the caller's identity, metrics.
        case anyPrincipal
        /// Using the keys of the caller's namespace: a user or an officer, never an auditor. Making
        /// a token key from one (copy, derive, unwrap into the token) is judged by the handler,
        /// which asks an officer's credential for the token's side.
        case keyUser
        /// Key and object management: an officer of the namespace (its credential checked by the
        /// handler). A user may do the same to its own session keys (`~…` names), which need none.
        case officer
        /// C_Login: any registered principal with its credential.
        case login
        /// The audit trail: an auditor with its credential, or the root admin.
        case audit
        /// The root admin: the admin password, from any trusted certificate, registered or not.
        case root
    }

    /// Where the request runs (cheap ones may run on the event loop instead: `isCheap`).
    enum Pool: Sendable {
        case worker
        /// Calls that check a password (scrypt): never beside signing; one at a time per client.
        case admin
        /// Key generation: a share per client.
        case keygen
    }

    let access: Access
    let pool: Pool
    /// The body may carry a whole key store (`maxStateBodyBytes`, not `maxBodyBytes`).
    var stateBody = false

    init(_ access: Access, _ pool: Pool = .worker, stateBody: Bool = false) {
        self.access = access
        self.pool = pool
        self.stateBody = stateBody
    }
}

enum RouteTable {
    static let api: [String: RouteSpec] = [
        // The original API.
        Route.symmetricEncrypt: .init(.keyUser),
        Route.symmetricDecrypt: .init(.keyUser),
        Route.asymmetricEncrypt: .init(.keyUser),
        Route.asymmetricDecrypt: .init(.keyUser),
        Route.asymmetricSign: .init(.keyUser),
        Route.asymmetricVerify: .init(.keyUser),
        Route.hmacCreate: .init(.keyUser),
        Route.hmacVerify: .init(.keyUser),
        Route.generateKey: .init(.officer, .keygen),
        Route.injectKey: .init(.officer, .admin),
        Route.listKeys: .init(.keyUser, .admin),
        Route.generateBackup: .init(.root, .admin),
        Route.restoreBackup: .init(.root, .admin, stateBody: true),
        Route.getLogs: .init(.root, .admin),
        // The extensions.
        Route.extCapabilities: .init(.anyPrincipal),
        Route.extWhoAmI: .init(.anyPrincipal),
        ServiceMetrics.route: .init(.anyPrincipal),
        Route.extBootstrapShare: .init(.anyPrincipal),
        Route.extListKeys: .init(.keyUser),
        Route.extSign: .init(.keyUser),
        Route.extVerify: .init(.keyUser),
        Route.extAttest: .init(.keyUser),
        Route.extChanges: .init(.keyUser),
        Route.extDecrypt: .init(.keyUser),
        Route.extSymmetricEncrypt: .init(.keyUser),
        Route.extSymmetricDecrypt: .init(.keyUser),
        Route.extMAC: .init(.keyUser),
        Route.extWrap: .init(.keyUser),
        Route.extKeyValue: .init(.keyUser),
        Route.extReleaseSession: .init(.keyUser),
        Route.extCopyKey: .init(.keyUser, .admin),
        Route.extDerive: .init(.keyUser, .admin),
        Route.extUnwrap: .init(.keyUser, .admin),
        Route.extGenerateKey: .init(.officer, .keygen),
        Route.extInjectKey: .init(.officer, .admin),
        Route.extSetAttributes: .init(.officer, .admin),
        Route.extDeleteKey: .init(.officer, .admin),
        Route.extCreateObject: .init(.officer, .admin),
        Route.extUpdateObject: .init(.officer, .admin),
        Route.extDeleteObject: .init(.officer, .admin),
        Route.extVerifyPassword: .init(.login, .admin),
        Route.extAudit: .init(.audit, .admin),
        Route.extGenerateBackup: .init(.root, .admin),
        Route.extRestoreBackup: .init(.root, .admin, stateBody: true),
        Route.extPrincipalAdd: .init(.root, .admin),
        Route.extPrincipalList: .init(.root, .admin),
        Route.extPrincipalRemove: .init(.root, .admin),
        Route.extPrincipalSetPIN: .init(.root, .admin),
        Route.extNodeAdd: .init(.root, .admin),
        Route.extNodeRemove: .init(.root, .admin),
        Route.extNodeList: .init(.root, .admin),
    ]

    /// Routes whose refusals (403, 429) are audited as one aggregate record per interval, with
    /// their count and sources, instead of one record each: the bootstrap-slave listener's join
    /// takes guesses from unauthenticated addresses, which must not flood the trail.
    static let aggregatedRefusals: Set<String> = [Route.extJoin]

    static func aggregatesRefusal(listener: RequestContext.Listener, path: String, status: Int) -> Bool {
        listener == .bootstrapSlave && (status == 403 || status == 429) && aggregatedRefusals.contains(path)
    }

    /// Whether a caller of `role` (nil: a trusted but unregistered certificate) may call a route of
    /// `access` at all, once principals exist; `sessionKey`: the request names a `~` session key.
    /// nil: yes; else why not.
    static func refusal(_ access: RouteSpec.Access, role: PrincipalRole?, sessionKey: Bool) -> String? {
        guard let role else {
            return access == .root || access == .audit ? nil : "is trusted but not registered as a principal of this key service"
        }
        switch (role, access) {
        case (.auditor, .keyUser), (.auditor, .officer):
            return "is an auditor; it reads the audit trail and uses no key"
        case (.user, .officer) where !sessionKey:
            return "has role user; managing keys needs role officer"
        default:
            return nil
        }
    }
}
