import Glibc
import Synchronization
import VSSMSync
public import VSSMCrypto
import VSSMWire

/// Who is calling and on which listener; the subject goes into the audit log.
public struct RequestContext: Sendable {
    public enum Listener: String, Sendable { case api, health, `internal`, bootstrapSlave }
    public var listener: Listener
    public var clientSubject: String
    public var peer: String
    /// The connection presented a client certificate that a running-phase TLS context verified.
    /// Decided per connection by the listener; false by default, so a context built elsewhere
    /// (tests, new transports) is refused by the router until it says otherwise.
    public var authenticated: Bool
    /// The request's `keyName` and `algorithm` as the audit record shows them, when the listener
    /// has already read them (one JSON parse for the cheap-route decision and the record; nil:
    /// the record reads them).
    public var auditFields: (key: String, mechanism: String)?
    /// SHA-256 of the verified client certificate (hex), "-" without one.
    public var clientFingerprint = "-"
    /// This node's ID of the request (`X-Request-Id` of the answer, `request` of the audit record).
    public var requestID = "-"
    /// `X-VSSM-Namespace` of the request, when given.
    public var requestedNamespace: String?
    /// Set by the router (`authorize`): principals exist, so names resolve in `namespace` and
    /// listings show only it.
    var restricted = false
    /// The caller's registered principal (nil: none registered, or an unregistered certificate on a root route).
    var principal: Principal?
    /// The name the audit record gives the caller (its principal's, else the certificate subject).
    var principalName: String?
    var namespace = Namespace.defaultName
    /// The host part of `peer` (`127.0.0.1:5555` → `127.0.0.1`).
    static func host(ofPeer peer: String) -> String {
        guard let colon = peer.lastIndex(of: ":") else { return peer }
        return String(peer[..<colon])
    }

    /// Who a per-client share (requests in progress, key generations, throttles) is counted for:
    /// the verified certificate, else the client's address.
    static func clientKey(fingerprint: String, peer: String) -> String {
        fingerprint != "-" ? "cert " + fingerprint : "addr " + host(ofPeer: peer)
    }

    var clientKey: String { RequestContext.clientKey(fingerprint: clientFingerprint, peer: peer) }

    /// When the request's last byte arrived (monotonic ns; 0: unknown), for the log's duration.
    public var receivedNs: UInt64 = 0
    /// Handled on an event loop: a password check that would run scrypt throws `needsHashing`.
    var noHashing = false
    public init(listener: Listener, clientSubject: String = "-", peer: String = "-", authenticated: Bool = false) {
        self.listener = listener
        self.clientSubject = clientSubject
        self.peer = peer
        self.authenticated = authenticated
    }
}

/// An HTTP answer from a handler.
public struct ServiceResponse: Sendable {
    /// Not handled where it was tried (on an event loop, it needs scrypt); nothing was recorded.
    static let notHandledHere = ServiceResponse(status: 0, body: [])
    public var status: Int
    public var body: [UInt8]
    public var contentType = "application/json"
    /// `Retry-After` (seconds) of a 429 or 503.
    public var retryAfterSeconds: Int?
    /// `ext/changes` with the current revision: the listener answers at the next change (or when
    /// `waitMs` is over), from its event loop, holding no thread meanwhile.
    var waitForChange: (since: String, waitMs: Int)?
    public init(status: Int, body: [UInt8], contentType: String = "application/json") {
        self.status = status
        self.body = body
        self.contentType = contentType
    }
}

/// One VSSM node: the bootstrap state machine, the key store, persistence, sync and every
/// handler. Transport-free: the NIO listeners (`HTTPListeners`) and tests call `handle`.
public final class KeyServiceNode: Sendable {
    public enum Phase: Sendable {
        case bootstrapping
        case running(rpcKey: PrivateKey, sealed: SealedStateFile?)
    }

    public let config: ServerConfig
    public let audit: AuditLog
    /// Prometheus metrics (`GET /metrics` on the API listener, authenticated like every API call).
    public let metrics = ServiceMetrics(knownRoutes: Set(KeyServiceNode.apiRoutes.keys))
    /// The record of every answered request (`NodeAudit`: log ring, hash-chained trail, syslog).
    let auditing: NodeAudit
    var auditTrail: Locked<AuditTrail?> { auditing.trail }
    private let requestCounter = Atomic<UInt64>(0)
    private let nodeTag = SecureRandom.hex(4)

