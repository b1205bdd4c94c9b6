import Glibc
import VSSMSync
import VSSMWire

/// The in-memory log ring that `getlogs` returns (10,000 entries, oldest first, as the original),
/// also echoed to stderr. Lines use the original's format:
/// `[<RFC 3339 time>] <dir>/<file>.swift:<line>, <LEVEL>: <message>`. Audit lines name the client
/// certificate subject, endpoint, key and outcome. Never pass key bytes or passwords here.
public final class AuditLog: Sendable {
    public enum Level: String, Sendable { case debug = "DEBUG", info = "INFO", error = "ERROR" }

    /// What standard output and standard error carry: the original's lines, or one JSON object per
    /// line (`vssm serve --log-format json`) for log collectors. The ring keeps the original's lines.
    public enum Format: String, Sendable { case text, json }

    private let ring: Locked<(lines: [String], next: Int, full: Bool)>
    private let capacity: Int
    private let echo: Bool
    public let format: Format

    public init(capacity: Int = 10_000, echo: Bool = true, format: Format = .text) {
        self.capacity = capacity
        self.echo = echo
        self.format = format
        ring = Locked((lines: [], next: 0, full: false))
    }

    /// The last second formatted: every request writes a record, most within the same second.
    private static let lastStamp = Locked<(second: time_t, text: String)>((-1, ""))

    public static func timestamp() -> String {
        var now = time(nil)
        if let cached = lastStamp.withLock({ $0.second == now ? $0.text : nil }) { return cached }
        let text = format(&now)
        lastStamp.withLock { $0 = (now, text) }
        return text
    }

    private static func format(_ now: inout time_t) -> String {
        var tm = tm()
        localtime_r(&now, &tm)
        var buf = [CChar](repeating: 0, count: 64)
        let n = strftime(&buf, buf.count, "%Y-%m-%dT%H:%M:%S%z", &tm)
        var s = String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // RFC 3339: +0000 -> Z, +0100 -> +01:00
        if s.hasSuffix("+0000") {
            s = String(s.dropLast(5)) + "Z"
        } else if s.count > 5 {
            let tz = s.suffix(5)
            s = String(s.dropLast(5)) + tz.prefix(3) + ":" + tz.suffix(2)
        }
        return s
    }

    /// `toOutput: false` keeps a line out of standard output (the ring still has it): a request's
    /// line when the audit trail already holds its record.
    public func log(
        _ level: Level, _ message: String, toOutput: Bool = true, fields: [(String, String)] = [],
        file: String = #fileID, line: Int = #line
    ) {
        // `#fileID` is already `Module/File.swift`; anything longer keeps its last two parts.
        let location =
            file.utf8.count(where: { $0 == UInt8(ascii: "/") }) <= 1
            ? file : file.split(separator: "/").suffix(2).joined(separator: "/")
        let text = "[\(AuditLog.timestamp())] \(location):\(line), \(level.rawValue): \(AuditLog.escaped(message))"
        if echo && toOutput {
            // Errors go to standard error (journald and service managers tell the streams apart),
            // the rest to standard output.
            var out = Array((format == .json ? AuditLog.jsonLine(level, message, location, line, fields) : text).utf8)
            out.append(10)
            _ = out.withUnsafeBufferPointer { Glibc.write(level == .error ? 2 : 1, $0.baseAddress, $0.count) }
        }
        guard level != .debug else { return }
        ring.withLock { r in
            if r.lines.count < capacity {
                r.lines.append(text)
            } else {
                r.lines[r.next] = text
                r.full = true
            }
            r.next = (r.next + 1) % capacity
        }
    }

    /// `{"time":…,"level":"info","source":"File.swift:12","message":…, fields…}` (JSON escaping:
    /// no control character or line break survives).
    static func jsonLine(_ level: Level, _ message: String, _ location: String, _ line: Int, _ fields: [(String, String)]) -> String {
        var members: [(String, JSONValue)] = [
            ("time", .string(timestamp())), ("level", .string(level.rawValue.lowercased())),
            ("source", .string("\(location):\(line)")), ("message", .string(message)),
        ]
        for (k, v) in fields {
            if k == "status", Int(v) != nil {
                members.append((k, .number(v)))
            } else if k == "duration_ms", Double(v) != nil {
                members.append((k, .number(v)))
            } else {
                members.append((k, .string(v)))
            }
        }
        return JSONWriter.string(.object(members))
    }

    /// Control characters (C0, DEL, C1), bidirectional formatting characters (embeddings,
    /// overrides, isolates, marks) and the Unicode line and paragraph separators: never written raw
    /// into a log line or an audit record.
    static func mustEscape(_ sc: Unicode.Scalar) -> Bool {
        switch sc.value {
        case 0..<0x20, 0x7F...0x9F, 0x061C, 0x200E, 0x200F, 0x2028...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }

    /// One record is one line: control characters (a newline in a label or key name would start a
    /// forged record) are written as escapes, and a backslash as two.
    public static func escaped(_ m: String) -> String {
        guard m.unicodeScalars.contains(where: { $0 == "\\" || mustEscape($0) }) else { return m }
        var out = ""
        for sc in m.unicodeScalars {
            switch sc {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\\": out += "\\\\"
            case _ where mustEscape(sc):
                out += "\\u{" + String(sc.value, radix: 16) + "}"
            default: out.unicodeScalars.append(sc)
            }
        }
        return out
    }

    public func info(_ m: String, file: String = #fileID, line: Int = #line) { log(.info, m, file: file, line: line) }
    public func error(_ m: String, file: String = #fileID, line: Int = #line) { log(.error, m, file: file, line: line) }

    public var lines: [String] {
        ring.withLock { r in
            r.full ? Array(r.lines[r.next...] + r.lines[..<r.next]) : r.lines
        }
    }
}
