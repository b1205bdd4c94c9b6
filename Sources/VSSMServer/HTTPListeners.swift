import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Prometheus
import Synchronization
import VSSMSync
import VSSMClient
import VSSMCrypto
import VSSMWire

/// The four listeners of a node (API, health, internal sync, bootstrap-slave) on SwiftNIO +
/// NIOSSL. Handlers run on thread pools, never on an event loop, so slow work (RSA-8192
/// generation, scrypt) blocks nothing and never loses its response (the original's 10 s write
/// timeout did). Admin calls (they run scrypt on the admin password) have a pool of their own, so
/// password guessing cannot slow signing. Every listener is bounded (`ServiceLimits`): connections,
/// handshake/request/idle time, body size per route; TLS 1.2+ with forward-secret suites only.
public final class HTTPListeners: Sendable {
    public let node: KeyServiceNode
    let group: MultiThreadedEventLoopGroup
    let pool: NIOThreadPool
    let adminPool: NIOThreadPool
    let adminQueued = Atomic<Int>(0)
    let adminTurns = AdminTurns(maxWaiting: 8)
    /// The `Date` header, formatted once a second.
    private let date = Locked<(second: Int64, text: String)>((0, ""))

    /// This second's `Date` header: every answer carries the node's clock (nodes compare theirs
    /// through it, as they do with etcd's).
    func dateHeader() -> String {
        let now = Int64(time(nil))
        return date.withLock { d in
            if d.second != now { d = (now, HTTPDate.format(now)) }
            return d.text
        }
    }
    /// Key generation (RSA-8192 takes seconds) has a pool of its own, so neither logins (scrypt,
    /// on the admin pool) nor signing wait behind it, and each client has a share of it.
    let keygenPool: NIOThreadPool
    /// Per-client token buckets of `limits.requestsPerSecondPerClient`.
    let rates = RequestRates()
    let keygenQueued = Locked<(total: Int, byClient: [String: Int])>((0, [:]))
    static let keygenPerClient = 2
    static let keygenQueueLimit = 16
    private let channels = Locked<[Channel]>([])
    private let tls = Locked<TLSContexts?>(nil)
    private let bootstrapContext: NIOSSLContext
    private let trackers: [RequestContext.Listener: ConnectionTracker]
    private let handshakeLogs: [RequestContext.Listener: RateLimitedLog] =
        [.api: RateLimitedLog(), .internal: RateLimitedLog(), .bootstrapSlave: RateLimitedLog(), .health: RateLimitedLog()]
    /// `SHA256:AB:...` of the bootstrap-phase certificate (logged so `vssm bootstrap --fingerprint` can pin it).
    public let bootstrapFingerprint: String

    struct TLSContexts: @unchecked Sendable {
        // NIOSSLContext is thread-safe and immutable after creation.
        let api: NIOSSLContext
        let `internal`: NIOSSLContext
        let slave: NIOSSLContext
    }

    /// TLS 1.2 suites with forward secrecy (ECDHE) and AEAD only; TLS 1.3 suites all have both.
    static let cipherSuites =
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
        + "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

    static func hardened(_ cfg: TLSConfiguration) -> TLSConfiguration {
        var c = cfg
        c.minimumTLSVersion = .tlsv12
        c.cipherSuites = cipherSuites
        return c
    }