    /// A new request ID: this process's random tag and a counter.
    public func nextRequestID() -> String {
        nodeTag + "-" + String(requestCounter.wrappingAdd(1, ordering: .relaxed).newValue)
    }
    let password: PasswordHash
    let passwordGuard: PasswordGuard
    /// Join attempts per client address (`join`), and the refused ones' audit aggregate.
    let joinGuard = PasswordGuard()
    /// Route access and credentials (`NodeAccess`).
    let access: NodeAccess
    /// Shares of a split RPC key received while bootstrapping.
    let shares = ShareCollector()
    /// PKCS#11 session keys: memory only, per module instance (see `EphemeralStore`).
    let ephemeral = EphemeralStore()
    let phase = Locked<Phase>(.bootstrapping)
    /// The key state and where it is kept (memory, the sealed file, etcd).
    let store: NodeStore
    var state: Locked<KeyState> { store.state }
    let peerSync: PeerSync
    /// This node's clock against etcd's and its peers' (`ClockCheck`).
    let clock: ClockCheck
    /// The cluster's shared store (`config.etcd`), once running; nil: the sealed file (or memory).
    var etcd: Locked<EtcdStore?> { store.etcd }

    public init(config: ServerConfig, audit: AuditLog = AuditLog()) throws(ServiceError) {
        self.config = config
        self.audit = audit
        password = try PasswordHash(parsing: config.rootPassword)
        peerSync = PeerSync(peers: config.peers)
        clock = ClockCheck(boundSeconds: config.maxClockSkewSeconds)
        passwordGuard = PasswordGuard(metrics: metrics)
        store = NodeStore(maxStateBytes: config.limits.maxStateBytes, audit: audit, metrics: metrics)
        access = NodeAccess(password: password, passwordGuard: passwordGuard, store: store)
        auditing = NodeAudit(audit: audit, metrics: metrics, syslog: config.auditSyslog, stateDirectory: config.stateDirectory)
        _ = ProcessMetrics.startTime
        // Counters exported from the start (at 0), so dashboards and alerts see them before the first event.
        for name in ["vssm_audit_write_errors_total", "vssm_peer_sync_failures_total"] { _ = metrics.counter(name) }
    }

    /// Set when the node's listeners shut down: its background threads (sync, etcd) end.
    private let stopped = Atomic<Bool>(false)
    public var isStopped: Bool { stopped.load(ordering: .relaxed) }
    public func stopBackgroundWork() { stopped.store(true, ordering: .relaxed) }

    public var isRunning: Bool {
        phase.withLock { if case .running = $0 { true } else { false } }
    }

    var rpcKey: PrivateKey? {
        phase.withLock { if case .running(let k, _) = $0 { k } else { nil } }
    }

    public var snapshot: KeyState { store.snapshot }

    /// Session keys held in memory for PKCS#11 module instances (tests, metrics).
    public var sessionKeyCount: Int { ephemeral.count }

    /// The time a change stamps on what it creates or deletes (`createdAt`, a tombstone): refused
    /// (503) while this node's clock is out of step with etcd's or its peers' (`ClockCheck`).
    func stampMillis() throws(ServiceError) -> Int64 {
        if let why = clock.outOfStep() {
            throw .unavailable(
                "This node's clock is out of step: \(why). Keys and objects are not created, deleted or restored on this node until its clock is corrected (NTP): the times they carry decide which copy wins across the cluster."
            )
        }
        return KeyServiceNode.nowMillis()
    }

