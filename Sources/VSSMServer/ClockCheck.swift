import VSSMSync

/// Compares this node's clock with the ones it talks to: etcd's members and its peers, through the
/// `Date` header of their answers. Keys and tombstones carry wall-clock times, and a node whose
/// clock is off orders them wrongly against the rest: minutes fast, its deletion outranks a key
/// made later on another node (an acknowledged key is dropped), and its new key survives a later
/// deletion elsewhere. Beyond `boundMs` this node is out of step: it refuses the changes that stamp
/// a time (`KeyServiceNode.stampMillis`) until the clocks agree again, and says so in its log and
/// in `/metrics`.
///
/// Reference: etcd when the node uses it (every node then compares with the same clock); else the
/// peers, and the node is out of step when more than half of those heard from in the last
/// 15 minutes are beyond the bound (with one peer, both of the pair stop stamping: neither can
/// tell which clock is right).
final class ClockCheck: Sendable {
    let boundMs: Int64
    static let recentMs: Int64 = 15 * 60 * 1000
    static let etcdSource = "etcd"

    /// What one answer says: the offset of the other clock from ours lies in [low, high] (ms).
    struct Sample: Equatable {
        var lowMs: Int64
        var highMs: Int64
        var atMonotonicMs: Int64
        var estimateMs: Int64 { lowMs / 2 + highMs / 2 }
    }
    private let samples = Locked<[String: Sample]>([:])
    private let reported = Locked<String?>(nil)

    /// `boundSeconds` 0: never out of step (the check is off).
    init(boundSeconds: Int) { boundMs = Int64(boundSeconds) * 1000 }

    /// An answer from `source` whose `Date` was `dateSeconds`, asked at `sentMs` and received at
    /// `receivedMs` (this node's wall clock). The other clock read `dateSeconds` (truncated to the
    /// second) at some moment between the two.
    func observe(source: String, dateSeconds: Int64, sentMs: Int64, receivedMs: Int64, nowMonotonicMs: Int64 = Monotonic.ms()) {
        guard dateSeconds > 0, receivedMs >= sentMs else { return }
        let low = dateSeconds &* 1000 &- receivedMs
        let high = dateSeconds &* 1000 &+ 999 &- sentMs
        samples.withLock { $0[source] = Sample(lowMs: low, highMs: high, atMonotonicMs: nowMonotonicMs) }
    }

    /// Whether `s` is certainly beyond the bound (the whole interval outside it).
    func beyond(_ s: Sample) -> Bool { boundMs > 0 && (s.lowMs > boundMs || s.highMs < -boundMs) }

    /// nil: in step; else why not, in words.
    func outOfStep(nowMonotonicMs: Int64 = Monotonic.ms()) -> String? {
        guard boundMs > 0 else { return nil }
        let recent = samples.withLock { $0 }.filter { nowMonotonicMs - $0.value.atMonotonicMs <= ClockCheck.recentMs }
        func describe(_ source: String, _ s: Sample) -> String {
            let seconds = Double(s.estimateMs) / 1000
            let way = seconds > 0 ? "ahead of" : "behind"
            return "\(source)'s clock is about \(Int(abs(seconds).rounded())) s \(way) this node's"
        }
        if let e = recent[ClockCheck.etcdSource] {
            return beyond(e) ? describe("the etcd member", e) + " (at most \(boundMs / 1000) s, maxClockSkewSeconds)" : nil
        }
        let off = recent.filter { beyond($0.value) }.sorted { $0.key < $1.key }
        guard !off.isEmpty, off.count * 2 > recent.count else { return nil }
        return off.map { describe("peer " + $0.key, $0.value) }.joined(separator: "; ")
            + " (at most \(boundMs / 1000) s, maxClockSkewSeconds; \(off.count) of \(recent.count) peers heard from)"
    }

    /// The largest offset estimate among recent samples, in seconds (for `/metrics`).
    func largestOffsetSeconds(nowMonotonicMs: Int64 = Monotonic.ms()) -> Double {
        let recent = samples.withLock { $0 }.values.filter { nowMonotonicMs - $0.atMonotonicMs <= ClockCheck.recentMs }
        return recent.map { Double($0.estimateMs) / 1000 }.max(by: { abs($0) < abs($1) }) ?? 0
    }

    enum Verdict: Equatable {
        case inStep
        /// Why: which clock, by how much.
        case outOfStep(String)
    }

    /// The verdict when it changed since it was last reported; nil: no change.
    func changedVerdict() -> Verdict? {
        let now = outOfStep()
        return reported.withLock { r in
            guard (r == nil) != (now == nil) else { return nil }
            r = now
            return now.map { .outOfStep($0) } ?? .inStep
        }
    }
}
