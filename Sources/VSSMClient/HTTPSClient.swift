import COpenSSL
import Glibc
import Synchronization
import VSSMSync
import VSSMWire

/// Where TLS material comes from: PEM bytes, already read from files by the caller.
public struct TLSClientConfiguration: Sendable {
    public var endpoints: [Endpoint]
    /// Name the server certificate must carry (the original's clients use `VSSM`).
    public var serverName: String = "VSSM"
    /// PEM trust anchors for the server certificate; nil disables verification (bootstrap only).
    public var trustPEM: [UInt8]?
    public var clientCertificatePEM: [UInt8]?
    public var clientKeyPEM: [UInt8]?
    public var clientKeyPassphrase: String?
    public var connectTimeoutMs = 3000
    public var requestTimeoutMs = 30000
    /// Idle connections kept per endpoint.
    public var maxIdlePerEndpoint = 16
    /// How long an endpoint that failed is skipped before it is tried again.
    public var endpointRetryMs = 30_000
    /// `.ordered`: every call starts at the endpoint that answered last (sticky failover);
    /// `.roundRobin`: calls start at the next endpoint in turn (load spread over a cluster).
    public var order: EndpointOrder = .ordered
    /// Sent as `X-VSSM-Namespace` with every request: which of its principal's namespaces a
    /// client works in (nil: the principal's first). Only `a-z 0-9 . _ -` are sent.
    public var namespace: String?
    /// SHA-256 of the one server certificate to accept (DER), checked after the handshake: the
    /// bootstrap phase's throwaway certificate, which no CA signed (`vssm bootstrap --fingerprint`).
    public var pinnedCertificateSHA256: [UInt8]?
    /// How messages name `trustPEM` ("the CA file /etc/vssm/ca.pem").
    public var trustDescription = "the configured CA"

    public init(endpoints: [Endpoint]) { self.endpoints = endpoints }
}

public enum EndpointOrder: String, Sendable {
    case ordered
    case roundRobin = "round-robin"
}

public struct HTTPResponse: Sendable {
    public let status: Int
    public let body: [UInt8]
    /// `Retry-After` in seconds (numeric form), when the answer had one.
    public var retryAfterSeconds: Int?
    /// The server's clock (its `Date` header, seconds since 1970), when it sent one.
    public var serverDate: Int64?
    public var text: String { String(decoding: body, as: UTF8.self) }
    public init(status: Int, body: [UInt8], retryAfterSeconds: Int? = nil) {
        self.status = status
        self.body = body
        self.retryAfterSeconds = retryAfterSeconds
    }
}

/// What the service says when a client's request rate is over the operator's limit (the start of
/// its `error`); the client then holds back until `Retry-After` has passed.
public enum RateLimit {
    public static let messagePrefix = "Rate limit: "
}

/// Blocking HTTPS/1.1 client over system OpenSSL with a pool of keep-alive connections per
/// endpoint, failover across endpoints and fork safety (connections are tagged with their PID).
/// No threads are started; no lock is held across I/O.
public final class HTTPSClient: @unchecked Sendable {
    // SSL_CTX is immutable after init and thread-safe for SSL_new; the pool is behind a lock.
    private let context: OpaquePointer
    public let configuration: TLSClientConfiguration
    /// The header lines every request carries before its Content-Length (built once).
    private let headerLines: String
    private let idle: Locked<[Endpoint: [TLSConnection]]> = Locked([:])
    /// Index of the endpoint that answered last; requests start there (ordered).
    private let preferred = Atomic<Int>(0)
    /// Calls so far; round-robin starts each at the next endpoint.
    private let turn = Atomic<Int>(0)
    /// Endpoints that failed, by index: skipped until this monotonic time (ms).
    private let badUntil = Locked<[Int: Int64]>([:])
    /// Monotonic ms until which the service's rate limit holds this client back (0: not limited).
    private let rateLimitedUntil = Atomic<Int64>(0)
    public let stats = Stats()

