import Glibc
import VSSMClient
import VSSMCrypto
import VSSMSync
import VSSMWire

/// Where a cluster keeps its state: etcd (v3, its JSON gateway over mutual TLS).
public struct EtcdSettings: Sendable, Equatable {
    /// Client URLs of the members, `https://host:port` (tried in order, a failing one skipped).
    public var endpoints: [String]
    /// PEM files: the CA that signed the members' certificates, and this node's client certificate and key.
    public var ca: String
    public var cert: String
    public var key: String
    /// Name the members' certificates carry.
    public var serverName = "etcd"
    /// Key prefix of this key service's records (several services can share one etcd).
    public var prefix = "/vssm/"

    public init(endpoints: [String], ca: String, cert: String, key: String) {
        self.endpoints = endpoints
        self.ca = ca
        self.cert = cert
        self.key = key
    }
}

/// The node's state as records in etcd, each sealed like the file store (AES-256-GCM under a key
/// derived from the RPC key; the record's etcd key is the AAD, so a record cannot be moved to
/// another name): etcd and its operators learn nothing but names' lengths and counts. Records:
/// `k/<TYPE>/<name>` one key with its attributes, `o/<uid>` one object, `t/<TYPE>/<name>` one
/// tombstone, `p` the principal table. A change is one etcd transaction that creates only what is
/// absent (`create_revision = 0`) and replaces or deletes only what is unchanged since this node
/// read it (`mod_revision`), so two nodes creating the same name cannot both win. Every node
/// follows the others' changes by polling the store's revision (every `pollMs`).
final class EtcdStore: Sendable {
    let settings: EtcdSettings
    private let http: HTTPSClient
    private let sealKey: [UInt8]
    static let pollMs = 250
    /// etcd refuses transactions of more than 128 operations by default.
    static let maxOpsPerTxn = 100
    static let concurrentChange = ServiceError(409, "Another node changed the key store at the same time; nothing was changed, try again.")

    /// What this node last read or wrote: each record's plaintext and mod revision, and the store's revision.
    private struct View {
        var records: [String: (plain: [UInt8], modRevision: Int64)] = [:]
        var revision: Int64 = 0
    }
    private let view = Locked(View())

    init(settings: EtcdSettings, rpcKey: PrivateKey) throws(ServiceError) {
        self.settings = settings
        var endpoints: [Endpoint] = []
        for e in settings.endpoints {
            guard let ep = Endpoint(e) else { throw .badRequest("etcd: bad endpoint \(e)") }
            endpoints.append(ep)
        }
        guard !endpoints.isEmpty else { throw .badRequest("etcd: no endpoints") }
        var cfg = TLSClientConfiguration(endpoints: endpoints)
        cfg.serverName = settings.serverName
        cfg.trustPEM = try FileUtil.readFile(settings.ca)
        cfg.clientCertificatePEM = try FileUtil.readFile(settings.cert)
        cfg.clientKeyPEM = try FileUtil.readFile(settings.key)
        cfg.connectTimeoutMs = 1000
        cfg.requestTimeoutMs = 3000
        cfg.endpointRetryMs = 2000
        do { http = try HTTPSClient(cfg) } catch { throw .badRequest("etcd client: \(error)") }
        do { sealKey = try rpcKey.derivedKey(salt: "vssm state seal", info: "etcd record v1") } catch { throw .internalError(error.message) }
    }

    // MARK: - Records

    var prefixBytes: [UInt8] { Array(settings.prefix.utf8) }

