import VSSMWire
import Glibc
import VSSMCrypto
import VSSMSync

/// How a slot reaches its key service and who may do what (from the module config).
public struct SlotConfiguration: Sendable {
    public var label: String
    /// Shown as the token serial (unique per slot).
    public var serial: String
    /// CKF_LOGIN_REQUIRED: the client key is encrypted and the user PIN decrypts it.
    public var loginRequired: Bool
    /// The user PIN is also the admin password (automation: `pkcs11-tool --keypairgen --login --pin`).
    public var userPinIsAdminPassword: Bool
    /// The slot has a user PIN (CKF_LOGIN_REQUIRED): key management, and objects an application
    /// made with CKA_PRIVATE=TRUE, need C_Login(CKU_USER). Keys stored CKA_PRIVATE=FALSE (the
    /// default here, and every key made through the original API) stay usable without a login.
    public var hasUserPIN: Bool { loginRequired || userPinIsAdminPassword }
    /// Seconds between background refreshes of the key index (0: only after local changes).
    public var refreshSeconds: Double
    /// Each key generated in the service shows its attestation statement as a certificate object
    /// with the key's CKA_ID (`"attestationObjects"`).
    public var attestationObjects: Bool
    /// Follow changes with the service's long poll (`ext/changes`) on a thread of the module's
    /// (false: the host forbids threads, CKF_LIBRARY_CANT_CREATE_OS_THREADS, or the slot says so).
    public var followChanges: Bool
    public init(
        label: String, serial: String, loginRequired: Bool = false, userPinIsAdminPassword: Bool = false, refreshSeconds: Double = 60,
        attestationObjects: Bool = false, followChanges: Bool = false
    ) {
        self.label = label
        self.serial = serial
        self.loginRequired = loginRequired
        self.userPinIsAdminPassword = userPinIsAdminPassword
        self.refreshSeconds = refreshSeconds
        self.attestationObjects = attestationObjects
        self.followChanges = followChanges
    }
}

/// Builds the slot's KeyService; the PIN is passed when the client key is encrypted.
public typealias KeyServiceFactory = @Sendable (_ pin: String?) throws(TokenError) -> any KeyService

/// One slot's token: the key service, the local index of its keys, and the login state.
/// FindObjects and attribute reads are served from the index; the network is used only to
/// (re)load it, never under the lock.
public final class Token: Sendable {
    public let slotID: UInt
    public let configuration: SlotConfiguration
    let factory: KeyServiceFactory
    /// This module instance's session-key owner id in the service (128 random bits, new per
    /// C_Initialize): session keys are `~<owner>/<name>` there, visible to no one else.
    public let owner: String
    /// The change-following thread (`Token+Changes`): started once, healthy while its waits work.
    let subscription = Locked<(started: Bool, healthy: Bool)>((false, false))
    let changesCancel = WaitCancellation()

    struct State {
        var service: (any KeyService)?
        var features: Set<Feature>??
        var offered: [MechanismType: MechanismInfo]?
        var objects: [ObjectHandle: TokenObject] = [:]
        var handles: [String: ObjectHandle] = [:]
        var nextHandle: UInt = 1
        var loadedAt: Double = -1
        var dirty = true
        var user: UserType?
        var adminPassword: String?
        /// Counts invalidations: one that comes while a reload is under way keeps the index stale.
        var invalidations: UInt64 = 0
        /// Attestation statements fetched so far, by key name (nil: the key is not attestable).
        var attestations: [String: [UInt8]?] = [:]
        /// Session keys this instance created, by service name: the session that owns each and
        /// its service key type (destroyed with the session, PKCS#11 §4.4.1).
        var sessionKeys: [String: (session: UInt, type: KeyType)] = [:]
        /// Session objects without secret material (public keys, certificates, data objects with
        /// CKA_TOKEN=FALSE): kept in this process only, with the session that owns each.
        var localObjects: [ObjectHandle: (object: TokenObject, session: UInt)] = [:]
    }
    let state = Locked(State())