    public init(node: KeyServiceNode, eventLoopThreads: Int = 2, workerThreads: Int = 8, adminThreads: Int = 2) throws {
        self.node = node
        group = MultiThreadedEventLoopGroup(numberOfThreads: eventLoopThreads)
        pool = NIOThreadPool(numberOfThreads: workerThreads)
        pool.start()
        adminPool = NIOThreadPool(numberOfThreads: adminThreads)
        adminPool.start()
        keygenPool = NIOThreadPool(numberOfThreads: 1)
        keygenPool.start()
        let limits = node.config.limits
        let all = [RequestContext.Listener.api, .health, .internal, .bootstrapSlave]
        let wanted = all.reduce(0) { $0 + limits.maxConnections($1) }
        // Caps only protect the process when they fit under its descriptor limit: then the listeners
        // never run out of descriptors (no EMFILE, no spinning accept loop), they evict instead.
        let usable = HTTPListeners.raiseFileLimit()
        let headroom = min(256, usable / 4)
        let scale = usable - headroom < wanted ? Double(max(usable - headroom, all.count)) / Double(wanted) : 1
        if scale < 1 {
            node.audit.error(
                "The open-file limit (\(usable)) is below the connection limits (\(wanted)) plus headroom; connection caps scaled by \((scale * 100).rounded() / 100)."
            )
        }
        var t: [RequestContext.Listener: ConnectionTracker] = [:]
        for l in all {
            t[l] = ConnectionTracker(
                limit: Int(Double(limits.maxConnections(l)) * scale),
                gauge: node.metrics.gauge("vssm_open_connections", [("listener", l.rawValue)]))
        }
        trackers = t
        let identity = try DevPKI.bootstrapIdentity()
        var cfg = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: identity.certificateDER, format: .der))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: identity.keyPKCS8, format: .der)))
        cfg.certificateVerification = .none
        bootstrapContext = try NIOSSLContext(configuration: HTTPListeners.hardened(cfg))
        bootstrapFingerprint = Endpoint.fingerprintText(DigestAlgorithm.sha256.hash(identity.certificateDER))
    }

    /// TLS contexts of the running phase, built once the RPC private key is known.
    func runningContexts() throws -> TLSContexts {
        if let t = tls.withLock({ $0 }) { return t }
        guard let key = node.rpcKey else { throw ServiceError.unavailable("bootstrapping") }
        var der = key.pkcs8DER
        defer { zeroize(&der) }
        let rpcCert = try NIOSSLCertificate(bytes: node.config.rpcCertificate, format: .der)
        let rpcKey = try NIOSSLPrivateKey(bytes: der, format: .der)
        var api = HTTPListeners.hardened(
            TLSConfiguration.makeServerConfiguration(certificateChain: [.certificate(rpcCert)], privateKey: .privateKey(rpcKey)))
        // A verified client certificate is required (BoringSSL: SSL_VERIFY_FAIL_IF_NO_PEER_CERT).
        api.certificateVerification = .noHostnameVerification
        api.trustRoots = .certificates(try node.config.clientTrustStore.map { try NIOSSLCertificate(bytes: $0, format: .der) })
        var internalCfg = api
        internalCfg.trustRoots = .certificates([rpcCert])
        var slave = api
        slave.certificateVerification = .none
        let t = TLSContexts(
            api: try NIOSSLContext(configuration: api), internal: try NIOSSLContext(configuration: internalCfg),
            slave: try NIOSSLContext(configuration: slave))
        tls.withLock { $0 = t }
        return t
    }

    /// Binds every listener; returns the bound ports (useful with port 0).
    @discardableResult
    public func start() throws -> [RequestContext.Listener: Int] {
        let l = node.config.listen
        var ports: [RequestContext.Listener: Int] = [:]
        for (listener, address) in [
            (RequestContext.Listener.api, l.api), (.health, l.health), (.internal, l.internal), (.bootstrapSlave, l.bootstrapSlave),
        ] {
            guard let ep = Endpoint(address) else {
                throw ServiceError.badRequest("invalid listen address for \(listener.rawValue): \(address)")
            }
            let channel: Channel
            do { channel = try bind(listener, ep) } catch {
                throw ServiceError.internalError(HTTPListeners.bindProblem(listener, address, error))
            }
            channels.withLock { $0.append(channel) }
            ports[listener] = channel.localAddress?.port ?? ep.port
        }
        return ports
    }

    /// "cannot listen on ADDRESS (api listener): address already in use: ..." with what to change.
    static func bindProblem(_ listener: RequestContext.Listener, _ address: String, _ error: Error) -> String {
        let option =
            ["api": "api", "health": "health", "internal": "internal", "bootstrapSlave": "bootstrap-slave"][listener.rawValue]
            ?? listener.rawValue
        let fix = "change listen.\(listener.rawValue) in the configuration or pass --\(option) HOST:PORT"
        if let e = error as? IOError {
            switch e.errnoCode {
            case EADDRINUSE:
                return
                    "cannot listen on \(address) (\(listener.rawValue) listener): the address is in use (another vssm, or another program, has this port); \(fix)"
            case EACCES:
                return
                    "cannot listen on \(address) (\(listener.rawValue) listener): permission denied (ports below 1024 need CAP_NET_BIND_SERVICE); \(fix)"
            case EADDRNOTAVAIL:
                return "cannot listen on \(address) (\(listener.rawValue) listener): no interface of this machine has that address; \(fix)"
            default: return "cannot listen on \(address) (\(listener.rawValue) listener): \(String(cString: strerror(e.errnoCode))); \(fix)"
            }
        }
        return "cannot listen on \(address) (\(listener.rawValue) listener): \(AcceptErrorLogger.describe(error)); \(fix)"
    }

    /// Raises the soft descriptor limit to the hard one; returns the limit now in force.
    static func raiseFileLimit() -> Int {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { return 1024 }
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        }
        return Int(clamping: rl.rlim_cur)
    }

    private func bind(_ listener: RequestContext.Listener, _ ep: Endpoint) throws -> Channel {
        let limits = node.config.limits
        let tracker = trackers[listener] ?? ConnectionTracker(limit: 1, gauge: nil)
        return try ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            // At the IPPROTO_TCP level: the same option number at the socket level is SO_DEBUG,
            // which needs CAP_NET_ADMIN (as any user but root every accepted connection was
            // closed during setup, and as root TCP_NODELAY was never set).
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .serverChannelInitializer { [node] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        AcceptErrorLogger(listener: listener, address: ep.description, log: node.audit))
                }
            }
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    guard tracker.admit(channel) else { throw ServiceError.unavailable("connection limit reached") }
                    channel.closeFuture.whenComplete { _ in tracker.remove(channel) }
                    let ops = channel.pipeline.syncOperations
                    // Decided once per connection: a connection set up while the node was
                    // bootstrapping never counts as authenticated, whatever happens later.
                    var verifying = false
                    if listener != .health {
                        guard let ssl = try self.context(for: listener) else {
                            // internal listeners exist only once running (as in the original)
                            throw ServiceError.unavailable("bootstrapping")
                        }
                        verifying = (listener == .api && ssl !== self.bootstrapContext) || listener == .internal
                        try ops.addHandler(NIOSSLServerHandler(context: ssl))
                    }
                    try ops.configureHTTPServerPipeline(withErrorHandling: true)
                    try ops.addHandler(
                        RequestHandler(
                            listeners: self, listener: listener, limits: limits,
                            verifiedTLS: verifying, tracker: tracker))
                }
            }
            .bind(host: ep.host, port: ep.port).wait()
    }

    private func context(for listener: RequestContext.Listener) throws -> NIOSSLContext? {
        guard node.isRunning else { return listener == .api ? bootstrapContext : nil }
        let t = try runningContexts()
        switch listener {
        case .api: return t.api
        case .internal: return t.internal
        case .bootstrapSlave: return t.slave
        case .health: return nil
        }
    }

    /// A refused handshake: counted by reason, and logged at most once per listener every 10 s.
    func handshakeFailed(_ listener: RequestContext.Listener, peer: String, _ failure: (label: String, text: String)) {
        node.metrics.counter(
            "vssm_tls_handshake_failures_total", [("listener", listener.rawValue), ("reason", failure.label)],
            help: "TLS handshakes that failed, by listener and reason"
        ).increment()
        handshakeLogs[listener]?.maybe { more in
            node.audit.error("\(listener.rawValue) listener: TLS handshake with \(peer) refused: \(failure.text)\(more)")
        }
    }

    /// Open connections of a listener (tests and metrics).
    public func openConnections(_ listener: RequestContext.Listener) -> Int { trackers[listener]?.count ?? 0 }

    public func shutdown() {
        node.stopBackgroundWork()
        let all = channels.withLock { c -> [Channel] in
            defer { c.removeAll() }
            return c
        }
        for c in all { try? c.close().wait() }
        try? pool.syncShutdownGracefully()
        try? adminPool.syncShutdownGracefully()
        try? keygenPool.syncShutdownGracefully()
        try? group.syncShutdownGracefully()
    }

    /// Blocks until every listener is closed.
    public func wait() {
        for c in channels.withLock({ $0 }) { try? c.closeFuture.wait() }
    }
}