    /// One answer's `Date` from etcd or a peer: compared, counted, and a change of verdict logged.
    func clockObserved(source: String, dateSeconds: Int64, sentMs: Int64, receivedMs: Int64) {
        clock.observe(source: source, dateSeconds: dateSeconds, sentMs: sentMs, receivedMs: receivedMs)
        metrics.gauge("vssm_clock_offset_seconds").set(clock.largestOffsetSeconds())
        switch clock.changedVerdict() {
        case nil: return
        case .outOfStep(let why)?:
            metrics.gauge("vssm_clock_out_of_step").set(Int64(1))
            audit.error(
                "This node's clock is out of step: \(why). It refuses to create, delete or restore keys until the clocks agree (NTP).")
        case .inStep?:
            metrics.gauge("vssm_clock_out_of_step").set(Int64(0))
            audit.info("This node's clock agrees with etcd's or its peers' again: key changes are accepted.")
        }
    }

    /// The audit head etcd holds for this node (`NodeAudit.headInStore`).
    func auditHeadInStore() -> (seq: UInt64, mac: String?)? { auditing.headInStore(etcd.withLock { $0 }) }

    static func nowMillis() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    // MARK: - Bootstrap

    /// One share of a k-of-n split RPC key (`ShareCollector`); at the threshold the node bootstraps
    /// with the combined key.
    func bootstrapShare(_ body: [UInt8]) throws(ServiceError) -> ServiceResponse {
        let share = try RPCKeyShare(json: body)
        let certificate = Hex.encode(DigestAlgorithm.sha256.hash(config.rpcCertificate))
        let r = try shares.add(share, certificateSHA256: certificate) { key in
            guard let k = try? PrivateKey(pkcs8: key) else { return false }
            return (try? config.isRPCKey(k)) ?? false
        }
        audit.info(
            "Received RPC key share \(share.index) (\(AuditLog.escaped(share.label))) of split \(share.set): \(r.received) of \(r.threshold)"
        )
        var w = WireWriter()
        w.int64("received", Int64(r.received))
        w.int64("threshold", Int64(r.threshold))
        if var key = r.key {
            defer { zeroize(&key) }
            do { try bootstrap(rpcPrivateKeyPKCS8: key) } catch {
                throw .badRequest("the \(r.received) shares do not give the RPC key (\(error.message)); send the shares again")
            }
            audit.info("Bootstrapped from \(r.received) RPC key shares")
            w.bool("running", true)
        }
        return ok(w)
    }

    /// Leaves the bootstrapping phase with the RPC private key (PKCS#8 DER). Refuses a key that
    /// does not belong to the RPC certificate (the original accepted it and then broke every
    /// handshake), and a key that cannot unseal the stored state. Idempotent for the same key.
    public func bootstrap(rpcPrivateKeyPKCS8 der: [UInt8]) throws(ServiceError) {
        let key: PrivateKey
        do { key = try PrivateKey(pkcs8: der) } catch {
            throw .badRequest("rpcPrivateKey is not a PKCS#8 RSA or EC private key: \(error.message)")
        }
        guard try config.isRPCKey(key) else {
            throw .badRequest("rpcPrivateKey does not match the RPC certificate")
        }
        var sealed: SealedStateFile? = nil
        var loaded: StateCodec.Decoded? = nil
        var store: EtcdStore? = nil
        if let settings = config.etcd {
            // The cluster's state is etcd's; the state directory keeps this node's audit trail.
            if isRunning { return }
            if let dir = config.stateDirectory { try FileUtil.makeDirectory(dir) }
            let s = try EtcdStore(
                settings: settings, rpcKey: key, stateDirectory: config.stateDirectory,
                onClock: { [weak self] date, sent, received in
                    self?.clockObserved(source: ClockCheck.etcdSource, dateSeconds: date, sentMs: sent, receivedMs: received)
                }
            ) { [audit, metrics] problem in
                metrics.counter("vssm_store_refused_records_total").increment()
                audit.error(problem)
            }
            var decoded = StateCodec.Decoded()
            decoded.state = try NodeStore.retrying(seconds: 10) { () throws(ServiceError) in try s.load(audit: audit).state }
            loaded = decoded
            store = s
            if let dir = config.stateDirectory { try FileUtil.makeDirectory(dir) }
        } else if let dir = config.stateDirectory {
            do { sealed = try SealedStateFile(directory: dir, rpcKey: key) } catch { throw .internalError(error.message) }
            try FileUtil.makeDirectory(dir)
            if let file = try sealed?.load() {
                if let why = file.fromPrevious {
                    audit.error(
                        "The newest sealed key store could not be used (\(why)); loaded the previous generation \(sealed?.previousPath ?? ""). Changes acknowledged after it was written are missing."
                    )
                }
                do { loaded = try StateCodec.decode(file.plaintext, allowExtensions: true) } catch {
                    throw .internalError("sealed key store does not parse: \(error.message)")
                }
            }
        }
        let alreadyRunning: Bool = phase.withLock { p in
            if case .running(let k, _) = p { return k.spkiDER == key.spkiDER ? true : false }
            p = .running(rpcKey: key, sealed: sealed)
            return false
        }
        if alreadyRunning { return }
        self.store.sealed.withLock { $0 = sealed }
        self.store.etcd.withLock { $0 = store }
        self.store.onChange.withLock { $0 = { [weak self] in if let self { self.peerSync.pushSoon(node: self) } } }
        if let loaded {
            state.withLock { $0 = loaded.state }
            self.store.changes.changed()
            audit.info(
                "Loaded \(loaded.state.keyCount) keys and \(loaded.state.objects.count) objects from \(store.map { "etcd (\($0.settings.endpoints.joined(separator: ",")))" } ?? sealed?.path ?? "")"
            )
            for name in loaded.skipped { audit.error("Skipped unparseable asymmetric key from the sealed store: \(name)") }
        }
        if let dir = config.stateDirectory {
            do {
                let trail = try AuditTrail(directory: dir, rpcKey: key, rotateBytes: config.limits.auditFileBytes)
                auditTrail.withLock { $0 = trail }
                if let problem = trail.startupProblem { audit.error("Audit trail: \(problem).") }
            } catch {
                audit.error("The audit trail cannot be opened (\(error.message)); records go to the log only.")
            }
        }
        audit.info("Manual bootstrap successful...")
        audit.info("Entering normal application running state...")
        peerSync.start(node: self)
        if let store {
            self.store.healIfNeeded(store)
            self.store.follow(store) { [weak self] in self?.isStopped ?? true }
            auditing.followHead(store) { [weak self] in self?.isStopped ?? true }
        }
    }

