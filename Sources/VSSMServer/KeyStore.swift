import VSSMCrypto
public import VSSMWire

/// Extension attributes of a key (not part of the original's wire formats).
public struct KeyAttributes: Sendable, Equatable {
    /// PKCS#11 CKA_ID given at creation, if any.
    public var id: [UInt8]?
    /// For SYMMETRIC keys: "AES", "DES" or "3DES" as chosen at creation (24-byte keys are ambiguous).
    public var cipher: String?
    /// CKA_LABEL of a session key (whose name is generated); token keys are labelled by their name.
    public var label: String?
    /// "generated" in this service (PKCS#11 CKA_LOCAL, always sensitive, never extractable) or
    /// "injected"; nil where unknown (keys from before this field, from Go peers).
    public var origin: String?
    /// PKCS#11 attributes the module keeps with the key (usage flags and the like), opaque to the
    /// service and bounded by `ServiceLimits.maxKeyAttributeBytes`.
    public var pkcs11: [UInt8]?
    public init(id: [UInt8]? = nil, cipher: String? = nil, label: String? = nil, origin: String? = nil, pkcs11: [UInt8]? = nil) {
        self.id = id
        self.cipher = cipher
        self.label = label
        self.origin = origin
        self.pkcs11 = pkcs11
    }
    var isEmpty: Bool { id == nil && cipher == nil && origin == nil && pkcs11 == nil && label == nil }
}

public struct SecretKeyEntry: Sendable {
    public let name: String
    public let createdAt: Int64
    public let key: [UInt8]
    public var attributes = KeyAttributes()
}

public struct AsymmetricKeyEntry: Sendable {
    public let name: String
    public let createdAt: Int64
    /// "RSA", "EC", or an extension's kind ("ED25519", "DSA", "ML-DSA-65", …).
    public let keyType: String
    /// PKCS#8 DER as created or injected (echoed back byte-for-byte in sync and backup).
    public let pkcs8: [UInt8]
    public let key: AsymmetricKey
    public let spki: [UInt8]
    public var attributes = KeyAttributes()
}

/// A certificate or data object stored with the keys (extension; PKCS#11 CKO_CERTIFICATE/CKO_DATA).
public struct StoredObject: Sendable, Equatable {
    public let uid: String
    /// "CERTIFICATE", "DATA" or "PUBLIC_KEY" (a SubjectPublicKeyInfo).
    public let objectClass: String
    public var label: String
    public var id: [UInt8]
    public var value: [UInt8]
    /// CKA_APPLICATION for data objects, subject DER for certificates (optional).
    public var application: String
    public let createdAt: Int64
    /// Its namespace (nil: `default`).
    public var namespace: String? = nil
}

/// Everything a node holds. Value type: snapshots are cheap copies.
public struct KeyState: Sendable {
    public var symmetric: [String: SecretKeyEntry] = [:]
    public var asymmetric: [String: AsymmetricKeyEntry] = [:]
    public var mac: [String: SecretKeyEntry] = [:]
    public var objects: [String: StoredObject] = [:]
    /// Registered principals by certificate fingerprint (empty: the original model, no tenants).
    public var principals: [String: Principal] = [:]
    /// When the principal table last changed (ms, strictly increasing here): nodes and restores
    /// take a whole newer table, so a removal travels like an addition.
    public var principalsVersion: Int64 = 0
    /// Nodes that may join the cluster (`JoinCredential`), by name; versioned with the principals.
    public var nodes: [String: JoinCredential] = [:]
    /// Deletions (`Tombstone.id` → when, ms): a peer or backup that still holds the key or object
    /// does not bring it back. Travel with the sealed state, the extension sync and v2 backups.
    public var tombstones: [String: Int64] = [:]
    public init() {}

    public var keyCount: Int { symmetric.count + asymmetric.count + mac.count }

    public func contains(_ name: String, type: KeyType) -> Bool {
        switch type {
        case .symmetric: symmetric[name] != nil
        case .asymmetric: asymmetric[name] != nil
        case .mac: mac[name] != nil
        }
    }
}

