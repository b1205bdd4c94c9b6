import COpenSSL
import Glibc
import VSSMSync
import VSSMWire

/// A host and port of a key service listener.
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    public let host: String
    public let port: Int
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, `[v6]:port` or `https://host:port`.
    public init?(_ text: String) {
        var t = Substring(text)
        if t.hasPrefix("https://") { t = t.dropFirst(8) }
        while t.hasSuffix("/") { t = t.dropLast() }
        if t.hasPrefix("["), let close = t.firstIndex(of: "]") {
            let host = t[t.index(after: t.startIndex)..<close]
            let rest = t[t.index(after: close)...]
            guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()), (0...65535).contains(port) else { return nil }
            self.init(host: String(host), port: port)
            return
        }
        guard let colon = t.lastIndex(of: ":"), let port = Int(t[t.index(after: colon)...]),
            (0...65535).contains(port), colon != t.startIndex
        else { return nil }
        self.init(host: String(t[..<colon]), port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Whether the host is this machine's loopback (`localhost`, 127.0.0.0/8, ::1), decided from
    /// the text alone: no name is looked up.
    public var isLoopback: Bool {
        if host.lowercased() == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { b in b.prefix(15).allSatisfy { $0 == 0 } && b[15] == 1 }
        }
        return false
    }

    /// `SHA256:AB:CD:...`, the form `vssm serve` prints and `vssm bootstrap --fingerprint` takes.
    public static func fingerprintText(_ sha256: [UInt8]) -> String {
        "SHA256:" + sha256.map { Hex.encode([$0]).uppercased() }.joined(separator: ":")
    }

    /// Parses `SHA256:` followed by 64 hex digits (colons optional, any case); nil otherwise.
    public static func parseFingerprint(_ text: String) -> [UInt8]? {
        var t = Substring(text.filter { !$0.isWhitespace })
        if t.uppercased().hasPrefix("SHA256:") { t = t.dropFirst(7) }
        guard let bytes = Hex.decode(t.filter { $0 != ":" }), bytes.count == 32 else { return nil }
        return bytes
    }
}