    public final class Stats: Sendable {
        let connects = Atomic<Int>(0)
        let requests = Atomic<Int>(0)
        public var connectCount: Int { connects.load(ordering: .relaxed) }
        public var requestCount: Int { requests.load(ordering: .relaxed) }
    }

    public init(_ configuration: TLSClientConfiguration) throws(ClientError) {
        guard !configuration.endpoints.isEmpty else { throw .configuration("no endpoints configured") }
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw .tls("SSL_CTX_new failed") }
        self.configuration = configuration
        // The namespace header only for a valid name (anything else would be an injected header).
        let namespace = configuration.namespace.flatMap { NamespaceName.isValid($0) ? "\(Route.namespaceHeader): \($0)\r\n" : nil } ?? ""
        headerLines = "Host: \(configuration.serverName)\r\nContent-Type: application/json\r\n" + namespace
        self.context = ctx
        _ = copenssl_ctx_set_min_tls12(ctx)
        // TLS 1.2 only with forward-secret AEAD suites (TLS 1.3 suites all are).
        _ = SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL")
        copenssl_ctx_set_modes(ctx)
        // If anything below throws, every stored property is already set, so deinit runs and frees
        // the context (freeing it here as well was a double free, found by the wrong-PIN test).
        if let trust = configuration.trustPEM {
            try HTTPSClient.loadTrust(ctx, trust)
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        } else {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        }
        if let cert = configuration.clientCertificatePEM {
            guard let keyPEM = configuration.clientKeyPEM else { throw ClientError.configuration("client certificate without a key") }
            try HTTPSClient.loadIdentity(ctx, cert, keyPEM, configuration.clientKeyPassphrase)
        }
    }

    deinit {
        idle.withLock { $0.removeAll() }
        SSL_CTX_free(context)
    }

    private static func opensslError() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        copenssl_last_error(&buf, buf.count)
        return String(cBuffer: buf)
    }

    private static func loadTrust(_ ctx: OpaquePointer, _ pem: [UInt8]) throws(ClientError) {
        guard let store = SSL_CTX_get_cert_store(ctx) else { throw .tls("no certificate store") }
        let bio = pem.withUnsafeBufferPointer { BIO_new_mem_buf($0.baseAddress, Int32($0.count)) }
        guard let bio else { throw .configuration("cannot read trust anchors") }
        defer { BIO_free(bio) }
        var count = 0
        while let x = PEM_read_bio_X509(bio, nil, nil, nil) {
            X509_STORE_add_cert(store, x)
            X509_free(x)
            count += 1
        }
        ERR_clear_error()
        guard count > 0 else { throw .configuration("no certificate found in the CA file") }
    }

    private static func loadIdentity(_ ctx: OpaquePointer, _ certPEM: [UInt8], _ keyPEM: [UInt8], _ pass: String?) throws(ClientError) {
        let bio = certPEM.withUnsafeBufferPointer { BIO_new_mem_buf($0.baseAddress, Int32($0.count)) }
        guard let bio else { throw .configuration("cannot read client certificate") }
        defer { BIO_free(bio) }
        guard let leaf = PEM_read_bio_X509(bio, nil, nil, nil) else {
            throw .configuration("no certificate in the client certificate file")
        }
        defer { X509_free(leaf) }
        guard SSL_CTX_use_certificate(ctx, leaf) == 1 else { throw .configuration("client certificate rejected: \(opensslError())") }
        while let extra = PEM_read_bio_X509(bio, nil, nil, nil) {
            if copenssl_ctx_add0_chain_cert(ctx, extra) != 1 { X509_free(extra) }
        }
        ERR_clear_error()
        let key: OpaquePointer? = keyPEM.withUnsafeBufferPointer { buf in
            if let pass { return pass.withCString { copenssl_read_private_key_pem(buf.baseAddress, Int32(buf.count), $0) } }
            return copenssl_read_private_key_pem(buf.baseAddress, Int32(buf.count), nil)
        }
        guard let key else {
            ERR_clear_error()
            throw .configuration(
                pass == nil
                    ? "cannot read the client key (encrypted keys need a passphrase)" : "cannot decrypt the client key: wrong passphrase")
        }
        defer { EVP_PKEY_free(key) }
        guard SSL_CTX_use_PrivateKey(ctx, key) == 1, SSL_CTX_check_private_key(ctx) == 1 else {
            throw .configuration("client key does not match the client certificate")
        }
    }

    /// Drops every pooled connection (e.g. after fork or at C_Finalize).
    public func closeIdle() { idle.withLock { $0.removeAll() } }

    private func checkout(_ endpoint: Endpoint) -> TLSConnection? {
        let pid = ProcessIdentity.current
        return idle.withLock { pool -> TLSConnection? in
            guard var list = pool[endpoint] else { return nil }
            // Connections of another process (we were forked) are dropped without touching the socket state.
            list.removeAll { $0.pid != pid }
            let c = list.popLast()
            pool[endpoint] = list
            return c
        }
    }

    private func checkin(_ c: TLSConnection) {
        guard c.pid == ProcessIdentity.current else { return }
        let max = configuration.maxIdlePerEndpoint
        idle.withLock { pool in
            var list = pool[c.endpoint] ?? []
            if list.count < max { list.append(c) }
            pool[c.endpoint] = list
        }
    }

    // MARK: - Endpoint health

    /// Marks an endpoint bad (skipped until the retry time, then tried again inline: the module
    /// starts no threads) and drops its pooled connections, which are as hung as the endpoint.
    private func markBad(_ index: Int) {
        let until = Monotonic.ms() + Int64(configuration.endpointRetryMs)
        badUntil.withLock { $0[index] = until }
        idle.withLock { $0[configuration.endpoints[index]] = [] }
    }

    private func markGood(_ index: Int) {
        if badUntil.withLock({ $0.removeValue(forKey: index) }) != nil || preferred.load(ordering: .relaxed) != index {
            preferred.store(index, ordering: .relaxed)
        }
    }

    /// Every endpoint once: healthy ones first, starting at the one that answered last, then those
    /// marked bad (soonest retry first), so a call still succeeds when only a "bad" one is up.
    /// `sticky`: start at the endpoint that answered last even with `round-robin` (a long poll
    /// must keep asking the node whose revision it holds).
    func attemptOrder(sticky: Bool = false) -> [Int] {
        let n = configuration.endpoints.count
        // The turn counter wraps; masking the sign bit keeps the index non-negative.
        let start =
            configuration.order == .roundRobin && !sticky
            ? (turn.wrappingAdd(1, ordering: .relaxed).oldValue & Int.max) % n
            : preferred.load(ordering: .relaxed) % n
        // Every call comes here (C_Sign too): with one endpoint, or none marked bad, no clock read
        // and no filtering.
        if n == 1 { return [0] }
        let marked = badUntil.withLock { $0.isEmpty ? nil : $0 }
        let rotated = (0..<n).map { (start + $0) % n }
        guard let marked else { return rotated }
        let now = Monotonic.ms()
        let bad = marked.filter { $0.value > now }
        return rotated.filter { bad[$0] == nil } + rotated.filter { bad[$0] != nil }.sorted { (bad[$0] ?? 0) < (bad[$1] ?? 0) }
    }

    /// How one attempt failed: `sent` when the whole request may have reached the server (then a
    /// non-idempotent call must not be sent again: the first copy may have been executed).
    struct AttemptFailure: Error {
        let error: ClientError
        let sent: Bool
    }

    /// POSTs `body` to `path`. A transport failure moves on to the next endpoint: for an idempotent
    /// call every configured endpoint is tried; a non-idempotent call (key management) only while the
    /// request has provably not been sent. An endpoint that timed out or could not be reached is
    /// marked bad at once and skipped by later calls until `endpointRetryMs` has passed. Total time
    /// is bounded by about `requestTimeoutMs` per endpoint.
    public func post(_ path: String, body: [UInt8], idempotent: Bool) throws(ClientError) -> HTTPResponse {
        // The service said this client is over its rate limit: every call of this client (the
        // whole pool, every thread) waits out its Retry-After without sending anything.
        let until = rateLimitedUntil.load(ordering: .relaxed)
        if until != 0, case let held = until - Monotonic.ms(), held > 0 {
            throw .http(
                status: 429,
                message: RateLimit.messagePrefix
                    + "this client is over the service's request rate limit; held back here for \((held + 999) / 1000) s more")
        }
        let r = try send(path, body: body, idempotent: idempotent)
        if r.status == 429, let seconds = r.retryAfterSeconds, seconds > 0,
            r.text.contains(RateLimit.messagePrefix)
        {
            rateLimitedUntil.store(Monotonic.ms() + Int64(clamping: min(seconds, 3600)) * 1000, ordering: .relaxed)
        }
        return r
    }

    /// A long poll (`ext/changes`): on a connection of its own, never the pool's (it would hold a
    /// pooled connection for minutes), answered within `waitMs` plus a margin; the first endpoint
    /// that answers. `handle.cancel()` from another thread ends it at once (C_Finalize).
    public func postWaiting(_ path: String, body: [UInt8], waitMs: Int, handle: LongPollHandle) throws(ClientError) -> HTTPResponse {
        let budget = waitMs + configuration.requestTimeoutMs
        let (c, head) = try openOwn(requestBytes(path, body), ioTimeoutMs: budget, headWithinMs: budget, handle: handle)
        defer { withExtendedLifetime(c) { handle.detach() } }
        do {
            let (body, _) = try HTTPResponseParser.readBody(head, from: c)
            var response = HTTPResponse(status: head.status, body: body, retryAfterSeconds: head.retryAfter)
            response.serverDate = head.serverDate
            return response
        } catch {
            if handle.isCancelled { throw .connect("cancelled") }
            throw error
        }
    }

    /// A streamed answer (etcd's watch): on a connection of its own, each newline-terminated line
    /// of the body is handed to `onLine` as it arrives, until `onLine` answers false or the server
    /// ends the body. Between lines the server may stay silent up to `idleTimeoutMs` (TCP keepalive
    /// ends it sooner when the server's host is gone); a line longer than `maxLineBytes` ends the
    /// stream. Any status but 200 is an `.http` error.
    /// `handle.cancel()` from another thread ends it at once.
    public func postStreaming(
        _ path: String, body: [UInt8], idleTimeoutMs: Int, maxLineBytes: Int, handle: LongPollHandle,
        onLine: ([UInt8]) throws(ClientError) -> Bool
    ) throws(ClientError) {
        let within = configuration.requestTimeoutMs
        let (c, head) = try openOwn(requestBytes(path, body), ioTimeoutMs: within, headWithinMs: within, handle: handle)
        defer { withExtendedLifetime(c) { handle.detach() } }
        do throws(ClientError) {
            guard head.status == 200 else {
                let (text, _) = try HTTPResponseParser.readBody(head, from: c)
                throw ClientError.http(status: head.status, message: String(decoding: text.prefix(300), as: UTF8.self))
            }
            c.setIOTimeout(ms: idleTimeoutMs)
            // A server gone silently is noticed in about a minute, before the idle timeout.
            c.enableKeepAlive(idleSeconds: 30, intervalSeconds: 10, count: 3)
            c.deadlineMs = .max
            try HTTPResponseParser.streamLines(head, from: c, maxLineBytes: maxLineBytes, onLine)
        } catch {
            if handle.isCancelled { throw .connect("cancelled") }
            throw error
        }
    }

    private func requestBytes(_ path: String, _ body: [UInt8]) -> [UInt8] {
        Array("POST \(path) HTTP/1.1\r\n\(headerLines)Content-Length: \(body.count)\r\n\r\n".utf8) + body
    }

    /// Sends `request` on a new connection to the endpoint that answered last (then the others:
    /// a long poll or a watch keeps asking the node whose revision it holds, where round-robin
    /// would answer every wait at once with another node's) and reads the answer's head. The
    /// connection comes back attached to `handle`: the caller detaches it before letting it go.
    private func openOwn(
        _ request: [UInt8], ioTimeoutMs: Int, headWithinMs: Int, handle: LongPollHandle
    ) throws(ClientError) -> (TLSConnection, HTTPResponseParser.Head) {
        var lastError = ClientError.connect("no endpoint tried")
        for index in attemptOrder(sticky: true) {
            if handle.isCancelled { throw .connect("cancelled") }
            let c: TLSConnection
            do {
                c = try connect(configuration.endpoints[index], ioTimeoutMs: ioTimeoutMs)
            } catch {
                lastError = error
                continue
            }
            guard handle.attach(c.fd) else { throw .connect("cancelled") }
            do {
                try c.write(request)
                c.deadlineMs = Monotonic.ms() + Int64(headWithinMs)
                let head = try HTTPResponseParser.readHead(from: c)
                markGood(index)
                return (c, head)
            } catch {
                // Detached while the connection is alive: a cancel never shuts down a reused descriptor.
                withExtendedLifetime(c) { handle.detach() }
                if handle.isCancelled { throw .connect("cancelled") }
                lastError = error
                guard error.isTransport else { throw error }
            }
        }
        throw lastError
    }

    private func send(_ path: String, body: [UInt8], idempotent: Bool) throws(ClientError) -> HTTPResponse {
        let request = requestBytes(path, body)
        stats.requests.add(1, ordering: .relaxed)
        var lastError = ClientError.connect("no endpoint tried")
        for index in attemptOrder() {
            do throws(AttemptFailure) {
                let r = try attempt(request, endpointIndex: index, idempotent: idempotent)
                markGood(index)
                return r
            } catch {
                lastError = error.error
                guard error.error.isTransport else { throw error.error }
                if error.sent && !idempotent { throw error.error }
            }
        }
        throw lastError
    }

    private func attempt(_ request: [UInt8], endpointIndex: Int, idempotent: Bool) throws(AttemptFailure) -> HTTPResponse {
        let endpoint = configuration.endpoints[endpointIndex]
        // A pooled connection may have been closed by the server while idle: then use another or a
        // fresh one. A pooled connection that times out means the endpoint hangs: no other pooled
        // connection to it is tried.
        while let pooled = checkout(endpoint) {
            if pooled.isStale() { continue }
            do {
                try pooled.write(request)
            } catch {
                // An incomplete request is never executed by the server.
                if case .timeout = error { markBad(endpointIndex); throw AttemptFailure(error: error, sent: false) }
                continue
            }
            do {
                return try receive(pooled)
            } catch {
                if case .http = error { throw AttemptFailure(error: error, sent: true) }
                if case .timeout = error { markBad(endpointIndex); throw AttemptFailure(error: error, sent: true) }
                // Closed while we wrote (an idle timeout racing our request): the server did not
                // answer. Safe to repeat only when the call is idempotent.
                guard idempotent, pooled.buffer.isEmpty else { throw AttemptFailure(error: error, sent: true) }
                continue
            }
        }
        let fresh: TLSConnection
        do {
            fresh = try connect(endpoint, ioTimeoutMs: configuration.requestTimeoutMs)
        } catch {
            markBad(endpointIndex)
            throw AttemptFailure(error: error, sent: false)
        }
        stats.connects.add(1, ordering: .relaxed)
        do {
            try fresh.write(request)
        } catch {
            markBad(endpointIndex)
            throw AttemptFailure(error: error, sent: false)
        }
        do {
            return try receive(fresh)
        } catch {
            if error.isTransport { markBad(endpointIndex) }
            throw AttemptFailure(error: error, sent: true)
        }
    }

    /// A new connection to `endpoint` with this client's TLS settings.
    private func connect(_ endpoint: Endpoint, ioTimeoutMs: Int) throws(ClientError) -> TLSConnection {
        try TLSConnection.open(
            endpoint, context: context, serverName: configuration.serverName, verifyName: configuration.trustPEM != nil,
            pinnedSHA256: configuration.pinnedCertificateSHA256, trustDescription: configuration.trustDescription,
            connectTimeoutMs: configuration.connectTimeoutMs, ioTimeoutMs: ioTimeoutMs)
    }

    private func receive(_ c: TLSConnection) throws(ClientError) -> HTTPResponse {
        c.buffer.removeAll(keepingCapacity: true)
        c.deadlineMs = Monotonic.ms() + Int64(configuration.requestTimeoutMs)
        let (response, keepAlive) = try HTTPResponseParser.read(from: c)
        c.usedCount += 1
        if keepAlive { checkin(c) }
        return response
    }
}

