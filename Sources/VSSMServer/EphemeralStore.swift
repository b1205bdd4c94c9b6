import Glibc
import VSSMSync
import VSSMWire

/// Session objects of PKCS#11 modules (CKA_TOKEN=FALSE): keys that live in this node's memory only
/// — never persisted, synced or backed up — grouped by the module instance ("owner", 128 random
/// bits in hex) that made them. Their names are `~<owner>/<name>`; the owner id acts as a
/// capability (it never leaves that module's mTLS connections and is never listed to anyone
/// else). An owner not seen for `leaseMs` is reaped with all its keys, so a module that died
/// without C_Finalize leaves nothing behind; the module renews by using its keys or listing.
final class EphemeralStore: Sendable {
    struct Owner {
        var lastSeenMs: Int64
        var keys = KeyState()
        /// The certificate that made this owner's first key (its keys count against its quota).
        var client = "-"
    }
    private let owners = Locked<(all: [String: Owner], sweptAt: Int64)>(([:], 0))

    /// Every owner's session keys, as one state (the unwrap check looks for a key's value among them).
    var allKeys: [KeyState] { owners.withLock { $0.all.values.map(\.keys) } }
    static let leaseMs: Int64 = 15 * 60 * 1000
    static let maxKeys = 10_000
    static let maxKeysPerOwner = 2_000
    /// Session keys one client certificate may hold across all its module instances: no tenant
    /// can fill the node's `maxKeys` for the others.
    static let maxKeysPerClient = 1_000

    /// The owner of a session-object name, or nil when the name is not one.
    static func owner(of name: String) -> String? {
        guard name.startsWithByte("~"), let owner = name.splitAtFirstSlash(droppingFirst: 1)?.before else { return nil }
        return isOwner(owner) ? owner : nil
    }

    static func isOwner(_ s: String) -> Bool {
        s.utf8.count == 32 && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// Checks a new session-object name: a valid owner and a valid key name after the slash.
    static func checkName(_ name: String) throws(ServiceError) {
        guard let owner = owner(of: name) else { throw .badRequest("Session key names are ~<32 hex owner>/<name>.") }
        _ = owner
        try KeyPolicy.checkName(name.splitAtFirstSlash(droppingFirst: 1)?.after ?? "")
    }

    private func sweep(_ s: inout (all: [String: Owner], sweptAt: Int64), now: Int64) {
        guard now - s.sweptAt > 10_000 else { return }
        s.sweptAt = now
        s.all = s.all.filter { now - $0.value.lastSeenMs <= EphemeralStore.leaseMs }
    }

    /// Runs `body` on the owner's keys (created when absent), renewing the lease.
    func with<R>(owner: String, create: Bool = false, _ body: (inout KeyState) throws(ServiceError) -> R) throws(ServiceError) -> R? {
        let now = Monotonic.ms()
        return try owners.withLock { (s: inout (all: [String: Owner], sweptAt: Int64)) throws(ServiceError) -> R? in
            sweep(&s, now: now)
            guard var o = s.all[owner] ?? (create ? Owner(lastSeenMs: now) : nil) else { return nil }
            o.lastSeenMs = now
            let r = try body(&o.keys)
            s.all[owner] = o
            return r
        }
    }

    func insert(_ entry: NewEntry, type: KeyType, client: String = "-") throws(ServiceError) {
        let name =
            switch entry {
            case .secret(let e): e.name
            case .asymmetric(let e): e.name
            }
        guard let owner = EphemeralStore.owner(of: name) else { throw .badRequest("not a session key name") }
        let (total, mine) = owners.withLock { s in
            s.all.values.reduce((0, 0)) { ($0.0 + $1.keys.keyCount, $0.1 + ($1.client == client ? $1.keys.keyCount : 0)) }
        }
        guard total < EphemeralStore.maxKeys else { throw .unavailable("Too many session keys on this node.") }
        if client != "-" && mine >= EphemeralStore.maxKeysPerClient {
            throw .tooLarge("Too many session keys for this client certificate (\(EphemeralStore.maxKeysPerClient)); destroy some first.")
        }
        _ = try with(owner: owner, create: true) { (k: inout KeyState) throws(ServiceError) in
            guard k.keyCount < EphemeralStore.maxKeysPerOwner else { throw .tooLarge("Too many session keys for this module instance.") }
            try k.insert(entry, type: type)
        }
        owners.withLock { s in if s.all[owner]?.client == "-" { s.all[owner]?.client = client } }
    }

    func asymmetric(_ name: String) -> AsymmetricKeyEntry? {
        guard let owner = EphemeralStore.owner(of: name) else { return nil }
        return (try? with(owner: owner) { $0.asymmetric[name] }) ?? nil
    }

    func symmetric(_ name: String) -> SecretKeyEntry? {
        guard let owner = EphemeralStore.owner(of: name) else { return nil }
        return (try? with(owner: owner) { $0.symmetric[name] }) ?? nil
    }

    func mac(_ name: String) -> SecretKeyEntry? {
        guard let owner = EphemeralStore.owner(of: name) else { return nil }
        return (try? with(owner: owner) { $0.mac[name] }) ?? nil
    }

    func delete(_ name: String, type: KeyType) -> Bool {
        guard let owner = EphemeralStore.owner(of: name) else { return false }
        return ((try? with(owner: owner) { $0.remove(name, type: type) }) ?? nil) ?? false
    }

    /// The owner's keys (renews the lease); empty for an unknown owner.
    func keys(of owner: String) -> KeyState {
        ((try? with(owner: owner) { $0 }) ?? nil) ?? KeyState()
    }

    /// Changes a session key's attributes; false when there is no such key.
    func updateAttributes(_ name: String, type: KeyType, _ change: (inout KeyAttributes) -> Void) -> Bool {
        guard let owner = EphemeralStore.owner(of: name) else { return false }
        return ((try? with(owner: owner) { $0.updateAttributes(name, type: type, change) }) ?? nil) ?? false
    }

    /// Drops every key of the owner (C_Finalize); returns how many.
    func release(_ owner: String) -> Int {
        owners.withLock { $0.all.removeValue(forKey: owner)?.keys.keyCount ?? 0 }
    }

    var count: Int { owners.withLock { $0.all.values.reduce(0) { $0 + $1.keys.keyCount } } }
}
