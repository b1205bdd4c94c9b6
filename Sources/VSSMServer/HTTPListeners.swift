import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization
import VSSMClient
import VSSMCrypto
import VSSMWire

/// The four listeners of a node (API, health, internal sync, bootstrap-slave) on SwiftNIO +
/// NIOSSL. Handlers run on a thread pool, never on an event loop, so slow work (RSA-8192
/// generation, scrypt) blocks nothing and never loses its response (the original's 10 s write
/// timeout did).
public final class HTTPListeners: Sendable {
    public let node: KeyServiceNode
    let group: MultiThreadedEventLoopGroup
    let pool: NIOThreadPool
    private let channels = Mutex<[Channel]>([])
    private let tls = Mutex<TLSContexts?>(nil)
    private let bootstrapContext: NIOSSLContext
    /// SHA-256 of the bootstrap-phase certificate (printed so `vssm bootstrap` can pin it).
    public let bootstrapFingerprint: String

    struct TLSContexts: @unchecked Sendable {
        // NIOSSLContext is thread-safe and immutable after creation.
        let api: NIOSSLContext
        let `internal`: NIOSSLContext
        let slave: NIOSSLContext
    }

    public init(node: KeyServiceNode, eventLoopThreads: Int = 2, workerThreads: Int = 8) throws {
        self.node = node
        group = MultiThreadedEventLoopGroup(numberOfThreads: eventLoopThreads)
        pool = NIOThreadPool(numberOfThreads: workerThreads)
        pool.start()
        let identity = try DevPKI.bootstrapIdentity()
        var cfg = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: identity.certificateDER, format: .der))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: identity.keyPKCS8, format: .der)))
        cfg.certificateVerification = .none
        bootstrapContext = try NIOSSLContext(configuration: cfg)
        bootstrapFingerprint = DigestAlgorithm.sha256.hash(identity.certificateDER).map {
            let s = String($0, radix: 16, uppercase: true)
            return s.count == 1 ? "0" + s : s
        }.joined(separator: ":")
    }

    /// TLS contexts of the running phase, built once the RPC private key is known.
    func runningContexts() throws -> TLSContexts {
        if let t = tls.withLock({ $0 }) { return t }
        guard let key = node.rpcKey else { throw ServiceError.unavailable("bootstrapping") }
        var der = key.pkcs8DER
        defer { zeroize(&der) }
        let rpcCert = try NIOSSLCertificate(bytes: node.config.rpcCertificate, format: .der)
        let rpcKey = try NIOSSLPrivateKey(bytes: der, format: .der)
        var api = TLSConfiguration.makeServerConfiguration(certificateChain: [.certificate(rpcCert)], privateKey: .privateKey(rpcKey))
        api.certificateVerification = .noHostnameVerification
        api.trustRoots = .certificates(try node.config.clientTrustStore.map { try NIOSSLCertificate(bytes: $0, format: .der) })
        var internalCfg = api
        internalCfg.trustRoots = .certificates([rpcCert])
        var slave = api
        slave.certificateVerification = .none
        let t = TLSContexts(api: try NIOSSLContext(configuration: api), internal: try NIOSSLContext(configuration: internalCfg),
                            slave: try NIOSSLContext(configuration: slave))
        tls.withLock { $0 = t }
        return t
    }

    /// Binds every listener; returns the bound ports (useful with port 0).
    @discardableResult
    public func start() throws -> [RequestContext.Listener: Int] {
        let l = node.config.listen
        var ports: [RequestContext.Listener: Int] = [:]
        for (listener, address) in [(RequestContext.Listener.api, l.api), (.health, l.health), (.internal, l.internal), (.bootstrapSlave, l.bootstrapSlave)] {
            guard let ep = Endpoint(address) else { throw ServiceError.badRequest("invalid listen address for \(listener.rawValue): \(address)") }
            let channel = try bind(listener, ep)
            channels.withLock { $0.append(channel) }
            ports[listener] = channel.localAddress?.port ?? ep.port
        }
        return ports
    }

    private func bind(_ listener: RequestContext.Listener, _ ep: Endpoint) throws -> Channel {
        let maxBody = node.config.maxBodyBytes
        return try ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    if listener != .health {
                        guard let ssl = try self.context(for: listener) else {
                            // internal listeners exist only once running (as in the original)
                            throw ServiceError.unavailable("bootstrapping")
                        }
                        try ops.addHandler(NIOSSLServerHandler(context: ssl))
                    }
                    try ops.addHandler(IdleStateHandler(readTimeout: .minutes(5)))
                    try ops.configureHTTPServerPipeline(withErrorHandling: true)
                    try ops.addHandler(RequestHandler(node: self.node, listener: listener, pool: self.pool, maxBody: maxBody))
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

    public func shutdown() {
        let all = channels.withLock { c -> [Channel] in
            defer { c.removeAll() }
            return c
        }
        for c in all { try? c.close().wait() }
        try? pool.syncShutdownGracefully()
        try? group.syncShutdownGracefully()
    }

    /// Blocks until every listener is closed.
    public func wait() {
        for c in channels.withLock({ $0 }) { try? c.closeFuture.wait() }
    }
}

