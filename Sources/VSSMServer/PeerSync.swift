import Synchronization
import VSSMSync
import VSSMClient
import VSSMCrypto
import VSSMWire

/// Node-to-node sync over the internal listener, speaking the original protocol: pull
/// (`synchronizestate`) at start and every 5 minutes plus jitter, push
/// (`synchronizestatepush`) after every local change. The RPC certificate is both the client
/// identity and the only trust anchor, as in the original. Peers are listed in the config (the
/// original's peer discovery never returned any).
final class PeerSync: Sendable {
    let peers: [Endpoint]
    private let clients = Locked<[Endpoint: HTTPSClient]>([:])
    private let started = Atomic<Bool>(false)
    /// Peers that answered 404 on the extension sync routes (Go nodes): the original format for them.
    private let originalOnly = Locked<Set<Endpoint>>([])

    init(peers: [String]) {
        self.peers = peers.compactMap { Endpoint($0) }
    }

    private func client(for peer: Endpoint, node: KeyServiceNode) -> HTTPSClient? {
        if let c = clients.withLock({ $0[peer] }) { return c }
        guard let key = node.rpcKey else { return nil }
        var cfg = TLSClientConfiguration(endpoints: [peer])
        let certPEM = Array(X509Info.pem(certificates: [node.config.rpcCertificate]).utf8)
        cfg.trustPEM = certPEM
        cfg.clientCertificatePEM = certPEM
        var der = key.pkcs8DER
        defer { zeroize(&der) }
        cfg.clientKeyPEM = Array(X509Info.pem(der: der, label: "PRIVATE KEY").utf8)
        cfg.requestTimeoutMs = 15000
        guard let c = try? HTTPSClient(cfg) else { return nil }
        clients.withLock { $0[peer] = c }
        return c
    }

    func start(node: KeyServiceNode) {
        guard !peers.isEmpty, !started.exchange(true, ordering: .relaxed) else { return }
        BackgroundThread.start { [self] in
            while !node.isStopped {
                pullAll(node: node)
                // 5 minutes plus jitter, in steps that notice a stopped node.
                for _ in 0..<(300 + Int.random(in: 0...300)) where !node.isStopped { BackgroundThread.sleep(ms: 1000) }
            }
        }
    }

    func pullAll(node: KeyServiceNode) {
        for peer in peers {
            guard let c = client(for: peer, node: node) else { continue }
            do {
                if !originalOnly.withLock({ $0.contains(peer) }) && !node.config.compatOnly {
                    let r = try timed(c, peer, node, Route.extSynchronizeState, Array("{}".utf8))
                    if r.status == 200 {
                        try node.absorb(try StateCodec.decode(r.body, allowExtensions: true), from: peer.description)
                        continue
                    }
                    guard r.status == 404 else {
                        node.metrics.counter("vssm_peer_sync_failures_total").increment();
                        node.audit.error("Error during synchronization with \(peer): HTTP \(r.status) \(r.text)")
                        continue
                    }
                    originalOnly.withLock { _ = $0.insert(peer) }
                }
                let r = try timed(c, peer, node, Route.synchronizeState, Array("{}".utf8))
                guard r.status == 200 else {
                    node.metrics.counter("vssm_peer_sync_failures_total").increment();
                    node.audit.error("Error during synchronization with \(peer): HTTP \(r.status) \(r.text)")
                    continue
                }
                let o = try WireObject.decode(r.body, as: Schemas.synchronizeStateResponse)
                try node.absorb(StateCodec.decodeKeys(o), from: peer.description)
            } catch {
                node.metrics.counter("vssm_peer_sync_failures_total").increment();
                node.audit.error("Error during synchronization with \(peer): \(error)")
            }
        }
    }

    /// One exchange with a peer; its `Date` goes to the node's clock check (Go nodes send one too).
    private func timed(
        _ c: HTTPSClient, _ peer: Endpoint, _ node: KeyServiceNode, _ route: String, _ body: [UInt8]
    ) throws(ClientError) -> HTTPResponse {
        let sent = KeyServiceNode.nowMillis()
        let r = try c.post(route, body: body, idempotent: true)
        if let date = r.serverDate {
            node.clockObserved(source: peer.description, dateSeconds: date, sentMs: sent, receivedMs: KeyServiceNode.nowMillis())
        }
        return r
    }

    func pushSoon(node: KeyServiceNode) {
        guard !peers.isEmpty else { return }
        BackgroundThread.start { [self] in
            let snapshot = node.snapshot
            var message = WireWriter()
            let state = StateCodec.encode(snapshot, extensions: false)
            guard let value = try? JSONParser.parse(state) else { return }
            message.object("synchronizeStateMessage", value)
            let full = node.config.compatOnly ? [] : StateCodec.encode(snapshot, extensions: true)
            for peer in peers {
                guard let c = client(for: peer, node: node) else { continue }
                do {
                    if !full.isEmpty && !originalOnly.withLock({ $0.contains(peer) }) {
                        let r = try timed(c, peer, node, Route.extSynchronizeStatePush, full)
                        if r.status == 200 { continue }
                        if r.status != 404 {
                            node.metrics.counter("vssm_peer_sync_failures_total").increment();
                            node.audit.error("Push to \(peer) failed: HTTP \(r.status) \(r.text)")
                            continue
                        }
                        originalOnly.withLock { _ = $0.insert(peer) }
                    }
                    let r = try timed(c, peer, node, Route.synchronizeStatePush, message.bytes)
                    if r.status != 200 {
                        node.metrics.counter("vssm_peer_sync_failures_total").increment();
                        node.audit.error("Push to \(peer) failed: HTTP \(r.status) \(r.text)")
                    }
                } catch {
                    node.metrics.counter("vssm_peer_sync_failures_total").increment(); node.audit.error("Push to \(peer) failed: \(error)")
                }
            }
        }
    }
}