/// Serialises state to the original's `SynchronizeStateResponse` JSON (what backups and sync carry).
/// With `extensions` it adds our `ext` member, which only our own sealed state file uses.
enum StateCodec {
    static func encode(_ s: KeyState, extensions: Bool) -> [UInt8] {
        func secret(_ e: SecretKeyEntry) -> JSONValue {
            var w = WireWriter()
            w.string("name", e.name)
            w.int64("createdAt", e.createdAt)
            w.bytes("key", e.key)
            return w.value
        }
        var w = WireWriter()
        w.array("symmetricKey", s.symmetric.values.sorted { $0.name < $1.name }.map(secret))
        // The original format (state sync, version-1 backups) carries only the key types the
        // original VSSM knows: a Go peer refuses a whole state holding an Ed25519 or DSA key.
        // Those stay in the sealed store and version-2 backups.
        let asymmetric = s.asymmetric.values.filter { extensions || $0.key.kind == .rsa || $0.key.kind == .ec }
        w.array(
            "asymmetricKey",
            asymmetric.sorted { $0.name < $1.name }.map { e in
                var a = WireWriter()
                a.string("name", e.name)
                a.int64("createdAt", e.createdAt)
                a.string("keyType", e.keyType)
                a.bytes("key", e.pkcs8)
                return a.value
            })
        w.array("macKey", s.mac.values.sorted { $0.name < $1.name }.map(secret))
        if extensions {
            var attrs: [JSONValue] = []
            func add(_ type: KeyType, _ name: String, _ a: KeyAttributes) {
                guard !a.isEmpty else { return }
                var x = WireWriter()
                x.string("keyType", type.rawValue)
                x.string("name", name)
                x.bytes("id", a.id)
                x.string("cipher", a.cipher ?? "")
                x.string("origin", a.origin ?? "")
                x.bytes("pkcs11", a.pkcs11)
                x.string("label", a.label ?? "")
                attrs.append(x.value)
            }
            for e in s.symmetric.values.sorted(by: { $0.name < $1.name }) { add(.symmetric, e.name, e.attributes) }
            for e in s.asymmetric.values.sorted(by: { $0.name < $1.name }) { add(.asymmetric, e.name, e.attributes) }
            for e in s.mac.values.sorted(by: { $0.name < $1.name }) { add(.mac, e.name, e.attributes) }
            var ext = WireWriter()
            ext.array("attributes", attrs)
            ext.array("objects", s.objects.values.sorted { $0.uid < $1.uid }.map { ObjectCodec.encode($0, stored: true) })
            if !s.tombstones.isEmpty {
                ext.array(
                    "tombstones",
                    s.tombstones.sorted { $0.key < $1.key }.map { id, at in
                        var t = WireWriter()
                        t.string("id", id)
                        t.int64("deletedAt", at)
                        return t.value
                    })
            }
            if !s.principals.isEmpty || s.principalsVersion != 0 {
                ext.array("principals", s.principals.values.sorted { $0.name < $1.name }.map { PrincipalCodec.encode($0, withPIN: true) })
                ext.array(
                    "nodes",
                    s.nodes.values.sorted { $0.name < $1.name }.map { n in
                        var x = WireWriter()
                        x.string("name", n.name)
                        x.string("secretHash", n.secretHash)
                        x.int64("createdAt", n.createdAt)
                        return x.value
                    })
                ext.int64("principalsVersion", s.principalsVersion)
            }
            w.object("ext", ext.value)
        }
        return w.bytes
    }

    struct Decoded {
        var state = KeyState()
        var skipped: [String] = []
    }

