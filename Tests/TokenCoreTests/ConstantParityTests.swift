import Foundation
import Testing

/// The parity test `Constants.swift` promises (issue 21): every typed PKCS#11 constant of the core
/// has the value of the C header's macro of the same name (CKA_, CKO_, CKK_, CKM_, CKU_), compared
/// by name with underscores dropped and case ignored. A mistyped value, or a name that matches no
/// macro, fails here instead of in a host.
@Suite struct ConstantParityTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Swift names that are not the macro's name in another spelling.
    static let aliases: [String: String] = [:]
    /// Constants of PKCS#11 3.0 that this (2.40) header does not define, with the 3.0 value.
    static let newerThanHeader: [String: UInt] = ["AttributeType.uniqueID": 0x4]

    @Test func everyConstantHasTheHeadersValue() throws {
        // p11-kit's 2.40 header, and what include/cpkcs11.h adds of 3.0 and 3.2.
        let header = try ["include/pkcs11.h", "include/cpkcs11.h"].map {
            try String(contentsOf: Self.root.appendingPathComponent($0), encoding: .utf8)
        }.joined(separator: "\n")
        var macros: [String: [String: UInt]] = [:]  // prefix -> normalized name -> value
        let define = try NSRegularExpression(pattern: #"#define\s+(CK[AOKMU])_(\w+)\s+\(?\s*(0x[0-9A-Fa-f]+|\d+)U?L?U?L?\s*\)?"#)
        for m in define.matches(in: header, range: NSRange(header.startIndex..., in: header)) {
            let s = { (i: Int) in String(header[Range(m.range(at: i), in: header)!]) }
            let text = s(3)
            let value = text.hasPrefix("0x") ? UInt(text.dropFirst(2), radix: 16) : UInt(text)
            guard let value else { continue }
            macros[s(1), default: [:]][s(2).replacingOccurrences(of: "_", with: "").lowercased()] = value
        }
        // Array attributes: `(CKF_ARRAY_ATTRIBUTE | 0x600UL)`.
        let array = try NSRegularExpression(pattern: #"#define\s+CKA_(\w+)\s+\(CKF_ARRAY_ATTRIBUTE\s*\|\s*(0x[0-9A-Fa-f]+)U?L?\)"#)
        for m in array.matches(in: header, range: NSRange(header.startIndex..., in: header)) {
            let s = { (i: Int) in String(header[Range(m.range(at: i), in: header)!]) }
            if let v = UInt(s(2).dropFirst(2), radix: 16) {
                macros["CKA", default: [:]][s(1).replacingOccurrences(of: "_", with: "").lowercased()] = 0x4000_0000 | v
            }
        }
        #expect((macros["CKM"]?.count ?? 0) > 100, "the header was read")
        let source = try String(contentsOf: Self.root.appendingPathComponent("Sources/TokenCore/Constants.swift"), encoding: .utf8)
        let prefixes = ["AttributeType": "CKA", "ObjectClass": "CKO", "KeyKind": "CKK", "MechanismType": "CKM", "UserType": "CKU"]
        let constant = try NSRegularExpression(pattern: #"public static let `?(\w+)`? = (\w+)\((0x[0-9A-Fa-f_]+|\d+)\)"#)
        var checked = 0
        var problems: [String] = []
        for m in constant.matches(in: source, range: NSRange(source.startIndex..., in: source)) {
            let s = { (i: Int) in String(source[Range(m.range(at: i), in: source)!]) }
            guard let prefix = prefixes[s(2)] else { continue }
            let text = s(3).replacingOccurrences(of: "_", with: "")
            let value = text.hasPrefix("0x") ? UInt(text.dropFirst(2), radix: 16) : UInt(text)
            let name = Self.aliases[s(1)] ?? s(1).replacingOccurrences(of: "_", with: "").lowercased()
            guard let expected = macros[prefix]?[name] ?? Self.newerThanHeader["\(s(2)).\(s(1))"] else {
                problems.append("\(s(2)).\(s(1)): no \(prefix)_ macro of that name")
                continue
            }
            if value != expected { problems.append("\(s(2)).\(s(1)) = \(s(3)), but \(prefix)_… is 0x\(String(expected, radix: 16))") }
            checked += 1
        }
        #expect(problems.isEmpty, "\(problems.joined(separator: "; "))")
        #expect(checked >= 120, "\(checked) constants compared")
    }
}
