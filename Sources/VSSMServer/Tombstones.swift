import VSSMWire

/// Deletions that stay deleted. A tombstone `TYPE/name` (or `OBJECT/uid`) with the time of the
/// deletion outranks every copy of the key created at or before it: a peer (ours or a Go node) or
/// a backup that still holds it does not bring it back; a key made again later under the name is
/// a new key. At most `maxCount` are kept (the oldest go first).
public enum Tombstone {
    static let maxCount = 100_000
    static func id(_ type: KeyType, _ name: String) -> String { type.rawValue + "/" + name }
    static func object(_ uid: String) -> String { "OBJECT/" + uid }
}

extension KeyState {
    /// Records a deletion (and keeps the table bounded).
    mutating func bury(_ id: String, at ms: Int64) {
        tombstones[id] = max(ms, tombstones[id] ?? .min)
        if tombstones.count > Tombstone.maxCount {
            for (old, _) in tombstones.sorted(by: { $0.value < $1.value }).prefix(tombstones.count - Tombstone.maxCount) {
                tombstones.removeValue(forKey: old)
            }
        }
    }

    /// Whether a copy created at `createdAt` of what `id` names was deleted since.
    func isBuried(_ id: String, createdAt: Int64) -> Bool { (tombstones[id] ?? .min) >= createdAt }

    /// Removes what `id` (`TYPE/name` or `OBJECT/uid`) names, when it was created at or before
    /// `createdAtMost` (a copy made later is another key).
    mutating func removeEntry(_ id: String, createdAtMost: Int64 = .max) {
        guard let parts = id.splitAtFirstSlash(), !parts.before.isEmpty, !parts.after.isEmpty else { return }
        let name = parts.after
        switch parts.before {
        case "OBJECT": if let o = objects[name], o.createdAt <= createdAtMost { objects.removeValue(forKey: name) }
        case KeyType.symmetric.rawValue: if let e = symmetric[name], e.createdAt <= createdAtMost { symmetric.removeValue(forKey: name) }
        case KeyType.asymmetric.rawValue: if let e = asymmetric[name], e.createdAt <= createdAtMost { asymmetric.removeValue(forKey: name) }
        case KeyType.mac.rawValue: if let e = mac[name], e.createdAt <= createdAtMost { mac.removeValue(forKey: name) }
        default: break
        }
    }
}