    // MARK: - Persistence (`NodeStore`)

    func persist() throws(ServiceError) { try store.persist() }

    /// Applies a change, persists it, then tells peers (`NodeStore.mutate`).
    func mutate<R>(_ body: (inout KeyState) throws(ServiceError) -> R) throws(ServiceError) -> R { try store.mutate(body) }

    /// In a cluster: brings this node's view up to etcd's (`NodeStore.catchUp`).
    func catchUp() -> Bool { store.catchUp() }

    // MARK: - Dispatch

    typealias Handler = @Sendable (KeyServiceNode, [UInt8], RequestContext) throws(ServiceError) -> ServiceResponse

    /// Routes of the running API listener.
    static let apiRoutes: [String: Handler] = {
        var r: [String: Handler] = [
            Route.symmetricEncrypt: { n, b, c throws(ServiceError) in try n.symmetricEncrypt(b, c) },
            Route.symmetricDecrypt: { n, b, c throws(ServiceError) in try n.symmetricDecrypt(b, c) },
            Route.asymmetricEncrypt: { n, b, c throws(ServiceError) in try n.asymmetricEncrypt(b, c) },
            Route.asymmetricDecrypt: { n, b, c throws(ServiceError) in try n.asymmetricDecrypt(b, c) },
            Route.asymmetricSign: { n, b, c throws(ServiceError) in try n.asymmetricSign(b, c) },
            Route.asymmetricVerify: { n, b, c throws(ServiceError) in try n.asymmetricVerify(b, c) },
            Route.hmacCreate: { n, b, c throws(ServiceError) in try n.hmacCreate(b, c) },
            Route.hmacVerify: { n, b, c throws(ServiceError) in try n.hmacVerify(b, c) },
            Route.generateKey: { n, b, c throws(ServiceError) in try n.generateKey(b, c) },
            Route.injectKey: { n, b, c throws(ServiceError) in try n.injectKey(b, c) },
            Route.generateBackup: { n, b, c throws(ServiceError) in try n.generateBackup(b, c) },
            Route.restoreBackup: { n, b, c throws(ServiceError) in try n.restoreBackup(b, c) },
            Route.listKeys: { n, b, c throws(ServiceError) in try n.listKeys(b, c) },
            Route.getLogs: { n, b, c throws(ServiceError) in try n.getLogs(b, c) },
        ]
        for (path, h) in extRoutes { r[path] = h }
        for (path, h) in principalRoutes { r[path] = h }
        for (path, h) in nodeRoutes { r[path] = h }
        return r
    }()

