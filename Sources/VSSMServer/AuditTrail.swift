import Glibc
import VSSMCrypto
import VSSMSync
import VSSMWire

/// The per-request audit records of a running node with a state directory: `audit.jsonl` there,
/// one JSON object a line, written before the answer leaves. Each record names the time, the
/// principal (the verified client certificate's subject and SHA-256 fingerprint), the route, key,
/// mechanism, HTTP status and request ID, and carries `prev`, the `mac` of the record before it;
/// `mac` is HMAC-SHA-256 of the record (without `mac`) under a key derived from the RPC private
/// key. An edited, removed, inserted or reordered record breaks the chain, and only a holder of the
/// bootstrap secret can forge a new one (`verify`). At `rotateBytes` the file becomes
/// `audit.jsonl.1` (older ones shift up to `.8`, the oldest is dropped) and the chain goes on
/// across files. Records of the bootstrapping phase (before the RPC key is known) go to the log
/// ring and standard output only.
final class AuditTrail: Sendable {
    struct Record: Sendable {
        var time: String
        var principal: String
        var fingerprint: String
        var route: String
        var key: String
        var mechanism: String
        var status: Int
        var requestID: String
        /// The caller's namespace once principals exist (empty before: the field is left out).
        var namespace = ""
    }

    static let fileName = "audit.jsonl"
    static let keptFiles = 8
    let directory: String
    let rotateBytes: Int
    private let key: HMACKey
    private struct Tail {
        var fd: Int32
        var seq: UInt64
        var mac: String
        var size: Int
        /// The oldest kept record's seq (what the anchor says the trail starts with).
        var first: UInt64
        var anchorFD: Int32
    }
    private let tail: Locked<Tail>
    /// What opening the trail found wrong (the node logs it): records cut off or removed while it
    /// was stopped, or a missing anchor.
    let startupProblem: String?

    var path: String { directory + "/" + AuditTrail.fileName }
    var anchorPath: String { directory + "/audit.anchor" }

    // MARK: - Anchor

    /// `audit.anchor`: the newest record's seq and MAC and the oldest kept record's seq, MACed under
    /// the chain's key, rewritten in place (one pwrite of a fixed-size line) after every record. It
    /// makes visible what the chain alone cannot: records cut from the end, a trail emptied, the
    /// oldest records of an unrotated trail deleted. (Trail and anchor replaced together by an
    /// older copy of both is still possible for someone with the directory: keep it the service
    /// user's, and send the trail to syslog where that matters.)
    struct Anchor: Equatable {
        var first: UInt64
        var seq: UInt64
        var mac: String
    }
    static let anchorSize = 256

    func anchorLine(_ a: Anchor) -> [UInt8] {
        let body = "\(a.first) \(a.seq) \(a.mac)"
        let check = Hex.encode(key.mac(Array(("anchor " + body).utf8)))
        var line = Array("{\"first\":\(a.first),\"seq\":\(a.seq),\"mac\":\"\(a.mac)\",\"check\":\"\(check)\"}".utf8)
        line += [UInt8](repeating: 32, count: max(0, AuditTrail.anchorSize - 1 - line.count))
        line.append(10)
        return line
    }

    /// nil: no anchor file; `.failure`: one that does not check out.
    static func readAnchor(_ path: String, key: HMACKey) -> Result<Anchor, ServiceError>? {
        guard access(path, F_OK) == 0 else { return nil }
        guard let bytes = try? FileUtil.readFile(path, limit: 4096), let v = try? JSONParser.parse(bytes),
            case .number(let f)? = v["first"], let first = UInt64(f), case .number(let s)? = v["seq"], let seq = UInt64(s),
            case .string(let mac)? = v["mac"], case .string(let check)? = v["check"],
            Hex.encode(key.mac(Array("anchor \(first) \(seq) \(mac)".utf8))) == check
        else {
            return .failure(ServiceError(500, "the audit anchor \(path) was changed or is damaged"))
        }
        return .success(Anchor(first: first, seq: seq, mac: mac))
    }