/// Minimal HTTP/1.1 response reader: status line, headers, Content-Length or chunked body.
enum HTTPResponseParser {
    static let maxHeader = 64 * 1024
    static let maxBody = 256 * 1024 * 1024

    /// A response's status line and the headers this client uses.
    struct Head {
        var status: Int
        var contentLength: Int?
        var retryAfter: Int?
        var serverDate: Int64?
        var chunked: Bool
        var keepAlive: Bool
    }

    static func read(from c: TLSConnection) throws(ClientError) -> (HTTPResponse, Bool) {
        let head = try readHead(from: c)
        let (body, keepAlive) = try readBody(head, from: c)
        var response = HTTPResponse(status: head.status, body: body, retryAfterSeconds: head.retryAfter)
        response.serverDate = head.serverDate
        return (response, keepAlive)
    }

    /// Reads up to the end of the header block (the body stays in `c.buffer`).
    static func readHead(from c: TLSConnection) throws(ClientError) -> Head {
        var headerEnd: Int? = nil
        while headerEnd == nil {
            headerEnd = find(c.buffer, [13, 10, 13, 10])
            if headerEnd != nil { break }
            guard c.buffer.count < maxHeader else { throw .protocolError("response header too large") }
            guard try c.fill() else {
                throw c.buffer.isEmpty ? .io("connection closed by \(c.endpoint)") : .protocolError("truncated response header")
            }
        }
        guard let end = headerEnd else { throw .protocolError("no header") }
        // The head is read as bytes (no String per line: this runs for every signature).
        let head = Array(c.buffer[0..<end])
        c.buffer.removeFirst(end + 4)
        var lines: [ArraySlice<UInt8>] = []
        var lineStart = 0
        for i in 0..<head.count where head[i] == 10 {
            lines.append(head[lineStart..<(i > lineStart && head[i - 1] == 13 ? i - 1 : i)])
            lineStart = i + 1
        }
        lines.append(head[lineStart..<head.count])
        let statusLine = lines.removeFirst()
        // "HTTP/1.x SSS ..."
        guard statusLine.count >= 12, statusLine.starts(with: Array("HTTP/1.".utf8)), statusLine[statusLine.startIndex + 8] == 32,
            let status = decimal(statusLine[(statusLine.startIndex + 9)..<(statusLine.startIndex + 12)]),
            statusLine.count == 12 || statusLine[statusLine.startIndex + 12] == 32
        else {
            throw .protocolError("bad status line")
        }
        var contentLength: Int? = nil
        var retryAfter: Int? = nil
        var serverDate: Int64? = nil
        var chunked = false
        var keepAlive = statusLine[statusLine.startIndex + 7] == UInt8(ascii: "1")
        for line in lines {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let name = line[line.startIndex..<colon]
            var value = line[(colon + 1)...]
            while let f = value.first, f == 32 || f == 9 { value = value.dropFirst() }
            while let l = value.last, l == 32 || l == 9 { value = value.dropLast() }
            if equalsIgnoringCase(name, "content-length") {
                // A negative, non-numeric or repeated-and-different length is a protocol error, never a slice bound.
                guard let n = decimal(value), contentLength == nil || contentLength == n else {
                    throw .protocolError("bad Content-Length: \(String(decoding: value.prefix(32), as: UTF8.self))")
                }
                contentLength = n
            } else if equalsIgnoringCase(name, "retry-after") {
                retryAfter = decimal(value)
            } else if equalsIgnoringCase(name, "date") {
                serverDate = HTTPDate.parse(String(decoding: value.prefix(64), as: UTF8.self))
            } else if equalsIgnoringCase(name, "transfer-encoding") {
                chunked = contains(value, "chunked")
            } else if equalsIgnoringCase(name, "connection") {
                if contains(value, "close") { keepAlive = false }
                if contains(value, "keep-alive") { keepAlive = true }
            }
        }
        return Head(
            status: status, contentLength: contentLength, retryAfter: retryAfter, serverDate: serverDate, chunked: chunked,
            keepAlive: keepAlive)
    }