    /// Parses a state document. Unknown members are rejected unless `allowExtensions` (our own file).
    static func decode(_ bytes: [UInt8], allowExtensions: Bool) throws(JSONError) -> Decoded {
        var root = try JSONParser.parse(bytes)
        var extValue: JSONValue? = nil
        if allowExtensions, case .object(var members) = root {
            extValue = members.last(where: { $0.0 == "ext" })?.1
            members.removeAll { $0.0 == "ext" }
            root = .object(members)
        }
        let o = try WireObject(root, schema: Schemas.synchronizeStateResponse)
        var d = decodeKeys(o)
        if let extValue, case .object = extValue {
            if case .array(let attrs)? = extValue["attributes"] {
                for a in attrs {
                    guard case .string(let name)? = a["name"], case .string(let type)? = a["keyType"] else { continue }
                    var attributes = KeyAttributes()
                    if case .string(let id)? = a["id"] { attributes.id = try? Base64.decode(id) }
                    if case .string(let c)? = a["cipher"], !c.isEmpty { attributes.cipher = c }
                    if case .string(let o)? = a["origin"], o == "generated" || o == "injected" { attributes.origin = o }
                    if case .string(let l)? = a["label"], !l.isEmpty, l.utf8.count <= ServiceLimits.maxLabelBytes { attributes.label = l }
                    if case .string(let b)? = a["pkcs11"], let bytes = try? Base64.decode(b),
                        bytes.count <= ServiceLimits.maxKeyAttributeBytes
                    {
                        attributes.pkcs11 = bytes
                    }
                    switch KeyType(rawValue: type) {
                    case .symmetric?: d.state.symmetric[name]?.attributes = attributes
                    case .asymmetric?: d.state.asymmetric[name]?.attributes = attributes
                    case .mac?: d.state.mac[name]?.attributes = attributes
                    case nil: break
                    }
                }
            }
            if case .array(let objs)? = extValue["objects"] {
                for item in objs { if let obj = ObjectCodec.decode(item) { d.state.objects[obj.uid] = obj } }
            }
            if case .array(let items)? = extValue["principals"] {
                for item in items { if let p = PrincipalCodec.decode(item) { d.state.principals[p.fingerprint] = p } }
            }
            if case .string(let v)? = extValue["principalsVersion"], let version = Int64(v) { d.state.principalsVersion = version }
            if case .array(let items)? = extValue["nodes"] {
                for n in items {
                    guard case .string(let name)? = n["name"], case .string(let hash)? = n["secretHash"], hash.utf8.count == 64,
                        !name.isEmpty, name.utf8.count <= 128
                    else { continue }
                    let created: Int64 = if case .string(let c)? = n["createdAt"] { Int64(c) ?? 0 } else { 0 }
                    d.state.nodes[name] = JoinCredential(name: name, secretHash: hash, createdAt: created)
                }
            }
            if case .array(let items)? = extValue["tombstones"] {
                for t in items.prefix(Tombstone.maxCount) {
                    guard case .string(let id)? = t["id"], case .string(let at)? = t["deletedAt"], let ms = Int64(at),
                        id.utf8.count <= 512
                    else { continue }
                    d.state.tombstones[id] = max(ms, d.state.tombstones[id] ?? .min)
                }
            }
        }
        return d
    }

    /// Keys of a validated `SynchronizeStateResponse`; asymmetric entries that do not parse are
    /// skipped and reported (the original skipped them silently).
    static func decodeKeys(_ o: WireObject) -> Decoded {
        var d = Decoded()
        for k in o.objects("symmetricKey") where !k.string("name").isEmpty {
            d.state.symmetric[k.string("name")] = SecretKeyEntry(
                name: k.string("name"), createdAt: k.int64("createdAt"), key: k.bytes("key") ?? [])
        }
        for k in o.objects("macKey") where !k.string("name").isEmpty {
            d.state.mac[k.string("name")] = SecretKeyEntry(
                name: k.string("name"), createdAt: k.int64("createdAt"), key: k.bytes("key") ?? [])
        }
        for k in o.objects("asymmetricKey") where !k.string("name").isEmpty {
            let der = k.bytes("key") ?? []
            guard let key = try? AsymmetricKey(pkcs8: der) else {
                d.skipped.append(k.string("name"))
                continue
            }
            d.state.asymmetric[k.string("name")] = AsymmetricKeyEntry(
                name: k.string("name"), createdAt: k.int64("createdAt"), keyType: key.kind.rawValue,
                pkcs8: der, key: key, spki: key.spkiDER)
        }
        return d
    }
}

enum ObjectCodec {
    /// `stored`: the sealed state (with the object's namespace); otherwise a listing, whose objects
    /// are all of the caller's namespace (clients' schema has no namespace field).
    static func encode(_ o: StoredObject, stored: Bool) -> JSONValue {
        var w = WireWriter()
        w.string("uid", o.uid)
        w.string("class", o.objectClass)
        w.string("label", o.label)
        w.bytes("id", o.id)
        w.bytes("value", o.value)
        w.string("application", o.application)
        w.int64("createdAt", o.createdAt)
        if stored, let ns = o.namespace { w.string("namespace", ns) }
        return w.value
    }

    static func decode(_ v: JSONValue) -> StoredObject? {
        guard case .string(let uid)? = v["uid"], case .string(let cls)? = v["class"] else { return nil }
        func str(_ k: String) -> String { if case .string(let s)? = v[k] { s } else { "" } }
        func bytes(_ k: String) -> [UInt8] { (try? Base64.decode(str(k))) ?? [] }
        let created: Int64 = if case .string(let s)? = v["createdAt"] { Int64(s) ?? 0 } else { 0 }
        let ns = str("namespace")
        return StoredObject(
            uid: uid, objectClass: cls, label: str("label"), id: bytes("id"), value: bytes("value"),
            application: str("application"), createdAt: created,
            namespace: ns.isEmpty || ns == Namespace.defaultName || (try? Namespace.check(ns)) == nil ? nil : ns)
    }
}

