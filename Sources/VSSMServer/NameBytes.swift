/// Names (keys, namespaces, tombstone ids) are split and tested on their UTF-8 bytes, never on
/// Swift `Character`s: a combining mark after the `/` (`"@team-b/\u{301}k"`) joins the slash into
/// one grapheme, and a Character-wise split then put team B's key into the default namespace.
extension String {
    /// Whether the first byte is `ascii` (`"@"`, `"~"`).
    func startsWithByte(_ ascii: Unicode.Scalar) -> Bool { utf8.first == UInt8(ascii: ascii) }

    /// The parts before and after the first `/` byte, or nil without one.
    func splitAtFirstSlash(droppingFirst: Int = 0) -> (before: String, after: String)? {
        let bytes = Array(utf8.dropFirst(droppingFirst))
        guard let i = bytes.firstIndex(of: UInt8(ascii: "/")) else { return nil }
        return (String(decoding: bytes[..<i], as: UTF8.self), String(decoding: bytes[(i + 1)...], as: UTF8.self))
    }

    /// A name must not begin with a mark that combines with what comes before it (it would join a
    /// separator in front of it into one grapheme when displayed or compared as text).
    var startsWithCombiningMark: Bool {
        guard let first = unicodeScalars.first else { return false }
        return first.properties.isGraphemeExtend
            || [.nonspacingMark, .spacingMark, .enclosingMark].contains(first.properties.generalCategory)
    }
}