    /// Handles one request. Never throws: every failure becomes a `{"error": ...}` answer.
    public func handle(path: String, body: [UInt8], context: RequestContext) -> ServiceResponse {
        var response: ServiceResponse
        var context = context
        do {
            if context.listener == .api && context.authenticated && isRunning { try authorize(path: path, body: body, &context) }
            if context.listener == .bootstrapSlave && path == Route.extJoin && !config.compatOnly && isRunning {
                response = try join(body, &context)
            } else {
                response = try route(path: path, body: body, context: context)
            }
        } catch {
            if error.status == ServiceError.needsHashing.status { return ServiceResponse.notHandledHere }
            // The original answers 500 for every handler error; only an unknown path is its mux's 404.
            let goStatus = error.message == "404 page not found" ? 404 : 500
            response = ServiceResponse(status: config.goStyleErrors ? goStatus : error.status, body: error.body)
            response.retryAfterSeconds = error.retryAfterSeconds
            // A fault of the service (not of the request) is logged with its cause, on stderr.
            if error.status >= 500 && error.status != 503 {
                audit.error(
                    "\(path) answered \(error.status) to \(context.principalName ?? context.clientSubject) (request \(context.requestID)): \(error.message)"
                )
            }
        }
        if context.listener != .health { auditing.record(path: path, body: body, context: context, status: response.status) }
        return response
    }

    private func route(path: String, body: [UInt8], context: RequestContext) throws(ServiceError) -> ServiceResponse {
        switch context.listener {
        case .health:
            return healthcheck(path: path)
        case .api:
            guard isRunning else {
                if path == Route.extBootstrapShare && !config.compatOnly { return try bootstrapShare(body) }
                guard path == Route.bootstrap else { throw .unavailable("The key service is bootstrapping.") }
                let r = try decode(body, Schemas.bootstrapRequest)
                try bootstrap(rpcPrivateKeyPKCS8: r.bytes("rpcPrivateKey") ?? [])
                return ok(WireWriter())
            }
            // Every request of the running API needs a verified client certificate on *this*
            // connection; one accepted during bootstrap (no client auth then) is refused for good.
            guard context.authenticated else { throw .unauthenticated }
            if path == ServiceMetrics.route { return metricsResponse() }
            if config.compatOnly && path.hasPrefix(Route.extPrefix) { throw .notFound("404 page not found") }
            // Only a declared route is served (`RouteTable`: its access was enforced in `authorize`).
            guard RouteTable.api[path] != nil, let h = KeyServiceNode.apiRoutes[path] else { throw .notFound("404 page not found") }
            return try h(self, body, context)
        case .internal:
            guard isRunning else { throw .unavailable("The key service is bootstrapping.") }
            guard context.authenticated else { throw .unauthenticated }
            switch path {
            case Route.synchronizeState: return try synchronizeState(body, context)
            case Route.synchronizeStatePush: return try synchronizeStatePush(body, context)
            case Route.extSynchronizeState where !config.compatOnly:
                _ = try decode(body, Schemas.empty)
                return ServiceResponse(status: 200, body: StateCodec.encode(snapshot, extensions: true))
            case Route.extSynchronizeStatePush where !config.compatOnly:
                let decoded: StateCodec.Decoded
                do { decoded = try StateCodec.decode(body, allowExtensions: true) } catch { throw .json(error) }
                audit.info("Received state synchronization push (with extensions).")
                try absorb(decoded, from: context.peer)
                return ok(WireWriter())
            default: throw .notFound("404 page not found")
            }
        case .bootstrapSlave:
            guard path == Route.bootstrapSlave else { throw .notFound("404 page not found") }
            _ = try decode(body, Schemas.bootstrapSlaveRequest)
            // Attestation needs a cloud provider; none is configured (same answer as the original's dev mode).
            throw .forbidden("Attestation cannot be performed for localhost.")
        }
    }