/// One TLS connection. Used by one thread at a time (checked out of the pool), hence the
/// `@unchecked Sendable`: the pool hands it over, never shares it.
final class TLSConnection: @unchecked Sendable {
    let fd: Int32
    let ssl: OpaquePointer
    /// Process that created it: a forked child must never use (or shut down) its parent's connections.
    let pid: pid_t
    let endpoint: Endpoint
    var buffer: [UInt8] = []
    /// Where SSL_read puts plaintext before it is appended to `buffer` (allocated once, not per read).
    private let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 16384, alignment: 16)
    var usedCount = 0
    /// Monotonic ms by which the current response must be complete (a server that trickles bytes
    /// would otherwise reset the per-read socket timeout forever).
    var deadlineMs: Int64 = .max

    private init(fd: Int32, ssl: OpaquePointer, endpoint: Endpoint) {
        self.fd = fd
        self.ssl = ssl
        self.pid = ProcessIdentity.current
        self.endpoint = endpoint
    }

    deinit {
        if pid == ProcessIdentity.current { _ = SSL_shutdown(ssl) }
        SSL_free(ssl)
        close(fd)
        chunk.deallocate()
    }

    static func errno_text() -> String { String(cString: strerror(errno)) }

    /// TCP connect with a deadline, then a TLS handshake; socket timeouts bound every later read/write.
    static func open(
        _ endpoint: Endpoint, context: OpaquePointer, serverName: String, verifyName: Bool,
        pinnedSHA256: [UInt8]? = nil, trustDescription: String = "the configured CA", connectTimeoutMs: Int, ioTimeoutMs: Int
    ) throws(ClientError) -> TLSConnection {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &res)
        guard rc == 0, let first = res else {
            throw .connect("\(endpoint): cannot resolve host: \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(res) }
        var lastError = "no address"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            ai = a.pointee.ai_next
            let fd = socket(
                a.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            if fd < 0 { lastError = errno_text(); continue }
            var r = connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen)
            if r != 0 && errno == EINPROGRESS {
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                r = poll(&p, 1, Int32(clamping: connectTimeoutMs))
                if r == 0 { close(fd); lastError = "connect timed out after \(connectTimeoutMs) ms"; continue }
                var soErr: Int32 = 0
                var len = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soErr, &len)
                if r < 0 || soErr != 0 {
                    lastError = String(cString: strerror(soErr != 0 ? soErr : errno))
                    close(fd)
                    continue
                }
            } else if r != 0 {
                lastError = errno_text()
                close(fd)
                continue
            }
            // Back to blocking mode with per-operation timeouts.
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            // The handshake gets the connect timeout (a hung server accepts TCP in the kernel but
            // never answers the ClientHello); requests then get the I/O timeout.
            setTimeouts(fd, ms: connectTimeoutMs)
            let c = try handshake(
                fd: fd, endpoint: endpoint, context: context, serverName: serverName, verifyName: verifyName,
                trustDescription: trustDescription)
            if let pinnedSHA256 {
                var seen = [UInt8](repeating: 0, count: 32)
                let got = copenssl_peer_cert_sha256(c.ssl, &seen) == 1
                guard got, seen == pinnedSHA256 else {
                    throw .tls(
                        "\(endpoint): the server's certificate has fingerprint "
                            + (got ? Endpoint.fingerprintText(seen) : "(none)")
                            + ", not the pinned " + Endpoint.fingerprintText(pinnedSHA256)
                            + " (is this the node you started? its log prints its fingerprint)")
                }
            }
            setTimeouts(fd, ms: ioTimeoutMs)
            return c
        }
        throw .connect("\(endpoint): \(lastError)")
    }

    /// How long one read or write may block from now on.
    func setIOTimeout(ms: Int) { TLSConnection.setTimeouts(fd, ms: ms) }

    /// TCP keepalive probes after `idleSeconds` of silence, every `intervalSeconds`, `count` of
    /// them: a peer gone without closing (a partition, a host powered off) ends a quiet stream in
    /// about idle + interval x count seconds, not at its idle timeout.
    func enableKeepAlive(idleSeconds: Int32, intervalSeconds: Int32, count: Int32) {
        var on: Int32 = 1, idle = idleSeconds, interval = intervalSeconds, probes = count
        let size = socklen_t(MemoryLayout<Int32>.size)
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, size)
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPIDLE, &idle, size)
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPINTVL, &interval, size)
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPCNT, &probes, size)
    }

    private static func setTimeouts(_ fd: Int32, ms: Int) {
        let ms = max(1, ms)
        var tv = timeval(tv_sec: ms / 1000, tv_usec: (ms % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    private static func handshake(
        fd: Int32, endpoint: Endpoint, context: OpaquePointer, serverName: String,
        verifyName: Bool, trustDescription: String
    ) throws(ClientError) -> TLSConnection {
        guard let ssl = SSL_new(context) else { close(fd); throw .tls("SSL_new failed") }
        guard let bio = copenssl_bio_new_nosignal(fd) else { SSL_free(ssl); close(fd); throw .tls("BIO allocation failed") }
        SSL_set_bio(ssl, bio, bio)
        _ = copenssl_set_sni(ssl, serverName)
        if verifyName {
            X509_VERIFY_PARAM_set1_host(SSL_get0_param(ssl), serverName, 0)
        }
        ERR_clear_error()
        if SSL_connect(ssl) != 1 {
            let verify = SSL_get_verify_result(ssl)
            let reason = lastReason()
            var detail: String
            if verify != X509_V_OK {
                detail = serverCertificateProblem(ssl, verify: verify, serverName: serverName, trust: trustDescription)
            } else if let refused = clientCertificateRefusal(reason) {
                detail = refused
            } else if !reason.isEmpty {
                detail = "TLS handshake failed: \(reason)"
            } else {
                detail = errno == EAGAIN || errno == EWOULDBLOCK ? "handshake timed out" : "handshake failed (\(errno_text()))"
            }
            SSL_free(ssl)
            close(fd)
            throw .tls("\(endpoint): \(detail)")
        }
        return TLSConnection(fd: fd, ssl: ssl, endpoint: endpoint)
    }

    /// The reason of the oldest queued OpenSSL error ("sslv3 alert certificate expired"); clears the queue.
    static func lastReason() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        copenssl_last_reason(&buf, buf.count)
        return String(cBuffer: buf)
    }

    /// The server's TLS alert about our client certificate, said so a person can act on it.
    static func clientCertificateRefusal(_ reason: String) -> String? {
        guard reason.contains("alert") else { return nil }
        let alert = reason.split(separator: " ").drop(while: { $0 != "alert" }).dropFirst().joined(separator: " ")
        switch alert {
        case "certificate expired":
            return
                "the service refused this client's certificate: it has expired (TLS alert \"certificate expired\"); issue a new one (vssm issue-client) and point clientCert/clientKey at it"
        case "unknown ca", "bad certificate", "certificate unknown", "unsupported certificate", "decrypt error":
            return
                "the service refused this client's certificate (TLS alert \"\(alert)\"): it is not issued by a CA in the service's clientTrustStore (another deployment's?), or its key does not match"
        case "certificate required":
            return
                "the service requires a client certificate and got none (TLS alert \"certificate required\"): set clientCert and clientKey"
        case "certificate revoked":
            return "the service refused this client's certificate: it is revoked (TLS alert \"certificate revoked\")"
        case "handshake failure", "protocol version", "insufficient security":
            return
                "the service and this client share no TLS version or cipher suite (TLS alert \"\(alert)\"): both need TLS 1.2 or 1.3 with ECDHE"
        default:
            return "the service ended the connection with TLS alert \"\(alert)\""
        }
    }

    /// Why the server's certificate was not accepted: the bootstrap phase, a name mismatch (with
    /// the names it carries), or a CA that does not verify it (naming the CA file).
    private static func serverCertificateProblem(_ ssl: OpaquePointer, verify: Int, serverName: String, trust: String) -> String {
        var buf = [CChar](repeating: 0, count: 1024)
        let summary =
            copenssl_peer_summary(ssl, &buf, buf.count) == 1
            ? String(cBuffer: buf) : "no certificate"
        let reason = String(cString: X509_verify_cert_error_string(verify))
        if summary.contains("OU=\(BootstrapPhase.organizationalUnit)") {
            return
                "the node is waiting for `vssm bootstrap` (it presents its throwaway bootstrap-phase certificate, not the RPC certificate); bootstrap it, then retry"
        }
        if verify == Int(X509_V_ERR_HOSTNAME_MISMATCH) {
            return
                "the server certificate does not carry the name \"\(serverName)\" (serverName) but \(summary); set serverName to one of its names"
        }
        return
            "the server certificate (\(summary)) does not verify against \(trust): \(reason); is that the deployment's CA (ca.pem, the RPC certificate)?"
    }

    func write(_ bytes: [UInt8]) throws(ClientError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBufferPointer { buf in
                SSL_write(ssl, buf.baseAddress.unsafelyUnwrapped + offset, Int32(min(bytes.count - offset, Int(Int32.max))))
            }
            if n <= 0 {
                ERR_clear_error()
                if errno == EAGAIN || errno == EWOULDBLOCK { throw .timeout("write to \(endpoint)") }
                throw .io("write to \(endpoint) failed")
            }
            offset += Int(n)
        }
    }

    /// Reads more bytes into `buffer`; false on clean EOF.
    func fill() throws(ClientError) -> Bool {
        if Monotonic.ms() > deadlineMs { throw .timeout("reading from \(endpoint): response not complete in time") }
        let n = SSL_read(ssl, chunk.baseAddress, Int32(clamping: chunk.count))
        if n > 0, let count = Int(exactly: n), count <= chunk.count {
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[0..<count]))
            return true
        }
        let err = SSL_get_error(ssl, n)
        let reason = TLSConnection.lastReason()
        if err == SSL_ERROR_ZERO_RETURN { return false }
        if err == SSL_ERROR_SYSCALL && errno == 0 { return false }
        if errno == EAGAIN || errno == EWOULDBLOCK { throw .timeout("reading from \(endpoint)") }
        // TLS 1.3: the server judges the client certificate after the handshake; its refusal is
        // an alert on the first read.
        if let refused = TLSConnection.clientCertificateRefusal(reason) { throw .tls("\(endpoint): \(refused)") }
        throw .io("read from \(endpoint) failed: \(reason.isEmpty ? "connection closed (\(TLSConnection.errno_text()))" : reason)")
    }

    /// True when the server has closed its side (or sent stray bytes): not reusable.
    func isStale() -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) != 0
    }
}