/// Merge rule of the original (sync and restore): an entry is taken when the name is absent or the
/// local `createdAt` is strictly older — unless a tombstone says it was deleted since (ours; the
/// original had none). Incoming tombstones delete what they outrank here. Returns the names taken.
func merge(_ incoming: KeyState, into state: inout KeyState) -> [String] {
    var taken: [String] = []
    for (id, at) in incoming.tombstones where at > (state.tombstones[id] ?? .min) {
        state.bury(id, at: at)
        state.removeEntry(id, createdAtMost: at)
    }
    for (name, e) in incoming.symmetric
    where (state.symmetric[name]?.createdAt ?? Int64.min) < e.createdAt
        && !state.isBuried(Tombstone.id(.symmetric, name), createdAt: e.createdAt)
    {
        var e = e
        if e.attributes.isEmpty, let old = state.symmetric[name] { e.attributes = old.attributes }
        state.symmetric[name] = e
        taken.append(name)
    }
    for (name, e) in incoming.asymmetric
    where (state.asymmetric[name]?.createdAt ?? Int64.min) < e.createdAt
        && !state.isBuried(Tombstone.id(.asymmetric, name), createdAt: e.createdAt)
    {
        var e = e
        if e.attributes.isEmpty, let old = state.asymmetric[name] { e.attributes = old.attributes }
        state.asymmetric[name] = e
        taken.append(name)
    }
    for (name, e) in incoming.mac
    where (state.mac[name]?.createdAt ?? Int64.min) < e.createdAt
        && !state.isBuried(Tombstone.id(.mac, name), createdAt: e.createdAt)
    {
        var e = e
        if e.attributes.isEmpty, let old = state.mac[name] { e.attributes = old.attributes }
        state.mac[name] = e
        taken.append(name)
    }
    for (uid, o) in incoming.objects where state.objects[uid] == nil && !state.isBuried(Tombstone.object(uid), createdAt: o.createdAt) {
        state.objects[uid] = o
    }
    // The principal table is taken whole when it is newer (removals travel too).
    if incoming.principalsVersion > state.principalsVersion {
        state.principals = incoming.principals
        state.nodes = incoming.nodes
        state.principalsVersion = incoming.principalsVersion
    }
    return taken
}

/// One new key, ready to store: a secret (symmetric or MAC) or an asymmetric entry.
enum NewEntry {
    case secret(SecretKeyEntry)
    case asymmetric(AsymmetricKeyEntry)
}

extension KeyState {
    /// Adds an entry of `type` under its name; 409 when that type already has the name.
    mutating func insert(_ entry: NewEntry, type: KeyType) throws(ServiceError) {
        switch (type, entry) {
        case (.symmetric, .secret(let e)) where symmetric[e.name] == nil: symmetric[e.name] = e
        case (.mac, .secret(let e)) where mac[e.name] == nil: mac[e.name] = e
        case (.asymmetric, .asymmetric(let e)) where asymmetric[e.name] == nil: asymmetric[e.name] = e
        case (_, .secret(let e)): throw .conflict("Key with name \(e.name) already exists.")
        case (_, .asymmetric(let e)): throw .conflict("Key with name \(e.name) already exists.")
        }
    }

    /// Removes the named key of `type`; false when there was none.
    mutating func remove(_ name: String, type: KeyType) -> Bool {
        switch type {
        case .symmetric: symmetric.removeValue(forKey: name) != nil
        case .asymmetric: asymmetric.removeValue(forKey: name) != nil
        case .mac: mac.removeValue(forKey: name) != nil
        }
    }

    /// Changes the attributes of the named key of `type`; false when there is none.
    mutating func updateAttributes(_ name: String, type: KeyType, _ change: (inout KeyAttributes) -> Void) -> Bool {
        switch type {
        case .symmetric:
            guard var e = symmetric[name] else { return false }
            change(&e.attributes)
            symmetric[name] = e
        case .asymmetric:
            guard var e = asymmetric[name] else { return false }
            change(&e.attributes)
            asymmetric[name] = e
        case .mac:
            guard var e = mac[name] else { return false }
            change(&e.attributes)
            mac[name] = e
        }
        return true
    }

