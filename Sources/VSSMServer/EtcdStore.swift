import Glibc
import Synchronization
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
/// follows the others' changes by etcd's watch (`watch`), or while that is down by polling the
/// store's revision (every `pollMs`): `NodeStore.follow`.
final class EtcdStore: Sendable {
    let settings: EtcdSettings
    private let http: HTTPSClient
    private let sealKey: [UInt8]
    static let pollMs = 250
    /// etcd refuses transactions of more than 128 operations by default.
    static let maxOpsPerTxn = 100
    static let concurrentChange = ServiceError(409, "Another node changed the key store at the same time; nothing was changed, try again.")

    /// What this node last read or wrote: each record's plaintext, mod revision and sequence, and
    /// the store's revision. A record written by another service version (sealed without a
    /// sequence) has sequence 0.
    private struct View {
        var records: [String: (plain: [UInt8], modRevision: Int64, seq: Int64)] = [:]
        var revision: Int64 = 0
    }
    private let view = Locked(View())

    /// Freshness (the store is untrusted for it, DESIGN.md "Trust model"): every record carries a
    /// sequence under its seal, one more than the record's last; a node remembers the highest it
    /// has seen of every record name, also after the record was deleted (`floors`), and never
    /// accepts a lower one, or a deleted record again. The principal table's last plaintext is kept
    /// too: if its record vanishes, the node keeps enforcing it (fail closed) and writes it back.
    /// With a state directory both survive a restart (`freshness.sealed`).
    private struct Freshness {
        var floors: [String: Int64] = [:]
        /// Names whose record this node saw deleted at its floor: that record may not come back.
        var deleted: Set<String> = []
        var principalTable: [UInt8]?
        var dirty = false
    }
    private let freshness = Locked(Freshness())
    private let freshnessFile: String?
    private let freshnessKey: [UInt8]
    /// A record older than this node has seen, or a vanished principal table, was met: the node
    /// writes its own state back (the follower calls `node.persist()`).
    let needsHeal = Atomic<Bool>(false)
    /// Called with a sentence for each record refused as stale (the node logs and counts it).
    private let onStale: (@Sendable (String) -> Void)?
    /// Called with each answer's `Date` (seconds) and this node's clock when asking and when answered (ms).
    private let onClock: (@Sendable (_ dateSeconds: Int64, _ sentMs: Int64, _ receivedMs: Int64) -> Void)?

    init(
        settings: EtcdSettings, rpcKey: PrivateKey, stateDirectory: String? = nil,
        onClock: (@Sendable (Int64, Int64, Int64) -> Void)? = nil,
        onStale: (@Sendable (String) -> Void)? = nil
    ) throws(ServiceError) {
        self.onStale = onStale
        self.onClock = onClock
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
        do {
            sealKey = try rpcKey.derivedKey(salt: "vssm state seal", info: "etcd record v1")
            freshnessKey = try rpcKey.derivedKey(salt: "vssm state seal", info: "etcd freshness v1")
        } catch { throw .internalError(error.message) }
        freshnessFile = stateDirectory.map { $0 + "/etcd-freshness.sealed" }
        try loadFreshness()
    }

    // MARK: - Freshness

    /// The floors and principal table this node saw before it stopped (nothing on first start:
    /// a node with no history accepts what it reads first).
    private func loadFreshness() throws(ServiceError) {
        guard let path = freshnessFile, let sealed = try FileUtil.readIfPresent(path) else { return }
        guard sealed.count >= 28,
            let plain = try? BlockCipher(kind: .aes, key: freshnessKey).gcmOpen(
                nonce: Array(sealed.prefix(12)), aad: Array("etcd freshness".utf8), Array(sealed.dropFirst(12).dropLast(16)),
                tag: Array(sealed.suffix(16))), let doc = try? JSONParser.parse(plain)
        else {
            throw .internalError(
                "\(path) does not unseal under this RPC key (damaged, or another deployment's): move it aside to start this node without its freshness history"
            )
        }
        var f = Freshness()
        if case .object(let members)? = doc["floors"] {
            for (name, v) in members { f.floors[name] = EtcdStore.int64(v) }
        }
        if case .string(let p64)? = doc["principalTable"], let p = try? Base64.decode(p64) { f.principalTable = p }
        if case .array(let names)? = doc["deleted"] { for case .string(let n) in names { f.deleted.insert(n) } }
        freshness.withLock { $0 = f }
    }