    /// Reads the whole body `head` announces; whether the connection may be used again.
    static func readBody(_ head: Head, from c: TLSConnection) throws(ClientError) -> ([UInt8], Bool) {
        var keepAlive = head.keepAlive
        var body: [UInt8] = []
        if head.chunked {
            while true {
                let size = try chunkSize(from: c)
                // Compare without adding: a hostile chunk size near Int.max must not overflow.
                guard size <= maxBody - body.count else { throw .protocolError("response too large") }
                while c.buffer.count < size + 2 { guard try c.fill() else { throw .protocolError("truncated chunk") } }
                body += c.buffer[0..<size]
                c.buffer.removeFirst(size + 2)
                if size == 0 { break }
            }
        } else if let length = head.contentLength {
            guard length <= maxBody else { throw .protocolError("response too large") }
            while c.buffer.count < length { guard try c.fill() else { throw .protocolError("truncated body") } }
            body = Array(c.buffer[0..<length])
            c.buffer.removeFirst(length)
        } else {
            while try c.fill() { guard c.buffer.count <= maxBody else { throw .protocolError("response too large") } }
            body = c.buffer
            c.buffer.removeAll()
            keepAlive = false
        }
        return (body, keepAlive)
    }

    /// Hands the body `head` announces to `onLine` one newline-terminated line at a time (without
    /// the newline) as it arrives; returns when the body ends or `onLine` answers false.
    static func streamLines(
        _ head: Head, from c: TLSConnection, maxLineBytes: Int, _ onLine: ([UInt8]) throws(ClientError) -> Bool
    ) throws(ClientError) {
        var line: [UInt8] = []
        // The first `n` bytes of the buffer belong to the body: split them into lines. False once
        // `onLine` said stop.
        func take(_ n: Int) throws(ClientError) -> Bool {
            var start = 0
            defer { c.buffer.removeFirst(start) }
            while start < n {
                let end = c.buffer[start..<n].firstIndex(of: 10) ?? n
                guard end - start <= maxLineBytes - line.count else {
                    throw .protocolError("a streamed line is over \(maxLineBytes) bytes")
                }
                line += c.buffer[start..<end]
                start = end
                guard end < n else { break }
                start += 1
                let more = try onLine(line)
                line.removeAll(keepingCapacity: true)
                if !more { return false }
            }
            return true
        }
        if head.chunked {
            while true {
                let size = try chunkSize(from: c)
                if size == 0 { return }
                var left = size
                while left > 0 {
                    if c.buffer.isEmpty { guard try c.fill() else { throw .protocolError("truncated chunk") } }
                    let n = min(left, c.buffer.count)
                    guard try take(n) else { return }
                    left -= n
                }
                while c.buffer.count < 2 { guard try c.fill() else { throw .protocolError("truncated chunk") } }
                c.buffer.removeFirst(2)
            }
        }
        var left = head.contentLength ?? Int.max
        while left > 0 {
            if c.buffer.isEmpty {
                guard try c.fill() else {
                    if head.contentLength == nil { return }
                    throw .protocolError("truncated body")
                }
            }
            let n = min(left, c.buffer.count)
            guard try take(n) else { return }
            left -= n
        }
    }

