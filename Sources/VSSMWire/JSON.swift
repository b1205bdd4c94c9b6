/// A JSON value as jsonpb sees it. Numbers keep their source text so that int64 values are exact.
/// Objects keep member order (output order is the message's field order; on input a duplicate key
/// means the last one wins, as in Go's decoder).
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// Value of a member of an object (last occurrence), nil if absent or not an object.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.last(where: { $0.0 == key })?.1
    }
}

/// Errors of the JSON layer. Messages follow Go's encoding/json wording where the original VSSM
/// returned them to clients (`EOF`, `unexpected EOF`, `invalid character ...`).
public struct JSONError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// JSON parser over UTF-8 bytes. Decodes the first value and ignores anything after it, as the
/// original's `jsonpb.Unmarshal` (a `json.Decoder`) does. Nesting is limited so hostile input cannot
/// exhaust the stack.
public struct JSONParser {
    private let bytes: [UInt8]
    private var pos = 0
    private let maxDepth = 64
    /// Configuration files only (`parseLocated`): the byte offset of every member's key by its path
    /// (`limits.maxBodyBytes`, `slots[0].label`), and the path of the value being parsed.
    private var record = false
    private var path: [String] = []
    private var keyOffsets: [String: Int] = [:]
    private var duplicate: (path: String, offset: Int)?

    public static func parse(_ bytes: [UInt8]) throws(JSONError) -> JSONValue {
        var p = JSONParser(bytes: bytes)
        p.skipWhitespace()
        if p.pos >= p.bytes.count { throw JSONError("EOF") }
        return try p.parseValue(depth: 0)
    }

    public static func parse(_ string: String) throws(JSONError) -> JSONValue {
        try parse(Array(string.utf8))
    }

    /// A whole configuration file: one value and nothing after it, no member twice in an object.
    /// Errors say where (`line 3, column 14: invalid character ...`); the answer maps each member's
    /// path to the offset of its key, for messages about members (`JSONParser.lineColumn`).
    public static func parseLocated(_ bytes: [UInt8]) throws(JSONError) -> (value: JSONValue, keys: [String: Int]) {
        var p = JSONParser(bytes: bytes)
        p.record = true
        func located(_ e: JSONError, _ offset: Int) -> JSONError {
            let (line, column) = lineColumn(bytes, offset)
            return JSONError("line \(line), column \(column): \(e.message)")
        }
        p.skipWhitespace()
        if p.pos >= p.bytes.count { throw JSONError("the file is empty") }
        let value: JSONValue
        do { value = try p.parseValue(depth: 0) } catch { throw located(error, p.pos) }
        if let d = p.duplicate { throw located(JSONError("\(d.path) appears twice"), d.offset) }
        p.skipWhitespace()
        if p.pos < p.bytes.count { throw located(JSONError("unexpected \(p.describe(p.bytes[p.pos])) after the end of the value"), p.pos) }
        return (value, p.keyOffsets)
    }

    /// 1-based line and column (in characters) of a byte offset.
    public static func lineColumn(_ bytes: [UInt8], _ offset: Int) -> (Int, Int) {
        var line = 1, column = 1, i = 0
        let end = min(max(offset, 0), bytes.count)
        while i < end {
            if bytes[i] == 0x0A { line += 1; column = 1 } else if bytes[i] & 0xC0 != 0x80 { column += 1 }
            i += 1
        }
        return (line, column)
    }