    /// An upper bound of the encoded (plaintext) state in bytes, computed without encoding: checked
    /// against `ServiceLimits.maxStateBytes` before a change is acknowledged, so the sealed file a
    /// node writes always fits what it can read back after a restart.
    public var estimatedBytes: Int {
        func b64(_ n: Int) -> Int { (n + 2) / 3 * 4 }
        // Names and strings count twice: JSON escaping can at most double them (control characters
        // are refused); each entry appears in the base section and the extension section.
        var n = 256
        func attrs(_ a: KeyAttributes) -> Int { 64 + b64(a.id?.count ?? 0) + b64(a.pkcs11?.count ?? 0) + 2 * (a.label?.utf8.count ?? 0) }
        for e in symmetric.values { n += 160 + 2 * e.name.utf8.count + b64(e.key.count) + attrs(e.attributes) }
        for e in mac.values { n += 160 + 2 * e.name.utf8.count + b64(e.key.count) + attrs(e.attributes) }
        for e in asymmetric.values { n += 160 + 2 * e.name.utf8.count + b64(e.pkcs8.count) + attrs(e.attributes) }
        n += tombstones.reduce(0) { $0 + 80 + 2 * $1.key.utf8.count }
        n += nodes.values.reduce(0) { $0 + 200 + 2 * $1.name.utf8.count }
        for p in principals.values {
            n += 400 + 2 * (p.name.utf8.count + p.subject.utf8.count) + p.namespaces.reduce(0) { $0 + 8 + $1.utf8.count }
        }
        for o in objects.values {
            n +=
                220 + 2 * (o.namespace?.utf8.count ?? 0) + o.uid.utf8.count + 2 * (o.label.utf8.count + o.application.utf8.count)
                + b64(o.id.count) + b64(o.value.count)
        }
        return n
    }
}

extension KeyPolicy {
    /// Keys arriving from a peer or a backup pass the same checks as keys created here (the original
    /// took anything: a 0-byte AES key, a `createdAt` of 2^63-1 that no later key could replace).
    /// Returns what may be merged and the names refused, with why.
    static func admissible(_ incoming: KeyState, nowMs: Int64) -> (state: KeyState, refused: [String]) {
        var out = KeyState()
        var refused: [String] = []
        // A clock may run ahead a little; a day ahead is not a clock.
        let latest = nowMs + 24 * 3600 * 1000
        func common(_ name: String, _ createdAt: Int64, _ id: [UInt8]?) -> String? {
            do { try checkName(name) } catch { return error.message }
            if createdAt > latest { return "createdAt lies in the future" }
            if (id?.count ?? 0) > ServiceLimits.maxIdBytes { return "id is too long" }
            return nil
        }
        for (name, e) in incoming.symmetric {
            if let why = common(name, e.createdAt, e.attributes.id) { refused.append("\(name): \(why)"); continue }
            do { _ = try cipher(forLength: e.key.count, requested: e.attributes.cipher) } catch {
                refused.append("\(name): \(error.message)"); continue
            }
            out.symmetric[name] = e
        }
        for (name, e) in incoming.mac {
            if let why = common(name, e.createdAt, e.attributes.id) { refused.append("\(name): \(why)"); continue }
            do { try checkMacSize(UInt64(e.key.count)) } catch { refused.append("\(name): \(error.message)"); continue }
            out.mac[name] = e
        }
        for (name, e) in incoming.asymmetric {
            if let why = common(name, e.createdAt, e.attributes.id) { refused.append("\(name): \(why)"); continue }
            do { try checkAsymmetric(e.key) } catch { refused.append("\(name): \(error.message)"); continue }
            out.asymmetric[name] = e
        }
        for (uid, o) in incoming.objects {
            guard o.value.count <= ServiceLimits.maxObjectBytes, o.id.count <= ServiceLimits.maxIdBytes,
                o.label.utf8.count <= ServiceLimits.maxLabelBytes, o.application.utf8.count <= ServiceLimits.maxLabelBytes,
                o.createdAt <= latest
            else {
                refused.append("object \(uid): over a size limit or created in the future")
                continue
            }
            out.objects[uid] = o
        }
        for (id, at) in incoming.tombstones {
            if at > latest { refused.append("tombstone \(id): deleted in the future"); continue }
            out.tombstones[id] = at
        }
        // The principal table is one unit: taken whole or not at all.
        if incoming.principals.values.allSatisfy({ $0.name.utf8.count <= 128 && $0.namespaces.count <= 64 && $0.subject.utf8.count <= 4096 }
        ),
            incoming.principalsVersion <= latest
        {
            out.principals = incoming.principals
            out.nodes = incoming.nodes
            out.principalsVersion = incoming.principalsVersion
        } else {
            refused.append("the principal table: a principal over a size limit, or changed in the future")
        }
        return (out, refused)
    }
}