/// At most one log line per `intervalMs` for one kind of event; the next line says how many were
/// left out. Hostile traffic (failed handshakes, accept errors) cannot flood the log this way.
final class RateLimitedLog: Sendable {
    private let state = Locked<(last: Int64, suppressed: Int)>((Int64.min / 2, 0))
    let intervalMs: Int64

    init(intervalMs: Int64 = 10_000) { self.intervalMs = intervalMs }

    /// Calls `write` with the " (and N more ...)" suffix when a line is due.
    func maybe(_ write: (String) -> Void) {
        due { suppressed in write(suppressed > 0 ? " (and \(suppressed) more since the last such line)" : "") }
    }

    /// Calls `body` with how many events were left out since the last time it ran, when one is due.
    func due(_ body: (Int) -> Void) {
        let now = Monotonic.ms()
        let suppressed: Int? = state.withLock { s in
            guard now - s.last >= intervalMs else {
                s.suppressed += 1
                return nil
            }
            defer { s = (now, 0) }
            return s.suppressed
        }
        if let suppressed { body(suppressed) }
    }
}

/// Logs what goes wrong while an accepted connection is set up (a socket option refused, the
/// connection cap, a pipeline that cannot be built): NIO closes such a connection and reports the
/// error on the listening channel, where nothing else would see it. At most one line per listener
/// every 10 s, with the count of the errors it stands for.
final class AcceptErrorLogger: ChannelInboundHandler, Sendable {
    typealias InboundIn = Any
    let listener: RequestContext.Listener
    let address: String
    let log: AuditLog
    private let limiter = RateLimitedLog()

    init(listener: RequestContext.Listener, address: String, log: AuditLog) {
        self.listener = listener
        self.address = address
        self.log = log
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        limiter.maybe { more in
            log.error(
                "\(listener.rawValue) listener \(address): a connection was closed while it was set up: \(AcceptErrorLogger.describe(error))\(more)"
            )
        }
        context.fireErrorCaught(error)
    }

    static func describe(_ error: Error) -> String {
        if let e = error as? ServiceError { return e.message }
        if let e = error as? IOError { return e.description }
        return String(describing: error)
    }
}

/// Token buckets, one per client certificate: `perSecond` requests a second, bursts of up to one
/// second's worth. Buckets untouched for a minute are dropped (bounded by the active clients).
/// A client that sends again before the Retry-After it was given gets its 429 only when that time
/// comes (`delayMs`): a flood that ignores Retry-After makes at most one request per connection and
/// wait, instead of thousands of cheap refusals a second that still cost the node a core.
final class RequestRates: Sendable {
    struct Refusal: Equatable {
        /// Retry-After, in seconds.
        var wait: Int
        /// How long to hold the answer (0: at once; the client had not been told yet).
        var delayMs: Int64
    }
    /// The longest a refusal is held.
    static let maxDelayMs: Int64 = 2000
    private struct Bucket {
        var tokens: Double
        var atMs: Int64
        /// Until when this client was told to wait (monotonic ms).
        var toldUntilMs: Int64 = 0
    }
    private let buckets = Locked<(all: [String: Bucket], sweptAt: Int64)>(([:], 0))

