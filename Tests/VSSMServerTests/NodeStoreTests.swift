import Glibc
import Synchronization
import Testing
import VSSMCrypto
import VSSMSync
import VSSMWire

@testable import VSSMServer

/// `NodeStore` on its own (issue 21: the store split out of the node): a change is applied, held
/// to the size limit, persisted before it returns, and announced once; a refused or failed change
/// leaves the state as it was.
@Suite struct NodeStoreTests {
    static func key(_ name: String, _ bytes: Int = 32) -> SecretKeyEntry {
        SecretKeyEntry(name: name, createdAt: 1, key: [UInt8](repeating: 7, count: bytes))
    }

    @Test func changesAreAppliedAndAnnouncedOnceAndRefusedWhole() throws {
        let store = NodeStore(maxStateBytes: 4096, audit: AuditLog(echo: false), metrics: ServiceMetrics(knownRoutes: []))
        let announced = Atomic<Int>(0)
        store.onChange.withLock { $0 = { announced.add(1, ordering: .relaxed) } }
        try store.mutate { $0.mac["a"] = NodeStoreTests.key("a") }
        #expect(store.snapshot.mac["a"] != nil && announced.load(ordering: .relaxed) == 1)
        // Over the limit: 413, nothing changed, nothing announced.
        #expect(throws: ServiceError.self) { try store.mutate { $0.mac["big"] = NodeStoreTests.key("big", 8192) } }
        #expect(store.snapshot.mac["big"] == nil && announced.load(ordering: .relaxed) == 1)
        // A change that fails half-way leaves nothing of it behind.
        #expect(throws: ServiceError.self) {
            try store.mutate { s throws(ServiceError) in
                s.mac["b"] = NodeStoreTests.key("b")
                throw ServiceError.badRequest("no")
            }
        }
        #expect(store.snapshot.mac["b"] == nil && store.snapshot.keyCount == 1)
    }

    /// With the sealed file, what `mutate` acknowledged is in the file when it returns: a new
    /// reader (a restarted node) unseals it with the RPC key.
    @Test func anAcknowledgedChangeIsInTheSealedFile() throws {
        let dir = "/tmp/vssm-nodestore-\(getpid())-\(Monotonic.ns())"
        mkdir(dir, 0o700)
        defer { _ = system("rm -rf '\(dir)'") }
        let rpcKey = try PrivateKey.generateEC(.p256)
        let store = NodeStore(maxStateBytes: 1 << 20, audit: AuditLog(echo: false), metrics: ServiceMetrics(knownRoutes: []))
        store.sealed.withLock { $0 = try? SealedStateFile(directory: dir, rpcKey: rpcKey) }
        for i in 0..<3 { try store.mutate { $0.mac["k\(i)"] = NodeStoreTests.key("k\(i)") } }
        let file = try #require(try SealedStateFile(directory: dir, rpcKey: rpcKey).load())
        let decoded = try StateCodec.decode(file.plaintext, allowExtensions: true)
        #expect(Set(decoded.state.mac.keys) == ["k0", "k1", "k2"])
        #expect(store.persistLock.withLock { $0 } == 3, "one sealed generation per change")
    }
}