    private var currentPath: String {
        var out = ""
        for part in path { out += part.hasPrefix("[") || out.isEmpty ? part : "." + part }
        return out
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private mutating func skipWhitespace() {
        while pos < bytes.count, bytes[pos] == 0x20 || bytes[pos] == 0x0A || bytes[pos] == 0x0D || bytes[pos] == 0x09 {
            pos += 1
        }
    }

    private func describe(_ b: UInt8) -> String {
        if b == UInt8(ascii: "'") { return "'\\''" }
        if b == UInt8(ascii: "\"") { return "'\"'" }
        if b >= 0x20 && b < 0x7F { return "'\(Character(Unicode.Scalar(b)))'" }
        return "'\\x\(String(b, radix: 16))'"
    }

    private func unexpected(_ context: String) -> JSONError {
        if pos >= bytes.count { return JSONError("unexpected EOF") }
        return JSONError("invalid character \(describe(bytes[pos])) \(context)")
    }

    private mutating func parseValue(depth: Int) throws(JSONError) -> JSONValue {
        guard depth < maxDepth else { throw JSONError("exceeded max depth") }
        skipWhitespace()
        guard pos < bytes.count else { throw JSONError("unexpected EOF") }
        switch bytes[pos] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth)
        case UInt8(ascii: "["): return try parseArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw unexpected("looking for beginning of value")
        }
    }

    private mutating func literal(_ word: String) throws(JSONError) {
        for c in word.utf8 {
            guard pos < bytes.count else { throw JSONError("unexpected EOF") }
            guard bytes[pos] == c else { throw unexpected("in literal \(word) (expecting '\(Character(Unicode.Scalar(c)))')") }
            pos += 1
        }
    }

    private mutating func parseObject(depth: Int) throws(JSONError) -> JSONValue {
        pos += 1
        var members: [(String, JSONValue)] = []
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard pos < bytes.count else { throw JSONError("unexpected EOF") }
            guard bytes[pos] == UInt8(ascii: "\"") else { throw unexpected("looking for beginning of object key string") }
            let keyStart = pos
            let key = try parseString()
            if record {
                path.append(key)
                let full = currentPath
                if keyOffsets[full] != nil, duplicate == nil { duplicate = (full, keyStart) }
                keyOffsets[full] = keyStart
            }
            defer { if record { path.removeLast() } }
            skipWhitespace()
            guard pos < bytes.count else { throw JSONError("unexpected EOF") }
            guard bytes[pos] == UInt8(ascii: ":") else { throw unexpected("after object key") }
            pos += 1
            let value = try parseValue(depth: depth + 1)
            members.append((key, value))
            skipWhitespace()
            guard pos < bytes.count else { throw JSONError("unexpected EOF") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
            throw unexpected("after object key:value pair")
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONError) -> JSONValue {
        pos += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
        while true {
            if record { path.append("[\(items.count)]") }
            defer { if record { path.removeLast() } }
            items.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            guard pos < bytes.count else { throw JSONError("unexpected EOF") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
            throw unexpected("after array element")
        }
    }

    private mutating func parseNumber() throws(JSONError) -> String {
        let start = pos
        if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
        guard pos < bytes.count else { throw JSONError("unexpected EOF") }
        guard isDigit(bytes[pos]) else { throw unexpected("in numeric literal") }
        if bytes[pos] == UInt8(ascii: "0") { pos += 1 } else { while pos < bytes.count, isDigit(bytes[pos]) { pos += 1 } }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
            pos += 1
            guard pos < bytes.count, isDigit(bytes[pos]) else { throw unexpected("after decimal point in numeric literal") }
            while pos < bytes.count, isDigit(bytes[pos]) { pos += 1 }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
            pos += 1
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            guard pos < bytes.count, isDigit(bytes[pos]) else { throw unexpected("in exponent of numeric literal") }
            while pos < bytes.count, isDigit(bytes[pos]) { pos += 1 }
        }
        return String(decoding: bytes[start..<pos], as: UTF8.self)
    }

    private mutating func hex4() throws(JSONError) -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard pos < bytes.count else { throw JSONError("unexpected EOF") }
            let b = bytes[pos]
            let d: UInt32
            switch b {
            case 0x30...0x39: d = UInt32(b - 0x30)
            case 0x41...0x46: d = UInt32(b - 0x41 + 10)
            case 0x61...0x66: d = UInt32(b - 0x61 + 10)
            default: throw unexpected("in \\u hexadecimal character escape")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }

    private mutating func parseString() throws(JSONError) -> String {
        pos += 1  // opening quote
        var out: [UInt8] = []
        while true {
            guard pos < bytes.count else { throw JSONError("unexpected EOF") }
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") { pos += 1; break }
            if b < 0x20 { throw unexpected("in string literal") }
            if b != UInt8(ascii: "\\") { out.append(b); pos += 1; continue }
            pos += 1
            guard pos < bytes.count else { throw JSONError("unexpected EOF") }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    // High surrogate: combine with a following \uDC00..\uDFFF, else U+FFFD (Go's rule).
                    let save = pos
                    if pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") {
                        pos += 2
                        let low = try hex4()
                        if low >= 0xDC00 && low < 0xE000 {
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            pos = save; scalar = 0xFFFD
                        }
                    } else {
                        scalar = 0xFFFD
                    }
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    scalar = 0xFFFD
                }
                let s = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                out.append(contentsOf: Array(String(Character(s)).utf8))
            default:
                pos -= 1
                throw unexpected("in string escape code")
            }
        }
        // Invalid UTF-8 becomes U+FFFD, as Go does.
        return String(decoding: out, as: UTF8.self)
    }
}