    /// nil: take one and go on; else the refusal. `burst`: the bucket's size (default: a second's worth).
    /// `jitterMs` is added to a held refusal: a client's connections, refused together, do not
    /// come back together (their refusals would otherwise land in one burst every second).
    func take(
        _ client: String, perSecond: Int, burst: Int? = nil, nowMs: Int64 = Monotonic.ms(),
        jitterMs: Int64 = Int64.random(in: 0..<250)
    ) -> Refusal? {
        let now = nowMs
        let rate = Double(perSecond)
        let size = Double(burst ?? perSecond)
        return buckets.withLock { b -> Refusal? in
            if now - b.sweptAt > 60_000 {
                b.all = b.all.filter { now - $0.value.atMs < 60_000 }
                b.sweptAt = now
            }
            var bucket = b.all[client] ?? Bucket(tokens: size, atMs: now)
            bucket.tokens = min(size, bucket.tokens + Double(now - bucket.atMs) / 1000 * rate)
            bucket.atMs = now
            defer { b.all[client] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            if bucket.toldUntilMs > now {
                let delay = min(bucket.toldUntilMs - now + jitterMs, RequestRates.maxDelayMs)
                return Refusal(wait: max(1, Int((Double(bucket.toldUntilMs - now - delay) / 1000).rounded(.up))), delayMs: delay)
            }
            let wait = max(1, Int(((1 - bucket.tokens) / rate).rounded(.up)))
            bucket.toldUntilMs = now + Int64(wait) * 1000
            return Refusal(wait: wait, delayMs: 0)
        }
    }
}

/// Admin calls one at a time per client: while one runs, the client's next ones wait here (up to
/// `maxWaiting`), and each starts when the one before it ends.
final class AdminTurns: Sendable {
    typealias Start = @Sendable () -> Void
    /// A client present here has a call running; its value is the calls waiting behind it.
    private let clients = Locked<[String: [Start]]>([:])
    let maxWaiting: Int

    init(maxWaiting: Int) { self.maxWaiting = maxWaiting }

    /// Starts `start` now (nothing of `client` running) or after the calls ahead of it; false when
    /// `maxWaiting` already wait (nothing is started).
    func enter(_ client: String, _ start: @escaping Start) -> Bool {
        let now: Bool? = clients.withLock { c in
            guard var waiting = c[client] else {
                c[client] = []
                return true
            }
            guard waiting.count < maxWaiting else { return nil }
            waiting.append(start)
            c[client] = waiting
            return false
        }
        guard let now else { return false }
        if now { start() }
        return true
    }

    /// `client`'s running call ended: its next one starts.
    func leave(_ client: String) {
        let next: Start? = clients.withLock { c in
            guard var waiting = c[client] else { return nil }
            guard !waiting.isEmpty else {
                c.removeValue(forKey: client)
                return nil
            }
            let first = waiting.removeFirst()
            c[client] = waiting
            return first
        }
        next?()
    }

    /// Clients with a call running (for tests).
    var running: Int { clients.withLock { $0.count } }
}

/// Why a TLS handshake failed, in words, from BoringSSL's reason code: the server logs it (a
/// client with an expired certificate or another deployment's used to see only a reset).
enum HandshakeFailure {
    /// (reason label for the metric, sentence for the log), or nil when it was no handshake failure.
    static func classify(_ error: Error) -> (label: String, text: String)? {
        guard let e = error as? NIOSSLError, case .handshakeFailed = e else { return nil }
        let raw = String(describing: e)
        let code =
            raw.firstRange(of: "OPENSSL_internal:").map { r in
                String(raw[r.upperBound...].prefix(while: { $0.isLetter || $0.isNumber || $0 == "_" }))
            } ?? "UNKNOWN"
        switch code {
        case "CERTIFICATE_VERIFY_FAILED":
            return (
                "client_certificate_rejected",
                "the client's certificate did not verify against clientTrustStore (expired, not yet valid, or issued by another CA)"
            )
        case "PEER_DID_NOT_RETURN_A_CERTIFICATE":
            return ("no_client_certificate", "the client sent no certificate (mutual TLS: configure its certificate and key)")
        case "NO_SHARED_CIPHER", "UNSUPPORTED_PROTOCOL", "NO_SUPPORTED_VERSIONS_ENABLED", "NO_COMMON_SIGNATURE_ALGORITHMS":
            return ("no_common_parameters", "no TLS version or cipher suite in common (the service needs TLS 1.2 or 1.3 with ECDHE)")
        case "WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNEXPECTED_RECORD":
            return ("not_tls", "the client did not speak TLS (plain HTTP to a TLS port?)")
        case let c where c.hasPrefix("TLSV1_ALERT_") || c.hasPrefix("SSLV3_ALERT_"):
            let alert = c.split(separator: "_").dropFirst(2).joined(separator: " ").lowercased()
            return (
                "client_refused_server",
                "the client refused this node's certificate (its alert: \(alert); wrong CA file or serverName on the client?)"
            )
        default:
            return ("other", "TLS handshake failed (\(code))")
        }
    }
}

/// Open connections of one listener. At the cap, the connection that has waited longest without a
/// request in progress (handshaking, before its first request, or idle keep-alive) is closed to
/// admit the new one; only when every connection is busy with a request is the new one refused.
final class ConnectionTracker: Sendable {
    let limit: Int
    /// Requests in progress (receiving or being handled) one client may hold: its certificate's
    /// fingerprint, or its address without one. A quarter of the listener's connections.
    let perClient: Int
    /// A request whose body is still arriving after this long is stalled: its connection may be
    /// closed to admit another, like an idle one (slow bodies cannot hold the listener).
    static let stalledMs: Int64 = 1000
    private enum Phase { case idle, receiving(sinceMs: Int64), handling }
    private struct Entry {
        var channel: Channel
        var phase: Phase
        var since: UInt64
        var client: String?
    }
    private let state = Locked<(entries: [ObjectIdentifier: Entry], clock: UInt64, inProgress: [String: Int])>(([:], 0, [:]))

