import Glibc
public import VSSMCrypto
import VSSMSync
public import VSSMWire

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

    public static let schema = MessageSchema(
        "RPCKeyShare",
        [
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
            (1...count).contains(index), !data.isEmpty, data.count <= 16 << 10
        else {
            throw .badRequest("share fields out of range")
        }
        guard r.string("check") == check else { throw .badRequest("share \(index) (\(label)) is damaged: its checksum does not match") }
    }

    /// Splits `rpcKey` (PKCS#8 DER) for the certificate `certificateDER`.
    public static func split(
        rpcKey: [UInt8], certificateDER: [UInt8], threshold: Int, count: Int, labels: [String]
    ) throws(CryptoError) -> [RPCKeyShare] {
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
/// must be for this node's RPC certificate. Shares arrive without authentication, so a made-up one
/// must not block a ceremony: shares are kept per split (a share of another split waits beside, it
/// does not refuse the real ones) and several per index (a forged share with a real index does not
/// shut out the real one); once a split has the threshold of indices, the combinations are tried
/// until one gives the RPC key (`accept`). Kept in memory only, each for at most `maxAgeMs`;
/// bounded in number (splits, candidates per index) and in the combinations tried.
final class ShareCollector: Sendable {
    static let maxAgeMs: Int64 = 15 * 60 * 1000
    static let maxSplits = 8
    static let maxPerIndex = 4
    static let maxTries = 256
    private struct Held {
        var share: RPCKeyShare
        var at: Int64
    }
    private let pending = Locked<[String: [Held]]>([:])

    /// Adds a share; returns the key when a combination gives one `accept` takes (the caller
    /// bootstraps with it), else how many indices of how many this share's split has.
    func add(
        _ share: RPCKeyShare, certificateSHA256: String,
        accept: ([UInt8]) -> Bool
    ) throws(ServiceError) -> (received: Int, threshold: Int, key: [UInt8]?) {
        guard share.certificateSHA256 == certificateSHA256 else {
            throw .badRequest("share \(share.index) (\(share.label)) is for another RPC certificate")
        }
        return try pending.withLock { (all: inout [String: [Held]]) throws(ServiceError) in
            let now = Monotonic.ms()
            for (set, held) in all {
                let fresh = held.filter { now - $0.at <= ShareCollector.maxAgeMs }
                all[set] = fresh.isEmpty ? nil : fresh
            }
            var held = all[share.set] ?? []
            if held.isEmpty && all.count >= ShareCollector.maxSplits {
                throw .unavailable(
                    "shares of \(all.count) splits are waiting already; try again in \(ShareCollector.maxAgeMs / 60_000) minutes")
            }
            if held.contains(where: { $0.share == share }) {
                throw .badRequest("share \(share.index) (\(share.label)) was already received")
            }
            guard held.filter({ $0.share.index == share.index }).count < ShareCollector.maxPerIndex else {
                throw .badRequest("\(ShareCollector.maxPerIndex) different shares with index \(share.index) were received already")
            }
            held.append(Held(share: share, at: now))
            all[share.set] = held
            let byIndex = Dictionary(grouping: held.map(\.share).filter { $0.threshold == share.threshold }, by: \.index)
            let indices = byIndex.keys.sorted()
            guard indices.count >= share.threshold else { return (indices.count, share.threshold, nil) }
            // Every choice of `threshold` indices and of one candidate for each, until one works.
            var tries = 0
            var found: [UInt8]?
            func choose(_ start: Int, _ picked: [RPCKeyShare]) {
                if found != nil || tries >= ShareCollector.maxTries { return }
                if picked.count == share.threshold {
                    tries += 1
                    let parts = picked.map { (x: UInt8(clamping: $0.index), y: $0.data) }
                    if var key = try? Shamir.combine(parts) {
                        if accept(key) { found = key } else { zeroize(&key) }
                    }
                    return
                }
                guard start < indices.count else { return }
                for i in start..<indices.count {
                    for candidate in byIndex[indices[i]] ?? [] { choose(i + 1, picked + [candidate]) }
                }
            }
            choose(0, [])
            if let found {
                all = [:]
                return (indices.count, share.threshold, found)
            }
            throw .badRequest(
                """
                the \(indices.count) shares of split \(share.set) received do not give the RPC key (a wrong or made-up share \
                may be among them); they are kept: send the other shares
                """)
        }
    }
}