    /// The metrics exposition, with the key counts of this moment.
    func metricsResponse() -> ServiceResponse {
        let counts = state.withLock { s in (s.symmetric.count, s.asymmetric.count, s.mac.count, s.objects.count) }
        metrics.gauge("vssm_keys", [("type", "symmetric")]).set(Int64(counts.0))
        metrics.gauge("vssm_keys", [("type", "asymmetric")]).set(Int64(counts.1))
        metrics.gauge("vssm_keys", [("type", "mac")]).set(Int64(counts.2))
        metrics.gauge("vssm_objects").set(Int64(counts.3))
        metrics.gauge("vssm_session_keys").set(Int64(sessionKeyCount))
        metrics.gauge("vssm_build_info", [("version", VSSMVersion.string)]).set(Int64(1))
        metrics.gauge("vssm_ready").set(Int64(isRunning ? 1 : 0))
        if etcd.withLock({ $0 }) == nil { metrics.gauge("vssm_store_reachable").set(Int64(1)) }
        ProcessMetrics.update(metrics)
        return ServiceResponse(status: 200, body: metrics.render(), contentType: "text/plain; version=0.0.4; charset=utf-8")
    }

    /// Requests cheap enough to run on the event loop (measured: the pool hop cost ~1/3 of an ECDSA
    /// sign's server time on 2 cores). RSA private-key operations, admin calls (scrypt), key
    /// generation, backups, listings (their size grows with the store) and large inputs go to a
    /// worker pool so no loop ever stalls.
    public func isCheap(
        path: String, body: [UInt8], keyName: @autoclosure () -> String, fingerprint: String = "-", namespace: String? = nil
    ) -> Bool {
        guard body.count <= 64 << 10, isRunning else { return false }
        /// The stored key the request names, when this node has it (resolved in the caller's
        /// namespace once principals exist, as `authorize` and `storedName` decide; anything they
        /// would refuse just takes the pool).
        func present(_ s: KeyState, _ has: (KeyState, String) -> Bool) -> Bool {
            let name = keyName()
            var stored = name
            if !s.principals.isEmpty {
                guard let ns = s.principals[fingerprint]?.namespace(requested: namespace), !name.startsWithByte("@"),
                    !name.startsWithByte("~")
                else { return false }
                stored = Namespace.qualify(name, in: ns)
            }
            return has(s, stored)
        }
        // In a cluster a miss may ask etcd (`catchUp`): never on the event loop.
        let clustered = etcd.withLock { $0 != nil }
        switch path {
        case Route.extCapabilities:
            return true
        case Route.extVerifyPassword:
            // Tried here; a credential scrypt has not verified recently goes on to the admin pool
            // (`notHandledHere`).
            return true
        case Route.symmetricEncrypt, Route.symmetricDecrypt, Route.extSymmetricEncrypt, Route.extSymmetricDecrypt:
            return !clustered || state.withLock { s in present(s) { $0.symmetric[$1] != nil } }
        case Route.hmacCreate, Route.hmacVerify:
            return !clustered || state.withLock { s in present(s) { $0.mac[$1] != nil } }
        case Route.asymmetricVerify:
            return !clustered || state.withLock { s in present(s) { $0.asymmetric[$1] != nil } }
        case Route.asymmetricSign, Route.extSign:
            return state.withLock { s in present(s) { $0.asymmetric[$1]?.key.kind == .ec } }
        default:
            return false
        }
    }

    func healthcheck(path: String) -> ServiceResponse {
        guard path == Route.healthcheck else {
            return ServiceResponse(status: 404, body: Array("404 page not found\n".utf8), contentType: "text/plain; charset=utf-8")
        }
        return isRunning
            ? ServiceResponse(status: 200, body: Array("running".utf8), contentType: "text/plain; charset=utf-8")
            : ServiceResponse(status: 503, body: Array("bootstrapping".utf8), contentType: "text/plain; charset=utf-8")
    }

    // MARK: - Helpers shared by handlers