    /// `vssm_open_connections` of this listener, set to the count at every change.
    private let gauge: Gauge?

    init(limit: Int, gauge: Gauge?) {
        self.limit = max(limit, 1)
        perClient = max(2, self.limit / 4)
        self.gauge = gauge
    }

    var count: Int { state.withLock { $0.entries.count } }

    private enum Admission { case admitted(evicting: Channel?), refused }

    /// At the cap, the connection that waited longest without a request (handshaking, before its
    /// first request, idle) is closed to admit the new one; failing that, the one whose request
    /// body stalled longest. A connection whose request is being handled is never closed.
    func admit(_ channel: Channel) -> Bool {
        let now = Monotonic.ms()
        let a: Admission = state.withLock { s in
            s.clock += 1
            var victim: Channel? = nil
            if s.entries.count >= limit {
                let idle = s.entries.filter { if case .idle = $0.value.phase { true } else { false } }
                    .min(by: { $0.value.since < $1.value.since })
                let stalled = s.entries.compactMap { e -> (ObjectIdentifier, Int64)? in
                    if case .receiving(let since) = e.value.phase, now - since >= ConnectionTracker.stalledMs { return (e.key, since) }
                    return nil
                }.min(by: { $0.1 < $1.1 })
                guard let key = idle?.key ?? stalled?.0, let old = s.entries.removeValue(forKey: key) else { return .refused }
                victim = old.channel
                if case .receiving = old.phase, let client = old.client {
                    s.inProgress[client] = max(0, (s.inProgress[client] ?? 1) - 1)
                    if s.inProgress[client] == 0 { s.inProgress.removeValue(forKey: client) }
                }
            }
            s.entries[ObjectIdentifier(channel)] = Entry(channel: channel, phase: .idle, since: s.clock, client: nil)
            gauge?.set(Int64(s.entries.count))
            return .admitted(evicting: victim)
        }
        guard case .admitted(let victim) = a else { return false }
        victim?.close(promise: nil)
        return true
    }

    /// A request's head arrived. A client with `perClient` requests in progress gives up its
    /// request that stalled longest (its connection is closed) or, with none stalled, is refused
    /// (false): clients that share an address still get through a flood from that address.
    func startRequest(_ channel: Channel, client: String) -> Bool {
        let now = Monotonic.ms()
        let (ok, victim): (Bool, Channel?) = state.withLock { s in
            s.clock += 1
            let id = ObjectIdentifier(channel)
            guard var e = s.entries[id] else { return (true, nil) }
            var victim: Channel? = nil
            if (s.inProgress[client] ?? 0) >= perClient {
                let stalled = s.entries.compactMap { entry -> (ObjectIdentifier, Int64)? in
                    guard entry.value.client == client, case .receiving(let since) = entry.value.phase,
                        now - since >= ConnectionTracker.stalledMs
                    else { return nil }
                    return (entry.key, since)
                }.min(by: { $0.1 < $1.1 })
                guard let stalled, let old = s.entries.removeValue(forKey: stalled.0) else { return (false, nil) }
                victim = old.channel
                s.inProgress[client] = max(0, (s.inProgress[client] ?? 1) - 1)
            }
            s.inProgress[client, default: 0] += 1
            e.phase = .receiving(sinceMs: now)
            e.since = s.clock
            e.client = client
            s.entries[id] = e
            return (true, victim)
        }
        victim?.close(promise: nil)
        return ok
    }

    /// The request's last byte arrived: it is being handled (never evicted).
    func requestComplete(_ channel: Channel) {
        state.withLock { s in
            let id = ObjectIdentifier(channel)
            if case .receiving? = s.entries[id]?.phase { s.entries[id]?.phase = .handling }
        }
    }

    /// The answer went out: the connection is idle again.
    func requestDone(_ channel: Channel) {
        state.withLock { s in
            s.clock += 1
            let id = ObjectIdentifier(channel)
            guard let e = s.entries[id] else { return }
            if case .idle = e.phase {
            } else if let client = e.client {
                s.inProgress[client] = max(0, (s.inProgress[client] ?? 1) - 1)
                if s.inProgress[client] == 0 { s.inProgress.removeValue(forKey: client) }
            }
            s.entries[id]?.phase = .idle
            s.entries[id]?.since = s.clock
        }
    }