    public init(slotID: UInt, configuration: SlotConfiguration, factory: @escaping KeyServiceFactory) {
        self.slotID = slotID
        self.configuration = configuration
        self.factory = factory
        owner = SecureRandom.hex(16)
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// The key service, created lazily (no network in C_Initialize).
    func service() throws(TokenError) -> any KeyService {
        if let s = state.withLock({ $0.service }) { return s }
        if configuration.loginRequired { throw .userNotLoggedIn }
        let s = try factory(nil)
        state.withLock { if $0.service == nil { $0.service = s } }
        return state.withLock { $0.service } ?? s
    }

    func hasExtensions() throws(TokenError) -> Bool { try features() != nil }

    /// The service's extension features (nil: the original API), asked once per service.
    func features() throws(TokenError) -> Set<Feature>? {
        if let f = state.withLock({ $0.features }) { return f }
        let f = try service().features()
        state.withLock { $0.features = .some(f) }
        return f
    }

    /// The mechanisms this token offers (C_GetMechanismList), from the registry and the features;
    /// built once (every C_SignInit asks: rebuilding it per call cost a third of the 8-thread
    /// ECDSA throughput in `make bench`).
    func offeredMechanisms() throws(TokenError) -> [MechanismType: MechanismInfo] {
        if let o = state.withLock({ $0.offered }) { return o }
        let o = MechanismTable.offered(features: try features())
        state.withLock { $0.offered = o }
        return o
    }

    /// The attestation statements of the generated stored keys, as certificate objects; each is
    /// fetched once per process (a statement does not change what it says).
    private func attestationObjects(_ keys: [ServiceKey]) throws(TokenError) -> [TokenObject] {
        var out: [TokenObject] = []
        for k in keys where k.serviceType == .asymmetric && k.generated == true && !k.ephemeral {
            var statement = state.withLock { $0.attestations[k.name] }
            if statement == nil {
                let fetched = try? service().attest(key: k)
                state.withLock { $0.attestations[k.name] = .some(fetched) }
                statement = .some(fetched)
            }
            if let der = statement ?? nil { out.append(TokenObject.attestation(for: k, statement: der)) }
        }
        return out
    }

    /// Reloads the index when it is stale or was invalidated by a local change.
    func refreshIfNeeded(force: Bool = false) throws(TokenError) {
        let (dirty, loadedAt, admin, generation) = state.withLock { ($0.dirty, $0.loadedAt, $0.adminPassword, $0.invalidations) }
        // While the service tells this token of changes (`ext/changes`), nothing is listed on a timer.
        let stale =
            configuration.refreshSeconds > 0 && Token.now() - loadedAt > configuration.refreshSeconds && !followsChanges
        guard force || dirty || stale else { return }
        if configuration.loginRequired && state.withLock({ $0.service == nil }) { return }  // nothing visible before login
        let listing = try service().list(adminPassword: admin, owner: owner)
        let loginRequired = configuration.loginRequired
        let ext = try hasExtensions()
        let offered = Set(try offeredMechanisms().keys)
        var built: [TokenObject] = []
        for k in listing.keys { built += TokenObject.objects(for: k, loginRequired: loginRequired, offered: offered, manageable: ext) }
        for o in listing.objects { built.append(TokenObject.object(for: o)) }
        if configuration.attestationObjects, try features()?.contains(.attestation) ?? false {
            built += try attestationObjects(listing.keys)
        }
        state.withLock { s in
            s.objects.removeAll(keepingCapacity: true)
            for o in built {
                let h: ObjectHandle
                if let existing = s.handles[o.identity] {
                    h = existing
                } else {
                    h = ObjectHandle(rawValue: s.nextHandle)
                    s.nextHandle = max(1, s.nextHandle &+ 1)  // never traps; 0 stays invalid
                    s.handles[o.identity] = h
                }
                s.objects[h] = o
            }
            s.loadedAt = Token.now()
            s.dirty = s.invalidations != generation
        }
        startFollowingChanges()
    }

    func invalidate() {
        state.withLock { s in
            s.dirty = true
            s.invalidations &+= 1
        }
    }

    // MARK: - Session keys

    /// A fresh service name for a session key of this instance.
    func sessionKeyName() -> String {
        "~\(owner)/s-" + SecureRandom.hex(8)
    }

    func recordSessionKey(_ name: String, type: KeyType, session: UInt) {
        state.withLock {
            $0.sessionKeys[name] = (session, type)
        }
    }

    func forgetSessionKey(_ name: String) { _ = state.withLock { $0.sessionKeys.removeValue(forKey: name) } }

    /// Destroys the session keys of one session (nil: of every session) in the service. Best
    /// effort: what fails here is reaped by the service when this instance's lease runs out.
    func destroySessionKeys(session: UInt?) {
        let doomed = state.withLock { s -> [(String, KeyType)] in
            let d = s.sessionKeys.filter { session == nil || $0.value.session == session }
            for k in d.keys { s.sessionKeys.removeValue(forKey: k) }
            // Gone from the index at once: their handles are invalid from here on.
            s.objects = s.objects.filter { o in o.value.key.map { d[$0.name] == nil } ?? true }
            s.localObjects = s.localObjects.filter { session != nil && $0.value.session != session }
            return d.map { ($0.key, $0.value.type) }
        }
        guard !doomed.isEmpty, let svc = state.withLock({ $0.service }) else { return }
        if session == nil {
            // (C_CloseAllSessions: one call drops them all)
            try? svc.releaseSession(owner: owner)
        } else {
            for (name, type) in doomed { try? svc.deleteKey(adminPassword: "", name: name, type: type) }
        }
        invalidate()
    }

    /// C_Finalize: every session key of this instance goes (one call).
    func releaseSessionKeys() {
        let (live, svc) = state.withLock { s in
            defer { s.sessionKeys = [:] }
            return (!s.sessionKeys.isEmpty, s.service)
        }
        guard live, let svc else { return }
        try? svc.releaseSession(owner: owner)
    }

    public func object(_ h: ObjectHandle) throws(TokenError) -> TokenObject {
        guard let o = state.withLock({ s in (s.objects[h] ?? s.localObjects[h]?.object).flatMap { Token.visible($0, s.user) ? $0 : nil } })
        else {
            throw .objectHandleInvalid
        }
        return o
    }

    /// PKCS#11 §4.4: a private object (CKA_PRIVATE=TRUE) exists for an application only while
    /// the normal user is logged in.
    static func visible(_ o: TokenObject, _ user: UserType?) -> Bool {
        user == .user || o.attributes[.private] != AttributeValue.bool(true)
    }

    /// Adds a process-local session object; its handle comes from the same never-reused counter.
    func addLocal(_ o: TokenObject, session: UInt) -> ObjectHandle {
        state.withLock { s in
            let h = ObjectHandle(rawValue: s.nextHandle)
            s.nextHandle = max(1, s.nextHandle &+ 1)  // never traps; 0 stays invalid
            s.localObjects[h] = (o, session)
            return h
        }
    }

    func isLocal(_ h: ObjectHandle) -> Bool { state.withLock { $0.localObjects[h] != nil } }

    /// The handle this process gave an identity, if any.
    func existingHandle(identity: String) -> ObjectHandle? { state.withLock { $0.handles[identity] } }

    /// Keeps `o` as a process-local object under a handle it already has (a session key pair's
    /// public half once its private key went).
    func keepLocal(_ h: ObjectHandle, _ o: TokenObject, session: UInt) {
        state.withLock { s in
            s.localObjects[h] = (o, session)
            s.objects[h] = nil
        }
    }

    /// The next listing shows the object of `identity` under handle `h` (the same object, stored
    /// anew under another name: a public half kept in the service).
    func alias(identity: String, to h: ObjectHandle) { state.withLock { $0.handles[identity] = h } }

    /// The session a session key of this instance belongs to.
    func session(ofKey name: String) -> UInt? { state.withLock { $0.sessionKeys[name]?.session } }

    func replaceLocal(_ h: ObjectHandle, _ o: TokenObject) {
        state.withLock { s in
            if let session = s.localObjects[h]?.session { s.localObjects[h] = (o, session) }
        }
    }

    func removeLocal(_ h: ObjectHandle) -> Bool { state.withLock { $0.localObjects.removeValue(forKey: h) != nil } }

    func find(_ template: Template) throws(TokenError) -> [ObjectHandle] {
        try refreshIfNeeded()
        return state.withLock { s in
            (s.objects.filter { Token.visible($0.value, s.user) && $0.value.matches(template) }.map(\.key)
                + s.localObjects.filter { Token.visible($0.value.object, s.user) && $0.value.object.matches(template) }.map(\.key)).sorted {
                    $0.rawValue < $1.rawValue
                }
        }
    }

    // MARK: - Login (PKCS#11 2.40 §5.6; login state is per token, shared by all sessions)

    public var loggedInUser: UserType? { state.withLock { $0.user } }

    func login(_ user: UserType, pin: String) throws(TokenError) {
        if let current = state.withLock({ $0.user }) {
            throw current == user ? .userAlreadyLoggedIn : .anotherUserAlreadyLoggedIn
        }
        switch user {
        case .user:
            if configuration.loginRequired {
                let s = try factory(pin)
                state.withLock {
                    $0.service = s; $0.dirty = true
                }
            }
            if configuration.userPinIsAdminPassword {
                try verifyAdmin(pin)
                // The listing depends on the password (the original API lists keys only with it):
                // what the login makes visible is listed at the next search (issue 22: libp11
                // lists before C_Login, logs in, lists again).
                state.withLock {
                    $0.adminPassword = pin; $0.dirty = true
                }
            }
        case .so:
            if configuration.loginRequired && state.withLock({ $0.service == nil }) { throw .userNotLoggedIn }
            try verifyAdmin(pin, asSO: true)
            state.withLock {
                $0.adminPassword = pin; $0.dirty = true
            }
        default:
            throw .userTypeInvalid
        }
        state.withLock { $0.user = user }
    }

    /// Checks a PIN the way C_Login(CKU_USER) does, without changing the login state
    /// (re-authentication): the admin password, or the client key's passphrase; a slot with no
    /// user PIN has nothing to check.
    func verifyUserPIN(_ pin: String) throws(TokenError) {
        if configuration.userPinIsAdminPassword { try verifyAdmin(pin); return }
        if configuration.loginRequired {
            _ = try factory(pin)
        }
    }

    private func verifyAdmin(_ pin: String, asSO: Bool = false) throws(TokenError) {
        do { try service().verifyAdminPassword(pin, asSO: asSO) } catch .adminPasswordRejected { throw .pinIncorrect }
    }

    func logout() throws(TokenError) {
        try state.withLock { (s: inout State) throws(TokenError) in
            guard s.user != nil else { throw .userNotLoggedIn }
            s.user = nil
            if s.adminPassword != nil { s.dirty = true }
            s.adminPassword = nil
            if configuration.loginRequired { s.service = nil; s.objects = [:] }
        }
    }

    /// The admin password for key management, or CKR_USER_NOT_LOGGED_IN.
    func adminPassword() throws(TokenError) -> String {
        guard let p = state.withLock({ $0.adminPassword }) else { throw .userNotLoggedIn }
        return p
    }
}
