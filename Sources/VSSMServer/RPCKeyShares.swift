import Glibc
import VSSMCrypto
import VSSMSync
import VSSMWire

/// One share of a k-of-n split of the RPC private key (`vssm admin split-rpc-key`), as a JSON file
/// an operator keeps: which split it belongs to (`set`, random), its index and label, the threshold
/// and share count, the SHA-256 of the RPC certificate it unlocks, the share bytes, and a checksum
/// over all of that (a mistyped or damaged share is refused on its own, before any combination).
public struct RPCKeyShare: Sendable, Equatable {
    public var set: String
    public var label: String
    public var index: Int
    public var threshold: Int
    public var count: Int
    public var certificateSHA256: String
    public var data: [UInt8]

    public static let schema = MessageSchema("RPCKeyShare", [
        .init("vssmRpcKeyShare", .int64), .init("set", .string), .init("label", .string), .init("index", .int64),
        .init("threshold", .int64), .init("shares", .int64), .init("rpcCertificateSHA256", .string),
        .init("data", .bytes), .init("check", .string),
    ])

    /// Hex SHA-256 over every field but `check`, first 16 hex digits.
    public var check: String {
        let text = "\(set)|\(label)|\(index)|\(threshold)|\(count)|\(certificateSHA256)|" + Base64.encode(data)
        return String(Hex.encode(DigestAlgorithm.sha256.hash(Array(text.utf8))).prefix(16))
    }

    public var json: [UInt8] {
        var w = WireWriter()
        w.int64("vssmRpcKeyShare", 1)
        w.string("set", set)
        w.string("label", label)
        w.int64("index", Int64(index))
        w.int64("threshold", Int64(threshold))
        w.int64("shares", Int64(count))
        w.string("rpcCertificateSHA256", certificateSHA256)
        w.bytes("data", data)
        w.string("check", check)
        return w.bytes + [10]
    }

    public init(set: String, label: String, index: Int, threshold: Int, count: Int, certificateSHA256: String, data: [UInt8]) {
        self.set = set
        self.label = label
        self.index = index
        self.threshold = threshold
        self.count = count
        self.certificateSHA256 = certificateSHA256
        self.data = data
    }

    /// Parses and checks a share (format, ranges, checksum).
    public init(json: [UInt8]) throws(ServiceError) {
        let r: WireObject
        do { r = try WireObject.decode(json, as: RPCKeyShare.schema) } catch { throw .badRequest("not an RPC key share: \(error.message)") }
        guard r.int64("vssmRpcKeyShare") == 1 else { throw .badRequest("not an RPC key share (version 1)") }
        set = r.string("set")
        label = r.string("label")
        index = Int(clamping: r.int64("index"))
        threshold = Int(clamping: r.int64("threshold"))
        count = Int(clamping: r.int64("shares"))
        certificateSHA256 = r.string("rpcCertificateSHA256")
        data = r.bytes("data") ?? []
        guard !set.isEmpty, set.utf8.count <= 64, label.utf8.count <= 256, (2...255).contains(threshold), (threshold...255).contains(count),
              (1...count).contains(index), !data.isEmpty, data.count <= 16 << 10 else {
            throw .badRequest("share fields out of range")
        }
        guard r.string("check") == check else { throw .badRequest("share \(index) (\(label)) is damaged: its checksum does not match") }
    }

    /// Splits `rpcKey` (PKCS#8 DER) for the certificate `certificateDER`.
    public static func split(rpcKey: [UInt8], certificateDER: [UInt8], threshold: Int, count: Int, labels: [String]) throws(CryptoError) -> [RPCKeyShare] {
        let shares = try Shamir.split(rpcKey, threshold: threshold, count: count)
        let set = SecureRandom.hex(8)
        let cert = Hex.encode(DigestAlgorithm.sha256.hash(certificateDER))
        return shares.map { s in
            let i = Int(s.x)
            let label = i <= labels.count ? labels[i - 1] : "share-\(i)-of-\(count)"
            return RPCKeyShare(set: set, label: label, index: i, threshold: threshold, count: count, certificateSHA256: cert, data: s.y)
        }
    }
}

/// Shares received by a bootstrapping node (`ext/bootstrapshare`), one call per operator. They
/// must belong to one split for this node's RPC certificate; at the threshold they are combined and
/// the node bootstraps with the result (which must match the RPC certificate). Shares are kept in
/// memory only, for at most `maxAgeMs` after the first, and dropped after a failed combination.
final class ShareCollector: Sendable {
    static let maxAgeMs: Int64 = 15 * 60 * 1000
    private struct Pending {
        var shares: [Int: RPCKeyShare] = [:]
        var since: Int64 = 0
    }
    private let pending = Locked(Pending())

    /// Adds a share; returns the combined key when the threshold is reached (the caller
    /// bootstraps with it), else how many of how many are in.
    func add(_ share: RPCKeyShare, certificateSHA256: String) throws(ServiceError) -> (received: Int, threshold: Int, key: [UInt8]?) {
        guard share.certificateSHA256 == certificateSHA256 else {
            throw .badRequest("share \(share.index) (\(share.label)) is for another RPC certificate")
        }
        return try pending.withLock { (p: inout Pending) throws(ServiceError) in
            let now = Monotonic.ms()
            if let first = p.shares.values.first, first.set != share.set || now - p.since > ShareCollector.maxAgeMs {
                if now - p.since <= ShareCollector.maxAgeMs {
                    throw .badRequest("share \(share.index) (\(share.label)) belongs to another split than the \(p.shares.count) received")
                }
                p = Pending()
            }
            if p.shares.isEmpty { p.since = now }
            if let existing = p.shares[share.index] {
                if existing == share { throw .badRequest("share \(share.index) (\(share.label)) was already received") }
                throw .badRequest("another share with index \(share.index) was already received")
            }
            p.shares[share.index] = share
            guard p.shares.count >= share.threshold else { return (p.shares.count, share.threshold, nil) }
            let parts = p.shares.values.sorted { $0.index < $1.index }.prefix(share.threshold).map { (x: UInt8($0.index), y: $0.data) }
            let received = p.shares.count
            p = Pending()
            do throws(CryptoError) { return (received, share.threshold, try Shamir.combine(Array(parts))) } catch {
                throw .badRequest("the shares do not combine: \(error.message)")
            }
        }
    }
}