    /// Decodes a request and applies the size bounds every handler relies on (one place, before
    /// any handler acts): crypto input, CKA_ID, labels.
    func decode(_ body: [UInt8], _ schema: MessageSchema) throws(ServiceError) -> WireObject {
        let r: WireObject
        do { r = try WireObject.decode(body, as: schema) } catch { throw .json(error) }
        // base64 text of n bytes has 4*ceil(n/3) characters: compare the decoded size bound.
        func decodedSize(_ field: String) -> Int { r.string(field).utf8.count / 4 * 3 }
        let limits = config.limits
        if decodedSize("input") > limits.maxCryptoInputBytes {
            throw .tooLarge("input is larger than \(limits.maxCryptoInputBytes) bytes.")
        }
        if decodedSize("id") > ServiceLimits.maxIdBytes + 2 || (r.bytes("id")?.count ?? 0) > ServiceLimits.maxIdBytes {
            throw .tooLarge("id (CKA_ID) is longer than \(ServiceLimits.maxIdBytes) bytes.")
        }
        if decodedSize("attributes") > ServiceLimits.maxKeyAttributeBytes + 2
            || (r.bytes("attributes")?.count ?? 0) > ServiceLimits.maxKeyAttributeBytes
        {
            throw .tooLarge("attributes are longer than \(ServiceLimits.maxKeyAttributeBytes) bytes.")
        }
        for field in ["label", "application"] where r.string(field).utf8.count > ServiceLimits.maxLabelBytes {
            throw .tooLarge("\(field) is longer than \(ServiceLimits.maxLabelBytes) bytes.")
        }
        return r
    }

    func ok(_ w: WireWriter) -> ServiceResponse { ServiceResponse(status: 200, body: w.bytes) }

    /// The key a request names: a session key (`~owner/...`, `EphemeralStore`) or a stored one.
    /// Once principals exist the name resolves in the caller's namespace (`storedName`). In a
    /// cluster a key another node made a moment ago may not be in this node's view yet: a miss asks
    /// etcd whether the view is behind before it is an answer (`catchUp`).
    private func key<Entry>(
        _ name: String, _ ctx: RequestContext, session: (String) -> Entry?,
        stored: (KeyState, String) -> Entry?
    ) throws(ServiceError) -> Entry {
        let storedName = try storedName(name, ctx)
        if storedName.startsWithByte("~"), let k = session(storedName) { return k }
        if let k = state.withLock({ stored($0, storedName) }) { return k }
        // Looked up again whatever the catch-up did: the follower may have brought the key in
        // while this miss waited for it (then the catch-up itself finds nothing new).
        _ = catchUp()
        guard let k = state.withLock({ stored($0, storedName) }) else { throw .invalidKeyName(name) }
        return k
    }

    // Every handler fetches a key for a declared use, and the use is checked here against the
    // key's PKCS#11 usage flags: a handler cannot forget it (hmacVerify and asymmetricEncrypt did).

    func asymmetricKey(_ name: String, _ ctx: RequestContext, for use: KeyUse) throws(ServiceError) -> AsymmetricKeyEntry {
        let k = try key(name, ctx, session: ephemeral.asymmetric) { $0.asymmetric[$1] }
        try use.check(k.attributes, name: name)
        return k
    }

    func symmetricKey(_ name: String, _ ctx: RequestContext, for use: KeyUse) throws(ServiceError) -> SecretKeyEntry {
        let k = try key(name, ctx, session: ephemeral.symmetric) { $0.symmetric[$1] }
        try use.check(k.attributes, name: name)
        return k
    }

    func macKey(_ name: String, _ ctx: RequestContext, for use: KeyUse) throws(ServiceError) -> SecretKeyEntry {
        let k = try key(name, ctx, session: ephemeral.mac) { $0.mac[$1] }
        try use.check(k.attributes, name: name)
        return k
    }
}