    /// Writes the floors (when they changed) before the change or refresh that moved them counts.
    private func saveFreshness() throws(ServiceError) {
        guard let path = freshnessFile else { return }
        // One writer at a time (the follower, a commit and the audit head's thread all save): a
        // snapshot taken earlier never lands after a later one.
        try savingFreshness.withLock { (_: inout Int) throws(ServiceError) in try saveFreshness(to: path) }
    }

    private func saveFreshness(to path: String) throws(ServiceError) {
        let f = freshness.withLock { f -> Freshness? in
            guard f.dirty else { return nil }
            f.dirty = false
            return f
        }
        guard let f else { return }
        var w = WireWriter()
        w.object("floors", .object(f.floors.sorted { $0.key < $1.key }.map { ($0.key, .string(String($0.value))) }))
        if let p = f.principalTable { w.string("principalTable", Base64.encode(p)) }
        w.strings("deleted", f.deleted.sorted())
        let nonce = SecureRandom.bytes(12)
        do {
            let (ct, tag) = try BlockCipher(kind: .aes, key: freshnessKey).gcmSeal(
                nonce: nonce, aad: Array("etcd freshness".utf8),
                JSONWriter.serialize(w.value))
            try FileUtil.writeAtomically(path: path, bytes: nonce + ct + tag, mode: 0o600)
        } catch let e as ServiceError { throw e } catch { throw .internalError("cannot seal \(path): \(error)") }
    }

    private let savingFreshness = Locked<Int>(0)

    /// A failure to write the floors is reported, not thrown: the change it follows is done.
    private func saveFreshnessReporting() {
        do { try saveFreshness() } catch { onStale?("cannot write this node's freshness record: \(error.message)") }
    }

    /// Whether a record read from etcd may be taken: its sequence is above what this node has seen
    /// of that name, or it is the very record the view holds. Refused ones are reported.
    private func admit(_ name: String, seq: Int64) -> Bool {
        let (floor, deleted) = freshness.withLock { ($0.floors[name], $0.deleted.contains(name)) }
        guard let floor else { return true }
        if seq > floor { return true }
        if seq == floor && !deleted { return true }
        let why = seq == floor ? "a record this node saw deleted came back" : "it is older than the last one this node saw"
        onStale?(
            "etcd record \(AuditNames.clean(name)) has sequence \(seq), this node has seen \(floor): refused (\(why)); keeping this node's version and writing it back"
        )
        needsHeal.store(true, ordering: .relaxed)
        return false
    }

    private func raise(_ name: String, to seq: Int64) {
        freshness.withLock { f in
            if seq > (f.floors[name] ?? -1) {
                f.floors[name] = seq
                f.dirty = true
            }
            if f.deleted.remove(name) != nil { f.dirty = true }
        }
    }