    func remove(_ channel: Channel) {
        state.withLock { s in
            guard let e = s.entries.removeValue(forKey: ObjectIdentifier(channel)) else { return }
            if case .idle = e.phase {
            } else if let client = e.client {
                s.inProgress[client] = max(0, (s.inProgress[client] ?? 1) - 1)
                if s.inProgress[client] == 0 { s.inProgress.removeValue(forKey: client) }
            }
            gauge?.set(Int64(s.entries.count))
        }
    }
}

/// Aggregates one HTTP request, runs the node's handler on a thread pool, writes the answer.
/// Owns the connection's deadlines: handshake + first header, request, keep-alive idle.
final class RequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let listeners: HTTPListeners
    let node: KeyServiceNode
    let listener: RequestContext.Listener
    let limits: ServiceLimits
    /// The TLS context of this connection required and verified a client certificate.
    let verifiedTLS: Bool
    let tracker: ConnectionTracker
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var maxBody = 0
    /// A 413 was sent for the current request: ignore the rest of it, the connection is closing.
    private var discarding = false
    private var identity: (subject: String, fingerprint: String, authenticated: Bool)?
    /// The ID of the request being answered (`X-Request-Id`).
    private var requestID: String?
    private var deadline: Scheduled<Void>?
    /// The request being answered, for the metrics: its path, and when its last byte arrived.
    private var metricsPath: String?
    private var requestEnded: NIODeadline?
    /// The series of this connection's last answer: a connection mostly repeats one call.
    private var lastSeries: (path: String, status: Int, series: ServiceMetrics.RequestSeries)?
    /// The client's address as the audit line shows it, read once per connection.
    private var peer: String?
    /// Whom this connection's requests count for (`RequestContext.clientKey`), decided once.
    private var clientKey: String?
    /// An `ext/changes` request waiting for the next change: its waiter and its timer.
    private var changeWait: (id: UInt64, timer: Scheduled<Void>)?

    init(listeners: HTTPListeners, listener: RequestContext.Listener, limits: ServiceLimits, verifiedTLS: Bool, tracker: ConnectionTracker)
    {
        self.listeners = listeners
        self.node = listeners.node
        self.listener = listener
        self.limits = limits
        self.verifiedTLS = verifiedTLS
        self.tracker = tracker
    }

    // MARK: deadlines

