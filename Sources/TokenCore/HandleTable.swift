import VSSMSync

/// Handles the host holds (PKCS#11 session handles): never 0, not reused while the table lives
/// (the counter wraps after 2^64 handles), each entry an object with locks of its own. The table's
/// lock is held only to add, find or remove an entry: threads working on different sessions wait
/// for each other only for a dictionary lookup (PKCS#11 §6.7.6: a session is one thread's at a
/// time, sessions are many threads' at once).
final class HandleTable<Entry: AnyObject & Sendable>: Sendable {
    private let table = Locked<(entries: [UInt: Entry], next: UInt)>(([:], 1))

    /// Adds the entry the handle is given to (made by `make` under the table's lock).
    func add(_ make: (UInt) -> Entry) -> UInt {
        table.withLock { t in
            var h = t.next
            while h == 0 || t.entries[h] != nil { h &+= 1 }
            t.next = h &+ 1
            t.entries[h] = make(h)
            return h
        }
    }

    func entry(_ handle: UInt) -> Entry? { table.withLock { $0.entries[handle] } }

    @discardableResult
    func remove(_ handle: UInt) -> Entry? { table.withLock { $0.entries.removeValue(forKey: handle) } }

    /// Removes the entries `doomed` picks and returns them.
    func removeAll(where doomed: (Entry) -> Bool) -> [Entry] {
        table.withLock { t in
            let gone = t.entries.values.filter(doomed)
            t.entries = t.entries.filter { !doomed($0.value) }
            return gone
        }
    }

    /// The entries at this moment (each may change or go after the table's lock is released).
    var entries: [Entry] { table.withLock { Array($0.entries.values) } }

    var count: Int { table.withLock { $0.entries.count } }

    /// fork(): the forking thread holds the table's lock across it (see `Library.prepareFork`).
    func lockForFork() { table.lockForFork() }
    func unlockAfterFork() { table.unlockAfterFork() }
}