    /// The record was deleted (by this node, or seen deleted): its last version may not return.
    private func buried(_ name: String) {
        freshness.withLock { f in
            if f.floors[name] != nil, f.deleted.insert(name).inserted { f.dirty = true }
        }
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
            out["p"] = one {
                $0.principals = s.principals; $0.nodes = s.nodes; $0.principalsVersion = s.principalsVersion
            }
        }
        return out
    }

    /// Version 2 records: the sequence (8 bytes, big-endian) before the plaintext, both under the
    /// seal, with the record's name and `\0v2` as the AAD (a version 1 record, sealed without a
    /// sequence, does not open as version 2 and the reverse).
    func seal(_ plain: [UInt8], name: String, seq: Int64) throws(ServiceError) -> [UInt8] {
        let nonce = SecureRandom.bytes(12)
        var body: [UInt8] = []
        for shift in stride(from: 56, through: 0, by: -8) {
            body.append(UInt8(truncatingIfNeeded: UInt64(bitPattern: seq) >> UInt64(shift)))
        }
        body += plain
        do {
            let (ct, tag) = try BlockCipher(kind: .aes, key: sealKey).gcmSeal(
                nonce: nonce, aad: prefixBytes + Array(name.utf8) + [0] + Array("v2".utf8), body)
            return nonce + ct + tag
        } catch { throw .internalError("cannot seal a record: \(error.message)") }
    }

    /// The plaintext and sequence of a record (version 1 records: sequence 0); nil when it does not unseal.
    func unseal(_ sealed: [UInt8], name: String) -> (plain: [UInt8], seq: Int64)? {
        guard sealed.count >= 28 else { return nil }
        let aes = try? BlockCipher(kind: .aes, key: sealKey)
        let nonce = Array(sealed.prefix(12)), ct = Array(sealed.dropFirst(12).dropLast(16)), tag = Array(sealed.suffix(16))
        if let body = try? aes?.gcmOpen(nonce: nonce, aad: prefixBytes + Array(name.utf8) + [0] + Array("v2".utf8), ct, tag: tag),
            body.count >= 8
        {
            let seq = body.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            return (Array(body.dropFirst(8)), Int64(bitPattern: seq))
        }
        guard let plain = try? aes?.gcmOpen(nonce: nonce, aad: prefixBytes + Array(name.utf8), ct, tag: tag) else { return nil }
        return (plain, 0)
    }

    // MARK: - etcd calls

    private func call(_ path: String, _ body: JSONValue, idempotent: Bool) throws(ServiceError) -> JSONValue {
        let r: HTTPResponse
        let sent = KeyServiceNode.nowMillis()
        do { r = try http.post(path, body: JSONWriter.serialize(body), idempotent: idempotent) } catch {
            // A change etcd received but did not answer may still be applied when it recovers.
            throw .unavailable(
                idempotent
                    ? "The key store (etcd) cannot be reached: \(error)"
                    : "The key store (etcd) did not confirm the change (\(error)); it was not applied here, but etcd may still apply it when it recovers: list the keys before trying again."
            )
        }
        if let date = r.serverDate { onClock?(date, sent, KeyServiceNode.nowMillis()) }
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

    /// True while etcd's watch on the prefix is up (`watch`).
    let watching = Atomic<Bool>(false)

    /// Requests sent to etcd so far (the watch's stream not counted).
    var requestsSent: Int { http.stats.requestCount }

    /// The store's current revision (one small request).
    func currentRevision() throws(ServiceError) -> Int64 {
        let r = try call(
            "/v3/kv/range",
            .object([
                ("key", .string(Base64.encode(prefixBytes))), ("range_end", .string(rangeEnd)),
                ("count_only", .bool(true)),
            ]), idempotent: true)
        return EtcdStore.int64(r["header"]?["revision"])
    }

    /// The record name of an etcd key-value (its key below the prefix); nil for anything else.
    private func recordName(_ kv: JSONValue) -> String? {
        guard case .string(let k64)? = kv["key"], let keyBytes = try? Base64.decode(k64), keyBytes.starts(with: prefixBytes) else {
            return nil
        }
        return String(decoding: keyBytes.dropFirst(prefixBytes.count), as: UTF8.self)
    }

    /// The longest line of etcd's watch stream read: one batch of events, each a sealed record
    /// (keys and objects are small; a principal table of thousands of principals is not).
    static let maxWatchLineBytes = 64 << 20
    /// etcd sends a progress notice on an idle watch every 10 minutes (its default): silence much
    /// longer than that means the connection is gone.
    static let watchIdleMs = 11 * 60_000

    /// Follows the records below the prefix from now on with etcd's watch (its gateway streams the
    /// answers of one watch as lines of JSON, on a connection of its own): `onReady` once etcd
    /// confirmed the watch, then `onChange` with the store's revision after each batch of events
    /// that touched key state (keys, objects, tombstones, principals; audit heads do not count).
    /// Returns only by throwing: when the stream fails or ends, is cancelled through `handle`, or
    /// etcd cancels the watch (compaction, a member going away). The events are news only: the
    /// node reads what changed through `refresh`, which checks every record's seal and freshness.
    func watch(handle: LongPollHandle, onReady: () -> Void, onChange: (Int64) -> Void) throws(ServiceError) {
        defer { watching.store(false, ordering: .relaxed) }
        let request = JSONValue.object([
            (
                "create_request",
                .object([
                    ("key", .string(Base64.encode(prefixBytes))), ("range_end", .string(rangeEnd)),
                    ("progress_notify", .bool(true)),
                ])
            )
        ])
        do {
            try http.postStreaming(
                "/v3/watch", body: JSONWriter.serialize(request), idleTimeoutMs: EtcdStore.watchIdleMs,
                maxLineBytes: EtcdStore.maxWatchLineBytes, handle: handle
            ) { (line: [UInt8]) throws(ClientError) -> Bool in
                guard line.contains(where: { $0 > 32 }) else { return true }
                guard let message = try? JSONParser.parse(line) else {
                    throw .protocolError("etcd's watch sent something that is not JSON")
                }
                if let error = message["error"] {
                    let text = error["message"].flatMap { if case .string(let m) = $0 { m } else { nil } } ?? "an error"
                    throw .protocolError("etcd ended the watch: \(text.prefix(200))")
                }
                guard let result = message["result"] else { return true }
                if case .bool(true)? = result["canceled"] {
                    let reason = result["cancel_reason"].flatMap { if case .string(let m) = $0 { m } else { nil } } ?? ""
                    throw .protocolError("etcd cancelled the watch\(reason.isEmpty ? "" : ": " + reason.prefix(200))")
                }
                if case .bool(true)? = result["created"] {
                    watching.store(true, ordering: .relaxed)
                    onReady()
                }
                if case .array(let events)? = result["events"],
                    events.contains(where: { event in
                        event["kv"].flatMap { recordName($0) }.map { !$0.hasPrefix(EtcdStore.auditHeadPrefix) } ?? false
                    })
                {
                    onChange(EtcdStore.int64(result["header"]?["revision"]))
                }
                return true
            }
        } catch {
            throw .unavailable("Watching the key store (etcd) failed: \(error)")
        }
        // A watch has no end: etcd closed it (stopping, or a gateway timeout).
        throw .unavailable("The key store (etcd) ended its watch.")
    }

    /// Reads every record (a refresh from an empty view); the state they make and the revision
    /// read at. Records that do not unseal (another service's, or damaged) are reported and skipped.
    func load(audit: AuditLog) throws(ServiceError) -> (state: KeyState, revision: Int64) {
        view.withLock { $0 = View() }
        let state = try refresh(KeyState(), audit: audit)?.state ?? KeyState()
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
    /// The state with etcd's changes since this node's view, and whether any key record changed
    /// (audit heads move the revision too); nil when the revision did not move.
    func refresh(_ state: KeyState, audit: AuditLog) throws(ServiceError) -> (state: KeyState, changed: Bool)? {
        let last = viewRevision
        let names = try call(
            "/v3/kv/range",
            .object([
                ("key", .string(Base64.encode(prefixBytes))), ("range_end", .string(rangeEnd)),
                ("keys_only", .bool(true)),
            ]), idempotent: true)
        let revision = EtcdStore.int64(names["header"]?["revision"])
        guard revision != last else { return nil }
        var present: [String: Int64] = [:]
        if case .array(let kvs)? = names["kvs"] {
            for kv in kvs { if let name = recordName(kv) { present[name] = EtcdStore.int64(kv["mod_revision"]) } }
        }
        var next = state
        var touched = false
        var v = view.withLock { $0 }
        for name in v.records.keys where present[name] == nil {
            if name == "p", let held = v.records[name] {
                // The principal table never goes away by itself (removing every principal keeps
                // its record): keep enforcing it and write it back (fail closed, never "no principals").
                onStale?("the principal table (etcd record p) vanished: keeping the one this node holds and writing it back")
                v.records[name] = (plain: [], modRevision: 0, seq: held.seq)
                needsHeal.store(true, ordering: .relaxed)
                continue
            }
            EtcdStore.remove(record: name, from: &next)
            v.records.removeValue(forKey: name)
            buried(name)
            touched = true
        }

        if present.contains(where: { $0.value > last }) {
            let changed = try call(
                "/v3/kv/range",
                .object([
                    ("key", .string(Base64.encode(prefixBytes))), ("range_end", .string(rangeEnd)),
                    ("min_mod_revision", .string(String(last + 1))), ("revision", .string(String(revision))),
                ]), idempotent: true)
            if case .array(let kvs)? = changed["kvs"] {
                for kv in kvs {
                    guard let name = recordName(kv), !name.hasPrefix(EtcdStore.auditHeadPrefix) else { continue }
                    let value: [UInt8] = if case .string(let s)? = kv["value"] { (try? Base64.decode(s)) ?? [] } else { [] }
                    let modRevision = EtcdStore.int64(kv["mod_revision"])
                    guard let (plain, seq) = unseal(value, name: name), let decoded = try? StateCodec.decode(plain, allowExtensions: true)
                    else {
                        EtcdStore.remove(record: name, from: &next)
                        v.records.removeValue(forKey: name)
                        audit.error("etcd record \(AuditNames.clean(name)) does not unseal under this RPC key; skipped.")
                        continue
                    }
                    guard admit(name, seq: seq) else {
                        // Stale: this node's version stays in its state; the view marks the record
                        // as not this node's (empty plaintext), so the next write replaces it, or
                        // deletes it when this node holds no such record.
                        v.records[name] = (plain: [], modRevision: modRevision, seq: freshness.withLock { $0.floors[name] } ?? seq)
                        continue
                    }
                    EtcdStore.remove(record: name, from: &next)
                    EtcdStore.add(decoded.state, record: name, to: &next)
                    v.records[name] = (plain, modRevision, seq)
                    touched = true
                    raise(name, to: seq)
                    if name == "p" {
                        freshness.withLock {
                            $0.principalTable = plain; $0.dirty = true
                        }
                    }
                    if seq == 0 { needsHeal.store(true, ordering: .relaxed) }  // written without a sequence: rewrite it
                }
            }
        }
        // No principal table accepted from etcd (missing, or older than seen) but this node has seen
        // one, and its state holds an older one or none (a restart): the last one it saw (fail closed).
        if v.records["p"].map({ $0.plain.isEmpty }) ?? true, let table = freshness.withLock({ $0.principalTable }),
            let decoded = try? StateCodec.decode(table, allowExtensions: true),
            next.principals.isEmpty || next.principalsVersion < decoded.state.principalsVersion
        {
            onStale?(
                "the principal table in etcd is missing or older than this node has seen: using the last one it saw and writing it back")
            EtcdStore.add(decoded.state, record: "p", to: &next)
            v.records["p"] = (plain: [], modRevision: v.records["p"]?.modRevision ?? 0, seq: freshness.withLock { $0.floors["p"] } ?? 0)
            needsHeal.store(true, ordering: .relaxed)
            touched = true
        }
        v.revision = revision
        view.withLock { $0 = v }
        saveFreshnessReporting()
        return (next, touched)
    }

    // MARK: - Audit heads

    /// Records below `a/` are the nodes' audit-trail heads (`putAuditHead`), not key state: a view
    /// never holds them, so commits neither write nor delete them.
    static let auditHeadPrefix = "a/"

    /// Writes a node's audit head (seq and MAC of its newest record), sealed with the seq as the
    /// record's sequence: etcd cannot hand back an older head than this node has written.
    func putAuditHead(id: String, seq: UInt64, mac: String) throws(ServiceError) {
        let name = EtcdStore.auditHeadPrefix + id
        let sealed = try seal(Array(mac.utf8), name: name, seq: Int64(clamping: seq))
        _ = try call(
            "/v3/kv/put",
            .object([
                ("key", .string(Base64.encode(prefixBytes + Array(name.utf8)))),
                ("value", .string(Base64.encode(sealed))),
            ]), idempotent: true)
        // The floor is raised in memory (a replayed older head is found while the node runs) but
        // the freshness file is not rewritten for it: this record exists to catch the trail and
        // its anchor rolled back together on this host, and a floor kept in a file on the same
        // host would be rolled back with them. (It was a whole-file rewrite every 2 s under load.)
        raise(name, to: Int64(clamping: seq))
    }

    /// A node's audit head as etcd holds it; an older one than this node has written (a replay)
    /// or none at all after one was written counts as the newest written (its MAC unknown).
    func auditHead(id: String) throws(ServiceError) -> (seq: UInt64, mac: String?)? {
        let name = EtcdStore.auditHeadPrefix + id
        let r = try call("/v3/kv/range", .object([("key", .string(Base64.encode(prefixBytes + Array(name.utf8))))]), idempotent: true)
        let floor = freshness.withLock { $0.floors[name] } ?? 0
        if case .array(let kvs)? = r["kvs"], let kv = kvs.first, case .string(let s)? = kv["value"],
            let value = try? Base64.decode(s), let (plain, seq) = unseal(value, name: name), seq >= floor
        {
            return (UInt64(clamping: seq), String(decoding: plain, as: UTF8.self))
        }
        return floor > 0 ? (UInt64(clamping: floor), nil) : nil
    }

    /// The revision this node's view was read or written at.
    var viewRevision: Int64 { view.withLock { $0.revision } }

    /// Writes the difference between this node's view and `next` as transactions: puts of new
    /// records only if absent, replacements and deletions only if unchanged since read. On a
    /// conflict nothing of that transaction is written (409: reload and retry); etcd unreachable: 503.
    func commit(_ next: KeyState) throws(ServiceError) {
        let wanted = EtcdStore.records(next)
        let current = view.withLock { $0.records }
        var ops: [(name: String, plain: [UInt8]?, modRevision: Int64, seq: Int64)] = []
        let floors = freshness.withLock { $0.floors }
        // Each written record: one more than anything this node has seen of its name. Records held
        // without a sequence (older versions) are rewritten with one.
        for (name, plain) in wanted where current[name]?.plain != plain || current[name]?.seq == 0 {
            let seq = max(floors[name] ?? 0, current[name]?.seq ?? 0) + 1
            ops.append((name, plain, current[name]?.modRevision ?? 0, seq))
        }
        for (name, old) in current where wanted[name] == nil {
            if old.modRevision == 0 { continue }  // not in etcd (a vanished record this node no longer wants)
            ops.append((name, nil, old.modRevision, old.seq))
        }
        guard !ops.isEmpty else { return }
        var start = 0
        while start < ops.count {
            let chunk = ops[start..<min(start + EtcdStore.maxOpsPerTxn, ops.count)]
            var compare: [JSONValue] = []
            var success: [JSONValue] = []
            for op in chunk {
                let key = Base64.encode(prefixBytes + Array(op.name.utf8))
                if op.modRevision == 0 {
                    compare.append(
                        .object([
                            ("key", .string(key)), ("result", .string("EQUAL")), ("target", .string("CREATE")),
                            ("create_revision", .string("0")),
                        ]))
                } else {
                    compare.append(
                        .object([
                            ("key", .string(key)), ("result", .string("EQUAL")), ("target", .string("MOD")),
                            ("mod_revision", .string(String(op.modRevision))),
                        ]))
                }
                if let plain = op.plain {
                    let value = Base64.encode(try seal(plain, name: op.name, seq: op.seq))
                    success.append(.object([("request_put", .object([("key", .string(key)), ("value", .string(value))]))]))
                } else {
                    success.append(.object([("request_delete_range", .object([("key", .string(key))]))]))
                }
            }
            let r = try call("/v3/kv/txn", .object([("compare", .array(compare)), ("success", .array(success))]), idempotent: false)
            guard case .bool(true)? = r["succeeded"] else { throw EtcdStore.concurrentChange }
            let revision = EtcdStore.int64(r["header"]?["revision"])
            for op in chunk {
                if op.plain == nil { buried(op.name); continue }
                raise(op.name, to: op.seq)
                if op.name == "p", let plain = op.plain {
                    freshness.withLock {
                        $0.principalTable = plain; $0.dirty = true
                    }
                }
            }
            saveFreshnessReporting()
            view.withLock { v in
                for op in chunk {
                    if let plain = op.plain {
                        v.records[op.name] = (plain, revision, op.seq)
                    } else {
                        v.records.removeValue(forKey: op.name)
                    }
                }
                // Only this node's writes happened between: the view is current at `revision`
                // when it was current before (otherwise the next poll reloads).
                if v.revision == revision - 1 { v.revision = revision }
            }
            start += EtcdStore.maxOpsPerTxn
        }
    }
}
