import VSSMSync
import Glibc
import VSSMClient
import VSSMCrypto
import VSSMWire

/// A node allowed to join the cluster: the SHA-256 of its join secret (the secret itself is
/// handed to the operator once, by `vssm admin node add`). Kept with the principals (one table,
/// one version: a revocation travels to every node like an addition).
public struct JoinCredential: Sendable, Equatable {
    public var name: String
    /// Lowercase hex SHA-256 of the secret.
    public var secretHash: String
    public var createdAt: Int64
}

/// Joining from peers: a new node started with a join credential asks a running node's
/// bootstrap-slave listener (TLS with the RPC certificate, which the new node's config pins) for
/// the RPC key — the role the cloud attestation plays in the original design. A credential that
/// was removed (`vssm admin node remove`) is refused. Every attempt is in the serving node's audit trail.
extension KeyServiceNode {
    static let nodeRoutes: [String: Handler] = [
        Route.extNodeAdd: { n, b, c throws(ServiceError) in
            let r = try n.decode(b, ExtSchemas.nodeRequest)
            let name = r.string("name")
            guard !name.isEmpty, name.utf8.count <= 128,
                !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0 == "\"" || $0 == "\\" })
            else {
                throw .badRequest("A node name is 1 to 128 characters, without control characters, quotes or backslashes.")
            }
            let secret = SecureRandom.bytes(32)
            let credential = JoinCredential(
                name: name, secretHash: Hex.encode(DigestAlgorithm.sha256.hash(secret)), createdAt: KeyServiceNode.nowMillis())
            try n.mutate { (s: inout KeyState) throws(ServiceError) in
                guard s.nodes[name] == nil else { throw .conflict("A node named \(name) may already join.") }
                s.nodes[name] = credential
                s.principalsChanged()
            }
            n.audit.info("Node \(name) may join the cluster (credential issued).")
            var w = WireWriter()
            w.string("name", name)
            w.bytes("secret", secret)
            return n.ok(w)
        },
        Route.extNodeRemove: { n, b, c throws(ServiceError) in
            let r = try n.decode(b, ExtSchemas.nodeRequest)
            let name = r.string("name")
            try n.mutate { (s: inout KeyState) throws(ServiceError) in
                guard s.nodes.removeValue(forKey: name) != nil else { throw .notFound("No node named \(name).") }
                s.principalsChanged()
            }
            n.audit.info("Node \(AuditNames.clean(name))'s join credential revoked.")
            return n.ok(WireWriter())
        },
        Route.extNodeList: { n, b, c throws(ServiceError) in
            _ = try n.decode(b, ExtSchemas.nodeRequest)  // the admin password: checked by the router (RouteTable: root)
            var w = WireWriter()
            w.strings("names", n.snapshot.nodes.keys.sorted())
            return n.ok(w)
        },
    ]

    /// The bootstrap-slave listener's join call: the RPC key for a node whose credential is current.
    /// A credential works once (it is consumed, in the store, before the key leaves); attempts are
    /// throttled per client address like passwords, and refused ones are aggregated in the audit
    /// trail (one record per 10 s with their count) instead of one record each; and the credential
    /// is checked against the store's current state (with etcd unreachable: 503, a revocation made
    /// through another node might be missing here).
    func join(_ body: [UInt8], _ ctx: inout RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.joinRequest)
        let name = r.string("name")
        ctx.principalName = "node:" + AuditNames.clean(name)
        let address = "join " + RequestContext.host(ofPeer: ctx.peer)
        if let ms = joinGuard.throttledFor(address) {
            throw .throttled(ms)
        }
        let given = Hex.encode(DigestAlgorithm.sha256.hash(r.bytes("secret") ?? []))
        if let store = etcd.withLock({ $0 }) {
            do { _ = try self.store.refreshView(store) } catch {
                throw .unavailable("Cannot confirm that this join credential is current: \(error.message)")
            }
        }
        guard let credential = state.withLock({ $0.nodes[name] }),
            constantTimeEqual(Array(given.utf8), Array(credential.secretHash.utf8))
        else {
            joinGuard.failed(address)
            throw .forbidden("This join credential is unknown, was used already, or was revoked.")
        }
        guard let key = rpcKey else { throw .unavailable("The key service is bootstrapping.") }
        // Consumed before the key leaves: a second use (here or through another node) is refused.
        try mutate { (s: inout KeyState) throws(ServiceError) in
            guard s.nodes[name]?.secretHash == credential.secretHash else {
                throw .forbidden("This join credential is unknown, was used already, or was revoked.")
            }
            s.nodes.removeValue(forKey: name)
            s.principalsChanged()
        }
        joinGuard.clear(address)
        audit.info("Node \(name) joined from \(ctx.peer): RPC key handed over; its join credential is used up.")
        var der = key.pkcs8DER
        defer { zeroize(&der) }
        var w = WireWriter()
        w.bytes("rpcPrivateKey", der)
        return ok(w)
    }

    /// The new node's side: asks each URL in turn (for up to `seconds`) and bootstraps with the answer.
    public func joinCluster(urls: [String], name: String, secret: [UInt8], seconds: Int = 60) throws(ServiceError) {
        var last = "no URL given"
        let deadline = Monotonic.ms() + Int64(seconds) * 1000
        repeat {
            for url in urls {
                guard let ep = Endpoint(url) else { throw .badRequest("bad join URL \(url)") }
                var cfg = TLSClientConfiguration(endpoints: [ep])
                cfg.trustPEM = Array(X509Info.pem(certificates: [config.rpcCertificate]).utf8)
                cfg.requestTimeoutMs = 10_000
                var w = WireWriter()
                w.string("name", name)
                w.bytes("secret", secret)
                do {
                    let client = try VSSMAPIClient(cfg)
                    let answer = try client.call(Route.extJoin, w, response: Schemas.bootstrapSlaveResponse, idempotent: true)
                    try bootstrap(rpcPrivateKeyPKCS8: answer.bytes("rpcPrivateKey") ?? [])
                    audit.info("Joined the cluster through \(url) as node \(name).")
                    return
                } catch let e as ClientError {
                    last = "\(url): \(e)"
                    if case .http(403, _) = e { throw .forbidden("Joining through \(url) was refused: \(e)") }
                } catch let e as ServiceError {
                    throw e
                } catch {
                    last = "\(url): \(error)"
                }
            }
            usleep(500_000)
        } while Monotonic.ms() < deadline
        throw .unavailable("Could not join the cluster: \(last)")
    }
}

/// Refused join attempts, written to the audit trail as one record per 10 s with their count and
/// (up to 16 of) their addresses: an outsider cannot flush the trail's retention with them.
final class RefusalAggregate: Sendable {
    private let limiter = RateLimitedLog()
    private let peers = Locked<[String]>([])

    /// Counts one; returns the summary to write when one is due.
    func add(peer: String) -> String? {
        let host = RequestContext.host(ofPeer: peer)
        peers.withLock { if $0.count < 16, !$0.contains(host) { $0.append(host) } }
        var summary: String?
        limiter.due { suppressed in
            let from = peers.withLock { p in
                defer { p = [] }; return p
            }
            summary = "\(suppressed + 1) refused join attempt(s) from \(from.joined(separator: " "))"
        }
        return summary
    }
}