    private func arm(_ context: ChannelHandlerContext, ms: Int) {
        deadline?.cancel()
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: .milliseconds(Int64(ms))) { bound.value.close(promise: nil) }
    }

    private func disarm() {
        deadline?.cancel()
        deadline = nil
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // Covers an idle TCP connection, a stalled TLS handshake and a slow first header.
        arm(context, ms: limits.handshakeTimeoutMs)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        disarm()
        stopWaiting()
    }

    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        stopWaiting()
        context.fireChannelInactive()
    }

    /// A waiting `ext/changes` whose connection went: no answer, no waiter left behind.
    private func stopWaiting() {
        guard let w = changeWait else { return }
        changeWait = nil
        w.timer.cancel()
        node.store.changes.cancel(w.id)
    }

    /// HTTP parse errors: the protocol error handler before us has answered 400 with
    /// `Connection: close`; now really close. Anything else (TLS failures) closes too.
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let failure = HandshakeFailure.classify(error) {
            listeners.handshakeFailed(listener, peer: peerText(context), failure)
        }
        context.close(promise: nil)
    }

    // MARK: requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            guard !discarding else { return }
            head = h
            body.removeAll(keepingCapacity: true)
            // One client (certificate, or address without one) holds at most a quarter of the
            // listener in requests in progress; the rest of the listener stays for everyone else.
            let client = clientKey ?? RequestContext.clientKey(fingerprint: clientIdentity(context).fingerprint, peer: peerText(context))
            clientKey = client
            guard tracker.startRequest(context.channel, client: client) else {
                discarding = true
                self.head = nil
                let e = ServiceError(429, "Too many requests in progress from this client; wait for their answers.")
                write(context: context, ServiceResponse(status: e.status, body: e.body), keepAlive: false)
                return
            }
            arm(context, ms: limits.requestTimeoutMs)
            let path = String(h.uri.split(separator: "?", maxSplits: 1).first ?? "")
            metricsPath = path
            maxBody = limits.maxBody(listener: listener, path: path, authenticated: clientIdentity(context).authenticated)
            if let declared = h.headers.first(name: "content-length").flatMap({ Int($0) }), declared > maxBody {
                refuseTooLarge(context)
            }
        case .body(var buffer):
            guard !discarding, head != nil else { return }
            // Compare without adding: both sides are bounded, but keep the habit.
            if buffer.readableBytes > maxBody - body.count {
                refuseTooLarge(context)
            } else if let bytes = buffer.readBytes(length: buffer.readableBytes) {
                body += bytes
            }
        case .end:
            guard !discarding, let head else { return }
            self.head = nil
            disarm()
            requestEnded = .now()
            tracker.requestComplete(context.channel)
            dispatch(context: context, head: head)
        }
    }

    /// Answers 413 at once (before the rest of the body is read) and closes the connection.
    private func refuseTooLarge(_ context: ChannelHandlerContext) {
        discarding = true
        body = []
        head = nil
        let e = ServiceError.tooLarge("Request body is larger than \(maxBody) bytes.")
        write(context: context, ServiceResponse(status: e.status, body: e.body), keepAlive: false)
    }

    /// Subject of the verified client certificate, and whether this connection counts as
    /// authenticated: its TLS context required a verified certificate and one was presented.
    private func clientIdentity(_ context: ChannelHandlerContext) -> (subject: String, fingerprint: String, authenticated: Bool) {
        if let identity { return identity }
        var s = "-"
        var fingerprint = "-"
        var hasCert = false
        if let ssl = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self),
            let cert = ssl.peerCertificate, let der = try? cert.toDERBytes()
        {
            s = DevPKI.subject(ofDER: der)
            fingerprint = Hex.encode(DigestAlgorithm.sha256.hash(der))
            hasCert = true
        }
        let id = (subject: s, fingerprint: fingerprint, authenticated: verifiedTLS && hasCert)
        identity = id
        return id
    }

    private func peerText(_ context: ChannelHandlerContext) -> String {
        if let peer { return peer }
        let text = context.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "-"
        peer = text
        return text
    }

    private func dispatch(context: ChannelHandlerContext, head: HTTPRequestHead) {
        var keepAlive = head.isKeepAlive
        let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
        let id = clientIdentity(context)
        var ctx = RequestContext(
            listener: listener, clientSubject: id.subject,
            peer: peerText(context),
            authenticated: id.authenticated)
        // The operator's per-client rate: decided here, on the event loop, before any work.
        let rate = node.config.requestsPerSecondPerClient
        if rate > 0, listener == .api, id.authenticated, let refusal = listeners.rates.take(id.fingerprint, perSecond: rate) {
            refuseRate(context: context, rate: rate, refusal, keepAlive: head.isKeepAlive)
            return
        }
        if listener == .api && node.isRunning && !id.authenticated {
            // A connection from the bootstrap window (or without a verified certificate) is never
            // served once running, and is closed so the client reconnects with a real handshake.
            keepAlive = false
        }
        // Small bodies are read once here (cheap-route decision and audit line); a large one is
        // left to the worker pool, never parsed on the event loop.
        if listener != .health && body.count <= 64 << 10 {
            ctx.auditFields = AuditNames.fields(in: body)
        }
        ctx.clientFingerprint = id.fingerprint
        ctx.requestedNamespace = head.headers.first(name: Route.namespaceHeader)
        ctx.requestID = node.nextRequestID()
        ctx.receivedNs = Monotonic.ns()
        requestID = ctx.requestID
        if listener == .health
            || node.isCheap(
                path: path, body: body, keyName: ctx.auditFields?.key ?? "",
                fingerprint: ctx.clientFingerprint, namespace: ctx.requestedNamespace)
        {
            // Tens of microseconds of work: a hop to the pool and back would cost more than it saves.
            var here = ctx
            here.noHashing = true
            let r = node.handle(path: path, body: body, context: here)
            if r.status != ServiceResponse.notHandledHere.status {
                write(context: context, r, keepAlive: keepAlive)
                return
            }
        }
        let body = self.body
        switch listener == .api ? RouteTable.api[path]?.pool : nil {
        case .keygen?:
            runKeygen(context: context, path: path, body: body, ctx: ctx, keepAlive: keepAlive)
            return
        case .admin?:
            runAdmin(context: context, path: path, body: body, ctx: ctx, keepAlive: keepAlive)
            return
        default: break
        }
        run(on: listeners.pool, context: context, path: path, body: body, ctx: ctx, keepAlive: keepAlive) {}
    }

    /// An admin call (scrypt, backups, principals) on the admin pool: `maxQueuedAdminCalls` in all,
    /// and one at a time per client, its others waiting their turn (`AdminTurns`): one tenant's
    /// burst of wrong PINs holds one admin thread, never the pool ahead of another tenant's login.
    private func runAdmin(context: ChannelHandlerContext, path: String, body: [UInt8], ctx: RequestContext, keepAlive: Bool) {
        let listeners = self.listeners
        let queued = listeners.adminQueued.wrappingAdd(1, ordering: .relaxed).newValue
        if queued > ServiceLimits.maxQueuedAdminCalls {
            listeners.adminQueued.wrappingSubtract(1, ordering: .relaxed)
            let e = ServiceError.unavailable("Too many admin calls in progress; try again later.")
            write(context: context, ServiceResponse(status: e.status, body: e.body), keepAlive: keepAlive)
            return
        }
        let client = ctx.clientKey
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let loop = context.eventLoop
        let started = listeners.adminTurns.enter(client) {
            loop.execute {
                let (handler, context) = bound.value
                handler.run(on: listeners.adminPool, context: context, path: path, body: body, ctx: ctx, keepAlive: keepAlive) {
                    listeners.adminQueued.wrappingSubtract(1, ordering: .relaxed)
                    listeners.adminTurns.leave(client)
                }
            }
        }
        if !started {
            listeners.adminQueued.wrappingSubtract(1, ordering: .relaxed)
            var r = ServiceResponse(
                status: 429, body: ServiceError(429, "Too many admin calls waiting from this client; wait for their answers.").body)
            r.retryAfterSeconds = 1
            write(context: context, r, keepAlive: keepAlive)
        }
    }

    /// 429 for a client beyond its rate, at once or, for one that did not wait as told, when its
    /// wait is over (the connection reads nothing meanwhile).
    private func refuseRate(context: ChannelHandlerContext, rate: Int, _ refusal: RequestRates.Refusal, keepAlive: Bool) {
        var r = ServiceResponse(
            status: 429,
            body: ServiceError(
                429,
                RateLimit.messagePrefix
                    + "\(rate) requests per second for this client certificate; retry after \(refusal.wait) s."
            ).body)
        r.retryAfterSeconds = refusal.wait
        guard refusal.delayMs > 0 else { return write(context: context, r, keepAlive: keepAlive) }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let response = r
        context.eventLoop.scheduleTask(in: .milliseconds(refusal.delayMs)) {
            let (handler, context) = bound.value
            handler.write(context: context, response, keepAlive: keepAlive)
        }
    }

    /// Runs the request's handler on `pool` and writes its answer; `release` runs once, when the
    /// handler is done or when the pool would not take it (shutting down).
    private func run(
        on pool: NIOThreadPool, context: ChannelHandlerContext, path: String, body: [UInt8], ctx: RequestContext,
        keepAlive: Bool, release: @escaping @Sendable () -> Void
    ) {
        let node = self.node
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        pool.runIfActive(eventLoop: context.eventLoop) {
            defer { release() }
            return node.handle(path: path, body: body, context: ctx)
        }.whenComplete { result in
            let (handler, context) = bound.value
            switch result {
            case .success(let r): handler.write(context: context, r, keepAlive: keepAlive)
            case .failure:
                release()
                let e = ServiceError.internalError("server shutting down")
                handler.write(context: context, ServiceResponse(status: e.status, body: e.body), keepAlive: false)
            }
        }
    }

    /// A key generation on the keygen pool: at most `keygenPerClient` of one client (certificate,
    /// or address) queued or running, `keygenQueueLimit` in all; beyond, 429 with Retry-After.
    private func runKeygen(context: ChannelHandlerContext, path: String, body: [UInt8], ctx: RequestContext, keepAlive: Bool) {
        let client = ctx.clientKey
        let admitted: Bool = listeners.keygenQueued.withLock { q in
            guard q.total < HTTPListeners.keygenQueueLimit, (q.byClient[client] ?? 0) < HTTPListeners.keygenPerClient else { return false }
            q.total += 1
            q.byClient[client, default: 0] += 1
            return true
        }
        guard admitted else {
            var r = ServiceResponse(
                status: 429,
                body: ServiceError(
                    429, "Too many key generations in progress for this client (or on this node); try again when they finish."
                ).body)
            r.retryAfterSeconds = 1
            write(context: context, r, keepAlive: keepAlive)
            return
        }
        let listeners = self.listeners
        run(on: listeners.keygenPool, context: context, path: path, body: body, ctx: ctx, keepAlive: keepAlive) {
            listeners.keygenQueued.withLock { q in
                q.total -= 1
                q.byClient[client, default: 1] -= 1
                if q.byClient[client] == 0 { q.byClient.removeValue(forKey: client) }
            }
        }
    }

    /// `ext/changes` at the current revision: answered at the next change, or with `changed: false`
    /// when its wait is over, from this event loop (no thread waits). Bounded per client and in all.
    private func awaitChange(context: ChannelHandlerContext, since: String, waitMs: Int, keepAlive: Bool) {
        let feed = node.store.changes
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        let api = limits.maxConnections(.api)
        let outcome = feed.wait(since: since, client: clientKey ?? "-", maxPerClient: max(4, api / 4), maxTotal: max(4, api / 2)) {
            revision in
            loop.execute {
                let (handler, context) = bound.value
                handler.changeArrived(context: context, revision: revision, changed: true, keepAlive: keepAlive)
            }
        }
        switch outcome {
        case .now(let revision):
            write(
                context: context, ServiceResponse(status: 200, body: KeyServiceNode.changesAnswer(revision, changed: true).bytes),
                keepAlive: keepAlive)
        case .refused:
            var r = ServiceResponse(
                status: 429,
                body: ServiceError(429, "Too many requests of this client are waiting for changes; wait for their answers.").body)
            r.retryAfterSeconds = 1
            write(context: context, r, keepAlive: keepAlive)
        case .waiting(let id):
            let timer = loop.scheduleTask(in: .milliseconds(Int64(waitMs))) {
                let (handler, context) = bound.value
                if feed.cancel(id) {
                    handler.changeArrived(context: context, revision: feed.revision, changed: false, keepAlive: keepAlive)
                }
            }
            changeWait = (id, timer)
            // Waiting is not work in progress: the client's other requests are not held back by
            // it, and the connection may be closed to admit another, as an idle one.
            tracker.requestDone(context.channel)
        }
    }

    private func changeArrived(context: ChannelHandlerContext, revision: String, changed: Bool, keepAlive: Bool) {
        guard let w = changeWait else { return }  // answered already, or the connection went
        changeWait = nil
        w.timer.cancel()
        write(
            context: context, ServiceResponse(status: 200, body: KeyServiceNode.changesAnswer(revision, changed: changed).bytes),
            keepAlive: keepAlive)
    }

    private func write(context: ChannelHandlerContext, _ r: ServiceResponse, keepAlive: Bool) {
        if let wait = r.waitForChange { return awaitChange(context: context, since: wait.since, waitMs: wait.waitMs, keepAlive: keepAlive) }
        if let path = metricsPath {
            let now = NIODeadline.now()
            let series: ServiceMetrics.RequestSeries
            if let last = lastSeries, last.path == path, last.status == r.status {
                series = last.series
            } else {
                series = node.metrics.series(listener: listener.rawValue, path: path, status: r.status)
                lastSeries = (path, r.status, series)
            }
            series.record(nanoseconds: (now - (requestEnded ?? now)).nanoseconds)
            metricsPath = nil
            requestEnded = nil
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: r.contentType)
        headers.add(name: "Content-Length", value: String(r.body.count))
        headers.add(name: "Date", value: listeners.dateHeader())
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        if let seconds = r.retryAfterSeconds { headers.add(name: "Retry-After", value: String(seconds)) }
        if let id = requestID {
            headers.add(name: "X-Request-Id", value: id)
            requestID = nil
        }
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: r.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: r.body.count)
        buffer.writeBytes(r.body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if keepAlive {
            tracker.requestDone(context.channel)
            arm(context, ms: limits.idleTimeoutMs)
        } else {
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            done.whenComplete { _ in bound.value.close(promise: nil) }
        }
    }
}