    /// The records of a state: record name (below the prefix) → plaintext (a one-entry state document).
    static func records(_ s: KeyState) -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        func one(_ fill: (inout KeyState) -> Void) -> [UInt8] {
            var single = KeyState()
            fill(&single)
            return StateCodec.encode(single, extensions: true)
        }
        // A key's record is named as its tombstone is (`Tombstone.id`), below `k/`.
        for e in s.symmetric.values { out["k/" + Tombstone.id(.symmetric, e.name)] = one { $0.symmetric[e.name] = e } }
        for e in s.asymmetric.values { out["k/" + Tombstone.id(.asymmetric, e.name)] = one { $0.asymmetric[e.name] = e } }
        for e in s.mac.values { out["k/" + Tombstone.id(.mac, e.name)] = one { $0.mac[e.name] = e } }
        for o in s.objects.values { out["o/" + o.uid] = one { $0.objects[o.uid] = o } }
        for (id, at) in s.tombstones { out["t/" + id] = one { $0.tombstones[id] = at } }
        if !s.principals.isEmpty || s.principalsVersion != 0 {
            out["p"] = one { $0.principals = s.principals; $0.nodes = s.nodes; $0.principalsVersion = s.principalsVersion }
        }
        return out
    }

    func seal(_ plain: [UInt8], name: String) throws(ServiceError) -> [UInt8] {
        let nonce = SecureRandom.bytes(12)
        do {
            let (ct, tag) = try BlockCipher(kind: .aes, key: sealKey).gcmSeal(nonce: nonce, aad: prefixBytes + Array(name.utf8), plain)
            return nonce + ct + tag
        } catch { throw .internalError("cannot seal a record: \(error.message)") }
    }

    func unseal(_ sealed: [UInt8], name: String) -> [UInt8]? {
        guard sealed.count >= 28 else { return nil }
        return try? BlockCipher(kind: .aes, key: sealKey).gcmOpen(nonce: Array(sealed.prefix(12)), aad: prefixBytes + Array(name.utf8),
                                                                  Array(sealed.dropFirst(12).dropLast(16)), tag: Array(sealed.suffix(16)))
    }

    // MARK: - etcd calls

    private func call(_ path: String, _ body: JSONValue, idempotent: Bool) throws(ServiceError) -> JSONValue {
        let r: HTTPResponse
        do { r = try http.post(path, body: JSONWriter.serialize(body), idempotent: idempotent) } catch {
            // A change etcd received but did not answer may still be applied when it recovers.
            throw .unavailable(idempotent ? "The key store (etcd) cannot be reached: \(error)"
                : "The key store (etcd) did not confirm the change (\(error)); it was not applied here, but etcd may still apply it when it recovers: list the keys before trying again.")
        }
        guard r.status == 200 else {
            throw .unavailable("The key store (etcd) answered HTTP \(r.status): \(String(r.text.prefix(200)))")
        }
        do { return try JSONParser.parse(r.body) } catch { throw .unavailable("The key store (etcd) answered something that is not JSON") }
    }

    static func int64(_ v: JSONValue?) -> Int64 {
        if case .string(let s)? = v { return Int64(s) ?? 0 }
        if case .number(let s)? = v { return Int64(s) ?? 0 }
        return 0
    }

    private var rangeEnd: String {
        // The prefix's last byte plus one: every key that starts with the prefix.
        var end = prefixBytes
        if let last = end.popLast() { end.append(last &+ 1) }
        return Base64.encode(end)
    }

    /// The store's current revision (one small request).
    func currentRevision() throws(ServiceError) -> Int64 {
        let r = try call("/v3/kv/range", .object([("key", .string(Base64.encode(prefixBytes))), ("range_end", .string(rangeEnd)),
                                                  ("count_only", .bool(true))]), idempotent: true)
        return EtcdStore.int64(r["header"]?["revision"])
    }

    /// Reads every record (a refresh from an empty view); the state they make and the revision
    /// read at. Records that do not unseal (another service's, or damaged) are reported and skipped.
    func load(audit: AuditLog) throws(ServiceError) -> (state: KeyState, revision: Int64) {
        view.withLock { $0 = View() }
        let state = try refresh(KeyState(), audit: audit) ?? KeyState()
        return (state, viewRevision)
    }

    /// What one record holds, added to a state.
    static func add(_ d: KeyState, record name: String, to state: inout KeyState) {
        for (n, e) in d.symmetric { state.symmetric[n] = e }
        for (n, e) in d.asymmetric { state.asymmetric[n] = e }
        for (n, e) in d.mac { state.mac[n] = e }
        for (u, o) in d.objects { state.objects[u] = o }
        for (id, at) in d.tombstones { state.tombstones[id] = at }
        if name == "p" {
            state.principals = d.principals
            state.nodes = d.nodes
            state.principalsVersion = d.principalsVersion
        }
    }

    /// What one record held, taken out of a state (the record was deleted or is replaced).
    static func remove(record name: String, from state: inout KeyState) {
        if name == "p" {
            state.principals = [:]
            state.nodes = [:]
            state.principalsVersion = 0
            return
        }
        let parts = name.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2 else { return }
        switch parts[0] {
        case "k": state.removeEntry(parts[1])
        case "o": state.removeEntry(Tombstone.object(parts[1]))
        case "t": state.tombstones.removeValue(forKey: parts[1])
        default: break
        }
    }

    /// Brings `state` (this node's view) up to etcd's current revision reading only what changed
    /// since the view's revision: the record names with their revisions (no values), then the values
    /// of the records changed since, read at that same revision. nil: nothing changed.
    func refresh(_ state: KeyState, audit: AuditLog) throws(ServiceError) -> KeyState? {
        let last = viewRevision
        let names = try call("/v3/kv/range", .object([("key", .string(Base64.encode(prefixBytes))), ("range_end", .string(rangeEnd)),
                                                      ("keys_only", .bool(true))]), idempotent: true)
        let revision = EtcdStore.int64(names["header"]?["revision"])
        guard revision != last else { return nil }
        func recordName(_ kv: JSONValue) -> String? {
            guard case .string(let k64)? = kv["key"], let keyBytes = try? Base64.decode(k64), keyBytes.starts(with: prefixBytes) else { return nil }
            return String(decoding: keyBytes.dropFirst(prefixBytes.count), as: UTF8.self)
        }
        var present: [String: Int64] = [:]
        if case .array(let kvs)? = names["kvs"] {
            for kv in kvs { if let name = recordName(kv) { present[name] = EtcdStore.int64(kv["mod_revision"]) } }
        }
        var next = state
        var v = view.withLock { $0 }
        for name in v.records.keys where present[name] == nil {
            EtcdStore.remove(record: name, from: &next)
            v.records.removeValue(forKey: name)
        }
        if present.contains(where: { $0.value > last }) {
            let changed = try call("/v3/kv/range", .object([
                ("key", .string(Base64.encode(prefixBytes))), ("range_end", .string(rangeEnd)),
                ("min_mod_revision", .string(String(last + 1))), ("revision", .string(String(revision))),
            ]), idempotent: true)
            if case .array(let kvs)? = changed["kvs"] {
                for kv in kvs {
                    guard let name = recordName(kv) else { continue }
                    let value: [UInt8] = if case .string(let s)? = kv["value"] { (try? Base64.decode(s)) ?? [] } else { [] }
                    EtcdStore.remove(record: name, from: &next)
                    v.records.removeValue(forKey: name)
                    guard let plain = unseal(value, name: name), let decoded = try? StateCodec.decode(plain, allowExtensions: true) else {
                        audit.error("etcd record \(AuditNames.clean(name)) does not unseal under this RPC key; skipped.")
                        continue
                    }
                    EtcdStore.add(decoded.state, record: name, to: &next)
                    v.records[name] = (plain, EtcdStore.int64(kv["mod_revision"]))
                }
            }
        }
        v.revision = revision
        view.withLock { $0 = v }
        return next
    }

    /// The revision this node's view was read or written at.
    var viewRevision: Int64 { view.withLock { $0.revision } }

    /// Writes the difference between this node's view and `next` as transactions: puts of new
    /// records only if absent, replacements and deletions only if unchanged since read. On a
    /// conflict nothing of that transaction is written (409: reload and retry); etcd unreachable: 503.
    func commit(_ next: KeyState) throws(ServiceError) {
        let wanted = EtcdStore.records(next)
        let current = view.withLock { $0.records }
        var ops: [(name: String, plain: [UInt8]?, modRevision: Int64)] = []
        for (name, plain) in wanted where current[name]?.plain != plain {
            ops.append((name, plain, current[name]?.modRevision ?? 0))
        }
        for (name, old) in current where wanted[name] == nil { ops.append((name, nil, old.modRevision)) }
        guard !ops.isEmpty else { return }
        var start = 0
        while start < ops.count {
            let chunk = ops[start..<min(start + EtcdStore.maxOpsPerTxn, ops.count)]
            var compare: [JSONValue] = []
            var success: [JSONValue] = []
            for op in chunk {
                let key = Base64.encode(prefixBytes + Array(op.name.utf8))
                if op.modRevision == 0 {
                    compare.append(.object([("key", .string(key)), ("result", .string("EQUAL")), ("target", .string("CREATE")),
                                            ("create_revision", .string("0"))]))
                } else {
                    compare.append(.object([("key", .string(key)), ("result", .string("EQUAL")), ("target", .string("MOD")),
                                            ("mod_revision", .string(String(op.modRevision)))]))
                }
                if let plain = op.plain {
                    let value = Base64.encode(try seal(plain, name: op.name))
                    success.append(.object([("request_put", .object([("key", .string(key)), ("value", .string(value))]))]))
                } else {
                    success.append(.object([("request_delete_range", .object([("key", .string(key))]))]))
                }
            }
            let r = try call("/v3/kv/txn", .object([("compare", .array(compare)), ("success", .array(success))]), idempotent: false)
            guard case .bool(true)? = r["succeeded"] else { throw EtcdStore.concurrentChange }
            let revision = EtcdStore.int64(r["header"]?["revision"])
            view.withLock { v in
                for op in chunk {
                    if let plain = op.plain { v.records[op.name] = (plain, revision) } else { v.records.removeValue(forKey: op.name) }
                }
                // Only this node's writes happened between: the view is current at `revision`
                // when it was current before (otherwise the next poll reloads).
                if v.revision == revision - 1 { v.revision = revision }
            }
            start += EtcdStore.maxOpsPerTxn
        }
    }
}