    /// The size line that starts a chunk (extensions ignored), consumed.
    static func chunkSize(from c: TLSConnection) throws(ClientError) -> Int {
        var lineEnd = find(c.buffer, [13, 10])
        while lineEnd == nil {
            guard c.buffer.count < maxHeader else { throw .protocolError("chunk size line too long") }
            guard try c.fill() else { throw .protocolError("truncated chunked body") }
            lineEnd = find(c.buffer, [13, 10])
        }
        guard let le = lineEnd else { throw .protocolError("truncated chunked body") }
        let sizeText = String(decoding: c.buffer[0..<le], as: UTF8.self).split(separator: ";").first ?? ""
        // At most 15 hex digits: a size that fits an Int with room to add the CRLF.
        guard sizeText.count <= 15, let size = Int(sizeText.trimmingCharacters(in: " "), radix: 16), size >= 0 else {
            throw .protocolError("bad chunk size")
        }
        c.buffer.removeFirst(le + 2)
        return size
    }

    /// A non-negative decimal of at most 18 digits (no sign, no spaces): never overflows.
    static func decimal(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 18 else { return nil }
        var n = 0
        for b in bytes {
            guard b >= 48, b <= 57 else { return nil }
            n = n * 10 + Int(b - 48)
        }
        return n
    }

