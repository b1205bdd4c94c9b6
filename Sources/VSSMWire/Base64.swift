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
        let src = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(src.count / 4 * 3)
        var quad: [Int] = []  // sextets of the current group
        var quadStart = 0
        var i = 0
        var finished = false
        func illegal(_ at: Int) -> JSONError { JSONError("illegal base64 data at input byte \(at)") }
        while i < src.count {
            let c = src[i]
            if c == 0x0A || c == 0x0D { i += 1; continue }
            if finished { throw illegal(i) }
            if quad.isEmpty { quadStart = i }
            if c == UInt8(ascii: "=") {
                // Padding is only valid as the 3rd/4th char of the final group.
                switch quad.count {
                case 2:
                    // expect a second '=' (skipping newlines)
                    var j = i + 1
                    while j < src.count, src[j] == 0x0A || src[j] == 0x0D { j += 1 }
                    guard j < src.count else { throw illegal(src.count) }
                    guard src[j] == UInt8(ascii: "=") else { throw illegal(j) }
                    let v = quad[0] << 18 | quad[1] << 12
                    out.append(UInt8(v >> 16 & 0xFF))
                    quad = []
                    i = j + 1
                    finished = true
                    continue
                case 3:
                    let v = quad[0] << 18 | quad[1] << 12 | quad[2] << 6
                    out.append(UInt8(v >> 16 & 0xFF)); out.append(UInt8(v >> 8 & 0xFF))
                    quad = []
                    i += 1
                    finished = true
                    continue
                default:
                    throw illegal(i)
                }
            }
            let s = reverse[Int(c)]
            if s < 0 { throw illegal(i) }
            quad.append(Int(s))
            if quad.count == 4 {
                let v = quad[0] << 18 | quad[1] << 12 | quad[2] << 6 | quad[3]
                out.append(UInt8(v >> 16 & 0xFF)); out.append(UInt8(v >> 8 & 0xFF)); out.append(UInt8(v & 0xFF))
                quad = []
            }
            i += 1
        }
        if !quad.isEmpty {
            // Go reports the offset where the incomplete final group starts.
            throw illegal(quadStart)
        }
        return out
    }
}
