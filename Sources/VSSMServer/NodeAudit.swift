import Glibc
import VSSMCrypto
import VSSMSync
import VSSMWire

/// The record of every answered request (split out of `KeyServiceNode`, issue 21): the log ring
/// and standard output, the hash-chained trail (`AuditTrail`, once the node runs with a state
/// directory) and syslog when configured; refused joins aggregated into one record per interval;
/// in a cluster, the trail's head anchored in etcd.
final class NodeAudit: Sendable {
    let audit: AuditLog
    let metrics: ServiceMetrics
    let syslog: Bool
    let stateDirectory: String?
    /// The hash-chained audit records; opened once running with a state directory.
    let trail = Locked<AuditTrail?>(nil)
    /// Refused join attempts, one aggregate record per interval (`RefusalAggregate`).
    let joinRefusals = RefusalAggregate()

    init(audit: AuditLog, metrics: ServiceMetrics, syslog: Bool, stateDirectory: String?) {
        self.audit = audit
        self.metrics = metrics
        self.syslog = syslog
        self.stateDirectory = stateDirectory
    }

    /// The audit record of an answered request: the log ring and standard output as before, and
    /// the hash-chained trail (and syslog when configured).
    func record(path: String, body: [UInt8], context: RequestContext, status: Int) {
        var (key, mechanism) = context.auditFields ?? AuditNames.fields(in: body)
        let trail = self.trail.withLock { $0 }
        var context = context
        if RouteTable.aggregatesRefusal(listener: context.listener, path: path, status: status) {
            guard let summary = joinRefusals.add(peer: context.peer) else { return }
            (key, mechanism) = ("", summary)
            context.principalName = "refused joins"
        }
        // With a trail the request's record is there (and in syslog when asked): standard output
        // then carries the service's own events only (one write less per request).
        let principal = context.principalName ?? context.clientSubject
        let namespace = context.restricted && context.principal != nil ? context.namespace : ""
        var fields: [(String, String)] = []
        if audit.format == .json {
            let ms = context.receivedNs == 0 ? 0 : Double(Monotonic.ns() &- context.receivedNs) / 1e6
            fields = [
                ("listener", context.listener.rawValue), ("peer", context.peer), ("principal", principal),
                ("route", path), ("status", String(status)), ("duration_ms", String((ms * 1000).rounded() / 1000)),
                ("key", key), ("request", context.requestID),
            ]
            if !namespace.isEmpty { fields.append(("namespace", namespace)) }
        }
        audit.log(
            .info,
            "AUDIT client=\"\(principal)\" peer=\(context.peer) endpoint=\(path) key=\"\(key)\"\(namespace.isEmpty ? "" : " namespace=" + namespace) status=\(status) request=\(context.requestID)",
            toOutput: trail == nil, fields: fields)
        guard let trail else { return }
        let r = AuditTrail.Record(
            time: AuditLog.timestamp(), principal: principal, fingerprint: context.clientFingerprint,
            route: path, key: key, mechanism: mechanism,
            status: status, requestID: context.requestID, namespace: namespace)
        do {
            let written = try trail.append(r)
            if syslog { AuditTrail.syslog(r, seq: written.seq, mac: written.mac) }
        } catch {
            metrics.counter("vssm_audit_write_errors_total").increment()
            audit.error("audit trail: \(error.message)")
        }
    }

    /// This node's audit head record in etcd: one per host and state directory.
    var anchorID: String {
        var host = [CChar](repeating: 0, count: 256)
        _ = gethostname(&host, host.count - 1)
        let name = String(cBuffer: host) + "\0" + (stateDirectory ?? "")
        return String(Hex.encode(DigestAlgorithm.sha256.hash(Array(name.utf8))).prefix(32))
    }

    /// The audit head etcd holds for this node (nil: no etcd, no trail, nothing written yet, or
    /// etcd unreachable).
    func headInStore(_ store: EtcdStore?) -> (seq: UInt64, mac: String?)? {
        guard trail.withLock({ $0 }) != nil, let store else { return nil }
        // Evidence of a cut found at start outlives etcd's record, which this node's own (lower)
        // head replaces at its first write.
        if let cut = anchorAheadAtStart.withLock({ $0 }) { return cut }
        return try? store.auditHead(id: anchorID)
    }

    /// etcd's anchor for this node when it was ahead of the trail at start (records cut off while
    /// the node was stopped): `--verify` reports that seq (and, once the trail has a record of that
    /// seq again, that its MAC differs) for as long as this process runs.
    private let anchorAheadAtStart = Locked<(seq: UInt64, mac: String?)?>(nil)

    /// In a cluster, the audit trail's head goes to etcd too, at most every 2 s while records are
    /// written: cutting or replacing the trail together with its anchor file (one host's files) is
    /// then found against etcd at the next start and by `--verify`. Checked once at start.
    func followHead(_ store: EtcdStore, isStopped: @escaping @Sendable () -> Bool) {
        guard let trail = trail.withLock({ $0 }) else { return }
        let id = anchorID
        if let anchored = try? store.auditHead(id: id), anchored.seq > trail.head.seq {
            anchorAheadAtStart.withLock { $0 = anchored }
            audit.error(
                "Audit trail: records \(trail.head.seq + 1) to \(anchored.seq) are missing at the end: etcd's anchor for this node says seq \(anchored.seq) was written."
            )
        }
        BackgroundThread.start {
            var written: UInt64 = 0
            while !isStopped() {
                let head = trail.head
                if head.seq != written {
                    do {
                        try store.putAuditHead(id: id, seq: head.seq, mac: head.mac)
                        written = head.seq
                    } catch {}  // etcd away: the follower reports it; tried again next time
                }
                BackgroundThread.sleep(ms: 2000)
            }
        }
    }
}