    /// The seq of the first record in a file.
    static func firstSeq(in path: String) -> UInt64? {
        guard let bytes = try? FileUtil.readFile(path, limit: 1 << 30) else { return nil }
        for raw in bytes.split(separator: 10) {
            if let v = try? JSONParser.parse(Array(raw)), case .number(let s)? = v["seq"], let seq = UInt64(s) { return seq }
        }
        return nil
    }

    /// Opens (or starts) the trail in `directory`, continuing the chain of the last record there.
    init(directory: String, rpcKey: PrivateKey, rotateBytes: Int = 64 << 20) throws(ServiceError) {
        self.directory = directory
        self.rotateBytes = max(rotateBytes, 4096)
        do { key = try HMACKey(.sha256, key: try rpcKey.derivedKey(salt: "vssm audit chain", info: "audit v1")) } catch {
            throw .internalError(error.message)
        }
        let path = directory + "/" + AuditTrail.fileName
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .internalError("cannot open \(path): \(String(cString: strerror(errno)))") }
        var last = AuditTrail.lastRecord(in: path) ?? (0, "", 0, false)
        if last.cutShort {
            // A record cut short by a crash: end its line; verification reports it.
            _ = write(fd, "\n", 1)
            last.size += 1
        }
        if last.seq == 0, let rotated = AuditTrail.lastRecord(in: path + ".1") {
            (last.seq, last.mac) = (rotated.seq, rotated.mac)
        }
        var oldest: UInt64? = nil
        for i in stride(from: AuditTrail.keptFiles, through: 1, by: -1) where oldest == nil {
            oldest = AuditTrail.firstSeq(in: path + ".\(i)")
        }
        oldest = oldest ?? AuditTrail.firstSeq(in: path)
        let anchorPath = directory + "/audit.anchor"
        var first = oldest ?? last.seq + 1
        var problem: String? = nil
        switch AuditTrail.readAnchor(anchorPath, key: key) {
        case .success(let a)?:
            if a.seq > last.seq {
                // Records were cut off (or the file emptied) while the node was stopped: the chain
                // goes on from the anchor, so the gap stays a break that verification reports.
                problem =
                    "the audit trail ends at seq \(last.seq) but its anchor says seq \(a.seq) was written: records \(last.seq + 1) to \(a.seq) were removed while the node was stopped"
                (last.seq, last.mac) = (a.seq, a.mac)
            } else if a.seq == last.seq && a.mac != last.mac {
                problem = "the newest audit record (seq \(a.seq)) is not the one the anchor names: it was replaced"
            }
            if let oldest, oldest > a.first {
                problem = (problem.map { $0 + "; " } ?? "") + "the oldest audit records (seq \(a.first) to \(oldest - 1)) were removed"
            }
            first = min(first, a.first)
        case .failure(let e)?:
            problem = e.message
        case nil:
            if last.seq > 0 {
                problem = "the audit anchor \(anchorPath) is missing (deleted?); a new one is written from the trail as it is"
            }
        }
        startupProblem = problem
        let anchorFD = open(anchorPath, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        tail = Locked(Tail(fd: fd, seq: last.seq, mac: last.mac, size: last.size, first: first, anchorFD: anchorFD))
        if problem == nil || last.seq == 0 { tail.withLock { t in writeAnchor(t) } }
    }

    deinit {
        tail.withLock {
            close($0.fd); if $0.anchorFD >= 0 { close($0.anchorFD) }
        }
    }

    private func writeAnchor(_ t: Tail) {
        guard t.anchorFD >= 0 else { return }
        let line = anchorLine(Anchor(first: t.first, seq: t.seq, mac: t.mac))
        _ = line.withUnsafeBytes { pwrite(t.anchorFD, $0.baseAddress, $0.count, 0) }
    }