/// Aggregates one HTTP request, runs the node's handler on the thread pool, writes the answer.
final class RequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let node: KeyServiceNode
    let listener: RequestContext.Listener
    let pool: NIOThreadPool
    let maxBody: Int
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false
    private var subject: String?

    init(node: KeyServiceNode, listener: RequestContext.Listener, pool: NIOThreadPool, maxBody: Int) {
        self.node = node
        self.listener = listener
        self.pool = pool
        self.maxBody = maxBody
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.removeAll(keepingCapacity: true)
            tooLarge = false
        case .body(var buffer):
            guard !tooLarge else { return }
            if body.count + buffer.readableBytes > maxBody {
                tooLarge = true
                body = []
            } else if let bytes = buffer.readBytes(length: buffer.readableBytes) {
                body += bytes
            }
        case .end:
            guard let head else { return }
            self.head = nil
            dispatch(context: context, head: head)
        }
    }

    private func clientSubject(_ context: ChannelHandlerContext) -> String {
        if let subject { return subject }
        var s = "-"
        if let ssl = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self),
           let cert = ssl.peerCertificate, let der = try? cert.toDERBytes() {
            s = DevPKI.subject(ofDER: der)
        }
        subject = s
        return s
    }

    private func dispatch(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let keepAlive = head.isKeepAlive
        let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
        if tooLarge {
            let e = ServiceError.tooLarge("Request body is larger than \(maxBody) bytes.")
            write(context: context, ServiceResponse(status: e.status, body: e.body), keepAlive: false)
            return
        }
        let ctx = RequestContext(listener: listener, clientSubject: clientSubject(context),
                                 peer: context.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "-")
        if listener == .health {
            write(context: context, node.handle(path: path, body: body, context: ctx), keepAlive: keepAlive)
            return
        }
        if node.isCheap(path: path, body: body) {
            // Tens of microseconds of work: a hop to the pool and back would cost more than it saves.
            write(context: context, node.handle(path: path, body: body, context: ctx), keepAlive: keepAlive)
            return
        }
        let body = self.body
        let node = self.node
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        pool.runIfActive(eventLoop: context.eventLoop) {
            node.handle(path: path, body: body, context: ctx)
        }.whenComplete { result in
            let (handler, context) = bound.value
            switch result {
            case .success(let r): handler.write(context: context, r, keepAlive: keepAlive)
            case .failure:
                let e = ServiceError.internalError("server shutting down")
                handler.write(context: context, ServiceResponse(status: e.status, body: e.body), keepAlive: false)
            }
        }
    }

    private func write(context: ChannelHandlerContext, _ r: ServiceResponse, keepAlive: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: r.contentType)
        headers.add(name: "Content-Length", value: String(r.body.count))
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: r.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: r.body.count)
        buffer.writeBytes(r.body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            done.whenComplete { _ in bound.value.close(promise: nil) }
        }
    }
}