/// Serialiser producing the exact bytes Go's jsonpb (via encoding/json string quoting) produces:
/// no whitespace, `<`, `>`, `&`, U+2028 and U+2029 escaped as \u00XX/\u20XX.
public enum JSONWriter {
    public static func serialize(_ value: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(value, into: &out)
        return out
    }

    public static func string(_ value: JSONValue) -> String {
        String(decoding: serialize(value), as: UTF8.self)
    }

    static func write(_ value: JSONValue, into out: inout [UInt8]) {
        switch value {
        case .null: out.append(contentsOf: Array("null".utf8))
        case .bool(let b): out.append(contentsOf: Array((b ? "true" : "false").utf8))
        case .number(let n): out.append(contentsOf: Array(n.utf8))
        case .string(let s): writeString(s, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                write(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, (k, v)) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                writeString(k, into: &out)
                out.append(UInt8(ascii: ":"))
                write(v, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    public static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(0x22)
        var s = s
        s.withUTF8 { u in
            // Runs of bytes that need no escape are copied at once (base64 fields are one run).
            var runStart = 0
            var i = 0
            func escape(_ v: UInt32) {
                out.append(0x5C); out.append(UInt8(ascii: "u"))
                out.append(hexDigits[Int((v >> 12) & 0xF)]); out.append(hexDigits[Int((v >> 8) & 0xF)])
                out.append(hexDigits[Int((v >> 4) & 0xF)]); out.append(hexDigits[Int(v & 0xF)])
            }
            while i < u.count {
                let b = u[i]
                var width = 1
                var replacement: UInt8? = nil
                var unicode: UInt32? = nil
                switch b {
                case 0x22: replacement = 0x22
                case 0x5C: replacement = 0x5C
                case 0x0A: replacement = UInt8(ascii: "n")
                case 0x0D: replacement = UInt8(ascii: "r")
                case 0x09: replacement = UInt8(ascii: "t")
                case 0..<0x20, 0x3C, 0x3E, 0x26: unicode = UInt32(b)
                // U+2028 and U+2029 (E2 80 A8/A9) are escaped as Go does.
                case 0xE2 where i + 2 < u.count && u[i + 1] == 0x80 && (u[i + 2] == 0xA8 || u[i + 2] == 0xA9):
                    unicode = u[i + 2] == 0xA8 ? 0x2028 : 0x2029
                    width = 3
                default:
                    i += 1
                    continue
                }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: u[runStart..<i]))
                if let r = replacement { out.append(0x5C); out.append(r) }
                if let v = unicode { escape(v) }
                i += width
                runStart = i
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: u[runStart..<u.count]))
        }
        out.append(0x22)
    }
}