    /// The last `max` bytes of a file and the file's size (a record is far shorter than 64 KiB).
    static func tail(of path: String, max: Int = 64 << 10) -> (bytes: [UInt8], size: Int)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, let size = Int(exactly: st.st_size), size >= 0 else { return nil }
        let start = Swift.max(0, size - max)
        var bytes = [UInt8](repeating: 0, count: size - start)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(start)) }
        guard n == bytes.count else { return nil }
        return (bytes, size)
    }

    /// Seq and mac of the last whole record of a file, the file's size, and whether its last line
    /// lacks its newline (a write cut short by a crash).
    static func lastRecord(in path: String) -> (seq: UInt64, mac: String, size: Int, cutShort: Bool)? {
        guard let (bytes, size) = tail(of: path) else { return nil }
        let cutShort = bytes.last.map { $0 != 10 } ?? false
        var end = bytes.count
        while end > 0 {
            var start = end - 1
            while start > 0 && bytes[start - 1] != 10 { start -= 1 }
            let line = Array(bytes[start..<end]).filter { $0 != 10 }
            if let v = try? JSONParser.parse(line), case .string(let mac)? = v["mac"],
                case .number(let s)? = v["seq"], let seq = UInt64(s)
            {
                return (seq, mac, size, cutShort)
            }
            end = start
        }
        return (0, "", size, cutShort)
    }

    /// The line of a record (without `mac`): the bytes the MAC covers. Written directly (JSON
    /// strings escaped as everywhere else), without a JSON tree: this runs for every request.
    static func body(_ r: Record, seq: UInt64, prev: String) -> [UInt8] {
        var line: [UInt8] = []
        line.reserveCapacity(256 + r.principal.utf8.count + r.key.utf8.count)
        line += Array("{\"seq\":\(seq),\"status\":\(r.status)".utf8)
        for (name, value) in [
            ("time", r.time), ("principal", r.principal), ("fingerprint", r.fingerprint), ("route", r.route),
            ("key", r.key), ("mechanism", r.mechanism), ("namespace", r.namespace), ("request", r.requestID), ("prev", prev),
        ] where !value.isEmpty {
            line.append(UInt8(ascii: ","))
            JSONWriter.writeString(name, into: &line)
            line.append(UInt8(ascii: ":"))
            AuditTrail.writeString(value, into: &line)
        }
        line.append(UInt8(ascii: "}"))
        return line
    }

    /// A JSON string in which every control character (C0, DEL, C1), every bidirectional
    /// formatting character and the Unicode line separators are `\uXXXX` escapes: a record read
    /// as text shows exactly what it holds (a right-to-left override cannot make a key name look
    /// like another).
    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Printable ASCII without quote or backslash (nearly every field of every record) is
        // copied as it is; anything else goes scalar by scalar (this runs for every request:
        // a String and an Array per character cost about 8% of the server's CPU per signature).
        if s.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }) {
            out.append(contentsOf: s.utf8)
        } else {
            for sc in s.unicodeScalars {
                switch sc {
                case "\"": out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
                case "\\": out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
                case _ where AuditLog.mustEscape(sc):
                    let hex = String(sc.value, radix: 16)
                    out += Array(("\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex).utf8)
                default: UTF8.encode(sc) { out.append($0) }
                }
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Appends one record (and rotates first when the file is full). A failed write is reported
    /// to the caller, which logs it: the answer still goes out (the record is in the log ring).
    @discardableResult
    func append(_ r: Record) throws(ServiceError) -> (seq: UInt64, mac: String) {
        try tail.withLock { (t: inout Tail) throws(ServiceError) -> (seq: UInt64, mac: String) in
            let seq = t.seq + 1
            var line = AuditTrail.body(r, seq: seq, prev: t.mac)
            let mac = Hex.encode(key.mac(line))
            line.removeLast()  // "}"
            line += Array(",\"mac\":\"\(mac)\"}\n".utf8)
            if t.size > 0 && t.size + line.count > rotateBytes { try rotate(&t) }
            let n = line.withUnsafeBytes { write(t.fd, $0.baseAddress, $0.count) }
            guard n == line.count else { throw .internalError("audit record not written: \(String(cString: strerror(errno)))") }
            t.seq = seq
            t.mac = mac
            t.size += line.count
            writeAnchor(t)
            return (seq, mac)
        }
    }

    /// The newest record written: its seq and MAC (what `vssm admin logs --verify --head` checks).
    var head: (seq: UInt64, mac: String) { tail.withLock { ($0.seq, $0.mac) } }

    private func rotate(_ t: inout Tail) throws(ServiceError) {
        let base = path
        let dropping = access(base + ".\(AuditTrail.keptFiles)", F_OK) == 0
        unlink(base + ".\(AuditTrail.keptFiles)")
        for i in stride(from: AuditTrail.keptFiles - 1, through: 1, by: -1) { rename(base + ".\(i)", base + ".\(i + 1)") }
        guard rename(base, base + ".1") == 0 else { throw .internalError("cannot rotate \(base): \(String(cString: strerror(errno)))") }
        close(t.fd)
        t.fd = open(base, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard t.fd >= 0 else { throw .internalError("cannot open \(base): \(String(cString: strerror(errno)))") }
        t.size = 0
        // The oldest file went: the trail now starts at the next one's first record.
        if dropping, let first = AuditTrail.firstSeq(in: base + ".\(AuditTrail.keptFiles)") { t.first = first }
    }

    // MARK: - Reading and verifying

    struct Verification: Sendable {
        /// The newest records that `keep` accepted (at most `limit`), oldest first, as parsed.
        var records: [JSONValue] = []
        /// The first break of the chain: where and why; nil when the chain holds.
        var problem: String?
        var checked = 0
        /// The chain's first record: older ones were rotated away (its `prev` cannot be checked).
        var firstSeq: UInt64?
    }

    /// The files of the trail, oldest first.
    var files: [String] {
        var out: [String] = []
        for i in stride(from: AuditTrail.keptFiles, through: 1, by: -1) where access(path + ".\(i)", F_OK) == 0 {
            out.append(path + ".\(i)")
        }
        if access(path, F_OK) == 0 { out.append(path) }
        return out
    }

    /// Reads every file and checks each record's MAC, its `prev` against the record before and
    /// its `seq` (one more than the record before). Keeps only the newest `limit` records `keep`
    /// accepts (memory stays bounded by one file plus `limit` records, whatever the trail's size).
    ///
    /// `expect`: a record the trail must hold, seen outside it (the newest in syslog, or etcd's
    /// anchor): a trail cut or replaced together with its anchor file is found through it.
    func verify(limit: Int = 1000, expect: (seq: UInt64, mac: String?)? = nil, keep: (JSONValue) -> Bool = { _ in true }) -> Verification {
        var v = Verification()
        var expectedSeen = false
        var prevMac: String? = nil
        var prevSeq: UInt64? = nil
        for file in files {
            guard let bytes = try? FileUtil.readFile(file, limit: 1 << 30) else {
                v.problem = v.problem ?? "\(file): cannot be read"
                continue
            }
            var lineNumber = 0
            for raw in bytes.split(separator: 10, omittingEmptySubsequences: false) {
                lineNumber += 1
                if raw.isEmpty { continue }
                let line = Array(raw)
                let at = "\(file.split(separator: "/").last.map(String.init) ?? file) line \(lineNumber)"
                guard let value = try? JSONParser.parse(line), case .string(let mac)? = value["mac"],
                    case .number(let s)? = value["seq"], let seq = UInt64(s),
                    let cut = AuditTrail.withoutMac(line)
                else {
                    v.problem = v.problem ?? "\(at): not an audit record"
                    continue
                }
                // The first record of a new trail has no predecessor (WireWriter omits the empty `prev`).
                let prev: String = if case .string(let p)? = value["prev"] { p } else { "" }
                v.checked += 1
                if limit > 0 && keep(value) {
                    v.records.append(value)
                    if v.records.count > 2 * limit { v.records.removeFirst(v.records.count - limit) }
                }
                if v.problem != nil { continue }
                if Hex.encode(key.mac(cut)) != mac {
                    v.problem = "\(at) (seq \(seq)): the record was changed (its MAC does not match)"
                } else if let p = prevMac, p != prev {
                    v.problem = "\(at) (seq \(seq)): the record before it is missing or was replaced (prev does not match)"
                } else if let ps = prevSeq, seq != ps + 1 {
                    v.problem = "\(at): seq \(seq) follows \(ps)"
                }
                if prevMac == nil { v.firstSeq = seq }
                if let e = expect, e.seq == seq {
                    expectedSeen = true
                    if let m = e.mac, m.lowercased() != mac, v.problem == nil {
                        v.problem = "\(at) (seq \(seq)): not the record seen outside the trail (its MAC differs): the trail was replaced"
                    }
                }
                prevMac = mac
                prevSeq = seq
            }
        }
        if v.records.count > limit { v.records.removeFirst(v.records.count - limit) }
        // The newest records cut off: this process knows what it wrote last.
        let written = tail.withLock { ($0.seq, $0.mac) }
        if v.problem == nil, written.0 > 0, prevMac != written.1 {
            v.problem =
                "records are missing at the end: the newest in the files is seq \(prevSeq ?? 0), the node wrote up to seq \(written.0)"
        }
        if let e = expect, !expectedSeen, v.problem == nil {
            if e.seq > (prevSeq ?? 0) {
                v.problem =
                    "records are missing at the end: the newest in the files is seq \(prevSeq ?? 0), but seq \(e.seq) was seen outside the trail (syslog or etcd)"
            } else if let first = v.firstSeq, e.seq >= first || e.seq == 0 {
                v.problem = "seq \(e.seq), seen outside the trail, is not in it"
            }
        }
        // What the anchor says the trail holds: its first and newest record.
        if v.problem == nil {
            switch AuditTrail.readAnchor(anchorPath, key: key) {
            case .success(let a)?:
                if let first = v.firstSeq, first > a.first {
                    v.problem =
                        "records are missing at the start: the oldest in the files is seq \(first), the anchor says the trail starts at seq \(a.first)"
                } else if (prevSeq ?? 0) < a.seq {
                    v.problem =
                        "records are missing at the end: the newest in the files is seq \(prevSeq ?? 0), the anchor says seq \(a.seq) was written"
                } else if prevSeq == a.seq && prevMac != a.mac {
                    v.problem = "the newest record (seq \(a.seq)) is not the one the anchor names: it was replaced"
                }
            case .failure(let e)?:
                v.problem = e.message
            case nil:
                if v.checked > 0 { v.problem = "the audit anchor \(anchorPath) is missing" }
            }
        }
        return v
    }

    /// The record line without its `,"mac":"…"` member: the bytes its MAC covers.
    static func withoutMac(_ line: [UInt8]) -> [UInt8]? {
        let marker = Array(",\"mac\":\"".utf8)
        guard line.count > marker.count + 66, line.last == UInt8(ascii: "}") else { return nil }
        let start = line.count - 1 - 64 - 1 - marker.count
        guard Array(line[start..<(start + marker.count)]) == marker, line[line.count - 2] == UInt8(ascii: "\"") else { return nil }
        return Array(line[0..<start]) + [UInt8(ascii: "}")]
    }
}

extension AuditTrail {
    /// One record to syslog (authpriv.info), as a line of key=value pairs. Its seq and MAC make
    /// syslog (a collector elsewhere, ideally) a witness of the trail's head: `vssm admin logs
    /// --verify --head SEQ:MAC` with the newest such line finds a trail cut or replaced since.
    static func syslog(_ r: Record, seq: UInt64, mac: String) {
        let line =
            "AUDIT seq=\(seq) mac=\(mac) principal=\"\(r.principal)\" fingerprint=\(r.fingerprint) route=\(r.route) key=\"\(r.key)\" mechanism=\"\(r.mechanism)\" namespace=\"\(r.namespace)\" status=\(r.status) request=\(r.requestID)"
        line.withCString { text in
            withVaList([text]) { vsyslog(LOG_AUTHPRIV | LOG_INFO, "%s", $0) }
        }
    }
}