    static func lower(_ b: UInt8) -> UInt8 { b >= 65 && b <= 90 ? b + 32 : b }

    static func equalsIgnoringCase(_ bytes: ArraySlice<UInt8>, _ text: StaticString) -> Bool {
        guard bytes.count == text.utf8CodeUnitCount else { return false }
        let t = UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
        return zip(bytes, t).allSatisfy { lower($0) == $1 }
    }

    /// Whether `needle` (lowercase) occurs in `bytes`, ignoring case.
    static func contains(_ bytes: ArraySlice<UInt8>, _ needle: StaticString) -> Bool {
        let n = UnsafeBufferPointer(start: needle.utf8Start, count: needle.utf8CodeUnitCount)
        guard bytes.count >= n.count else { return false }
        var i = bytes.startIndex
        while i + n.count <= bytes.endIndex {
            if zip(bytes[i..<(i + n.count)], n).allSatisfy({ lower($0) == $1 }) { return true }
            i += 1
        }
        return false
    }

    static func find(_ hay: [UInt8], _ needle: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        var i = 0
        while i <= hay.count - needle.count {
            if hay[i] == needle[0] {
                var ok = true
                for j in 1..<needle.count where hay[i + j] != needle[j] { ok = false; break }
                if ok { return i }
            }
            i += 1
        }
        return nil
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        var s = self[...]
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

/// Interrupts a long poll from another thread: the socket is shut down under a lock the poller
/// takes before its connection closes, so a descriptor number reused since is never touched.
public final class LongPollHandle: Sendable {
    private let state = Locked<(fd: Int32, cancelled: Bool)>((-1, false))
    public init() {}
    public var isCancelled: Bool { state.withLock { $0.cancelled } }
    func attach(_ fd: Int32) -> Bool {
        state.withLock { s in
            guard !s.cancelled else { return false }
            s.fd = fd
            return true
        }
    }
    func detach() { state.withLock { $0.fd = -1 } }
    public func cancel() {
        state.withLock { s in
            s.cancelled = true
            if s.fd >= 0 { _ = shutdown(s.fd, Int32(SHUT_RDWR)) }
        }
    }
}
