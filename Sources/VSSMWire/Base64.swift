/// Standard base64 with `=` padding, as Go's `base64.StdEncoding` used by jsonpb for bytes fields.
/// Decoding is strict like Go's: URL-safe characters and missing padding are rejected with the
/// offset of the offending byte; `\r` and `\n` are ignored.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let reverse: [Int8] = {
        var t = [Int8](repeating: -1, count: 256)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = Int8(i) }
        return t
    }()

    public static func encode(_ data: [UInt8]) -> String {
        String(decoding: encodeBytes(data), as: UTF8.self)
    }

    public static func encodeBytes(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity((data.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= data.count {
            let v = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2])
            out.append(alphabet[Int(v >> 18 & 63)]); out.append(alphabet[Int(v >> 12 & 63)])
            out.append(alphabet[Int(v >> 6 & 63)]); out.append(alphabet[Int(v & 63)])
            i += 3
        }
        let rest = data.count - i
        if rest == 1 {
            let v = UInt32(data[i]) << 16
            out.append(alphabet[Int(v >> 18 & 63)]); out.append(alphabet[Int(v >> 12 & 63)])
            out.append(UInt8(ascii: "=")); out.append(UInt8(ascii: "="))
        } else if rest == 2 {
            let v = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8
            out.append(alphabet[Int(v >> 18 & 63)]); out.append(alphabet[Int(v >> 12 & 63)])
            out.append(alphabet[Int(v >> 6 & 63)]); out.append(UInt8(ascii: "="))
        }
        return out
    }

    /// Decodes; on failure the error text is Go's (`illegal base64 data at input byte N`).
    public static func decode(_ text: String) throws(JSONError) -> [UInt8] {
        var out: [UInt8] = []
        if let at = run(text, into: &out, emit: true) { throw JSONError("illegal base64 data at input byte \(at)") }
        return out
    }

    /// Checks without producing the bytes (a request's fields are checked, then read once).
    public static func validate(_ text: String) throws(JSONError) {
        var none: [UInt8] = []
        if let at = run(text, into: &none, emit: false) { throw JSONError("illegal base64 data at input byte \(at)") }
    }

    /// The decoder: nil, or the offset Go would report. No allocation besides `out`.
    private static func run(_ text: String, into out: inout [UInt8], emit: Bool) -> Int? {
        var text = text
        return text.withUTF8 { src -> Int? in
            if emit { out.reserveCapacity(src.count / 4 * 3) }
            var acc = 0  // sextets of the current group
            var count = 0
            var groupStart = 0
            var i = 0
            var finished = false
            while i < src.count {
                let c = src[i]
                if c == 0x0A || c == 0x0D { i += 1; continue }
                if finished { return i }
                if count == 0 { groupStart = i }
                if c == UInt8(ascii: "=") {
                    // Padding is only valid as the 3rd/4th char of the final group.
                    switch count {
                    case 2:
                        // expect a second '=' (skipping newlines)
                        var j = i + 1
                        while j < src.count, src[j] == 0x0A || src[j] == 0x0D { j += 1 }
                        guard j < src.count else { return src.count }
                        guard src[j] == UInt8(ascii: "=") else { return j }
                        if emit { out.append(UInt8(acc >> 4 & 0xFF)) }
                        count = 0
                        i = j + 1
                        finished = true
                        continue
                    case 3:
                        if emit { out.append(UInt8(acc >> 10 & 0xFF)); out.append(UInt8(acc >> 2 & 0xFF)) }
                        count = 0
                        i += 1
                        finished = true
                        continue
                    default:
                        return i
                    }
                }
                let v = reverse[Int(c)]
                if v < 0 { return i }
                acc = acc << 6 | Int(v)
                count += 1
                if count == 4 {
                    if emit { out.append(UInt8(acc >> 16 & 0xFF)); out.append(UInt8(acc >> 8 & 0xFF)); out.append(UInt8(acc & 0xFF)) }
                    acc = 0
                    count = 0
                }
                i += 1
            }
            // Go reports the offset where the incomplete final group starts.
            return count != 0 ? groupStart : nil
        }
    }
}