/// What a request does with a key, each checked against the key's PKCS#11 usage flags (a flag
/// the module never set counts as TRUE for sign, verify, encrypt and decrypt, as in the original).
enum KeyUse {
    case sign, verify, encrypt, decrypt
    /// HMAC, CMAC and CBC-MAC: the module computes C_Verify's MAC with the same call.
    case mac
    /// C_CopyObject (CKA_COPYABLE, TRUE unless set).
    case copy
    /// The base key of C_DeriveKey (CKA_DERIVE).
    case derive
    /// The second key of CONCATENATE-BASE-AND-KEY: its value joins the new key, whose
    /// sensitivity and extractability it passes on (the handler's job); no flag of its own.
    case concatenate
    /// The wrapping key of C_WrapKey (CKA_WRAP) and the unwrapping key of C_UnwrapKey (CKA_UNWRAP).
    case wrap, unwrap
    /// The key C_WrapKey wraps (CKA_EXTRACTABLE).
    case wrapped
    /// C_GetAttributeValue(CKA_VALUE): only a key with CKA_SENSITIVE FALSE and CKA_EXTRACTABLE TRUE.
    case readValue
    /// An attestation statement for the key (no usage flag: whoever may use the key may see it).
    case attest
    /// ML-KEM (C_EncapsulateKey with the public half, C_DecapsulateKey with the private key):
    /// CKA_ENCAPSULATE / CKA_DECAPSULATE.
    case encapsulate, decapsulate
    /// C_SetAttributeValue: no usage flag (the route asks an officer's credential; sensitivity and
    /// extractability change one way only, `checkFlagChange`).
    case changeAttributes

    func check(_ attributes: KeyAttributes, name: String) throws(ServiceError) {
        let f = KeyFlags(blob: attributes.pkcs11)
        let (allowed, what): (Bool, String) =
            switch self {
            case .sign: (f.canSign, "signing (CKA_SIGN is FALSE)")
            case .verify: (f.canVerify, "verification (CKA_VERIFY is FALSE)")
            case .encrypt: (f.canEncrypt, "encryption (CKA_ENCRYPT is FALSE)")
            case .decrypt: (f.canDecrypt, "decryption (CKA_DECRYPT is FALSE)")
            case .mac: (f.canSign || f.canVerify, "MACs (CKA_SIGN and CKA_VERIFY are FALSE)")
            case .copy: (f.canCopy, "copies (CKA_COPYABLE is FALSE)")
            case .derive: (f.canDerive, "derivation (CKA_DERIVE is FALSE)")
            case .wrap: (f.canWrap, "wrapping (CKA_WRAP is FALSE)")
            case .unwrap: (f.canUnwrap, "unwrapping (CKA_UNWRAP is FALSE)")
            case .wrapped: (f.isExtractable, "being wrapped (CKA_EXTRACTABLE is FALSE)")
            case .readValue: (!f.isSensitive && f.isExtractable, "reading its value (it is sensitive or not extractable)")
            case .encapsulate: (f.canEncapsulate, "encapsulation (CKA_ENCAPSULATE is FALSE)")
            case .decapsulate: (f.canDecapsulate, "decapsulation (CKA_DECAPSULATE is FALSE)")
            case .concatenate, .changeAttributes, .attest: (true, "")
            }
        guard allowed else { throw .forbidden("Key function not permitted: key \(name) does not allow \(what).") }
    }
}

/// Extracts `keyName` and `algorithm` from a request body for the audit record without trusting
/// them (at most 128 characters, no control characters, quotes or backslashes).
enum AuditNames {
    static func fields(in body: [UInt8]) -> (key: String, mechanism: String) {
        guard let v = try? JSONParser.parse(body) else { return ("", "") }
        var name = ""
        if case .string(let s)? = v["keyName"] { name = s } else if case .string(let s)? = v["key_name"] { name = s }
        var mechanism = ""
        if case .string(let s)? = v["algorithm"] { mechanism = s }
        return (clean(name), clean(mechanism))
    }

    static func clean(_ text: String) -> String {
        // The common case (printable ASCII, short): the text itself.
        if text.utf8.count <= 128, text.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x80 && $0 != 0x22 && $0 != 0x5C }) { return text }
        var out = ""
        for scalar in text.unicodeScalars.prefix(128) {
            out += scalar.value < 0x20 || scalar == "\"" || scalar == "\\" ? "?" : String(scalar)
        }
        return out
    }
}