/// The dates of a certificate (a client's own, checked when its configuration is loaded).
public struct CertificateValidity: Sendable {
    public let subject: String
    /// Seconds until notAfter; negative once expired.
    public let secondsLeft: Int64
    public let notYetValid: Bool

    /// Of the first certificate in `pem`; nil when there is none.
    public init?(pem: [UInt8]) {
        var left: Int64 = 0
        var early: Int32 = 0
        var subject = [CChar](repeating: 0, count: 512)
        let ok = pem.withUnsafeBufferPointer { buf in
            copenssl_pem_cert_validity(buf.baseAddress, Int32(clamping: buf.count), &left, &early, &subject, subject.count)
        }
        guard ok == 1 else { return nil }
        self.subject = String(cBuffer: subject)
        secondsLeft = left
        notYetValid = early != 0
    }

    /// A warning for a person, or nil when the certificate is good for `days` more days.
    public func warning(file: String, days: Int64 = 30) -> String? {
        if notYetValid { return "the client certificate \(file) (\(subject)) is not valid yet: check this machine's clock" }
        if secondsLeft < 0 {
            return
                "the client certificate \(file) (\(subject)) expired \(-secondsLeft / 86400) day(s) ago: the service will refuse it; issue a new one (vssm issue-client) and point clientCert/clientKey at it"
        }
        if secondsLeft < days * 86400 {
            return
                "the client certificate \(file) (\(subject)) expires in \(secondsLeft / 86400) day(s): issue a new one before then (vssm issue-client)"
        }
        return nil
    }
}

/// The bootstrap phase's throwaway certificate carries this organizational unit
/// (`DevPKI.bootstrapIdentity`), by which a client tells "waiting for bootstrap" from "wrong CA".
public enum BootstrapPhase {
    public static let organizationalUnit = "vssm bootstrap phase"
}
