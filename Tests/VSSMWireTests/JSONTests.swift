import Testing
@testable import VSSMWire

@Suite struct JSONTests {
    @Test func parsesAndReserializesCompactly() throws {
        let v = try JSONParser.parse(#" { "a" : [1, -2.5e3, true, false, null], "b": "x\"y\\z" } "#)
        #expect(JSONWriter.string(v) == #"{"a":[1,-2.5e3,true,false,null],"b":"x\"y\\z"}"#)
    }

    @Test func escapesLikeGoEncodingJSON() {
        // Go's jsonpb escapes <, > and & (seen in the original's asn1 error texts).
        let s = JSONWriter.string(.string("<nil> & \u{1} \n\t\u{2028}é"))
        #expect(s == #""\u003cnil\u003e \u0026 \u0001 \n\t\u2028é""#)
    }

    @Test func goErrorTexts() {
        #expect(throws: JSONError("EOF")) { try JSONParser.parse("") }
        #expect(throws: JSONError("EOF")) { try JSONParser.parse("  \n ") }
        #expect(throws: JSONError("unexpected EOF")) { try JSONParser.parse("{") }
        #expect(throws: JSONError("invalid character 'b' looking for beginning of object key string")) {
            try JSONParser.parse("{bad json}")
        }
    }

    @Test func firstValueOnlyAsTheOriginalDecoder() throws {
        #expect(try JSONParser.parse(#"{"a":1} trailing garbage"#) == .object([("a", .number("1"))]))
    }

    @Test func unicodeEscapesAndSurrogates() throws {
        #expect(try JSONParser.parse(#""\u00e9\ud83d\ude00\ud800x""#) == .string("é😀\u{FFFD}x"))
    }

    @Test func deepNestingIsRejectedNotCrashing() {
        let deep = String(repeating: "[", count: 100_000)
        #expect(throws: JSONError.self) { try JSONParser.parse(deep) }
    }
}

@Suite struct Base64Tests {
    @Test func roundTrips() throws {
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(($0 * 37 + 11) & 0xFF) }
            #expect(try Base64.decode(Base64.encode(bytes)) == bytes)
        }
        #expect(Base64.encode(Array("hello".utf8)) == "aGVsbG8=")
    }

    @Test func strictLikeGoStdEncoding() {
        // Examples from the wire observations of the original (vssm-wire.md §2).
        #expect(throws: JSONError("illegal base64 data at input byte 20")) { try Base64.decode("AAECAwQFBgcICQoLDA0ODw") }
        #expect(throws: JSONError("illegal base64 data at input byte 0")) { try Base64.decode("!!!") }
        #expect(throws: JSONError.self) { try Base64.decode("AAECAwQFBgcICQoLDA0ODw-_") }
        #expect(throws: JSONError.self) { try Base64.decode("AA=A") }
    }

    /// Every length round-trips (both padding forms), and validation agrees with decoding.
    @Test func roundTripsAndValidatesLikeDecoding() throws {
        for n in 0..<70 {
            let data = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let text = Base64.encode(data)
            #expect(try Base64.decode(text) == data)
            try Base64.validate(text)
        }
        for bad in ["A", "AB=", "ABC=D", "AB==C", "A===", "====", "AB=C", "ÿÿÿÿ"] {
            #expect(throws: JSONError.self) { try Base64.decode(bad) }
            #expect(throws: JSONError.self) { try Base64.validate(bad) }
        }
    }

    @Test func newlinesAreIgnored() throws {
        #expect(try Base64.decode("aGVs\r\nbG8=\n") == Array("hello".utf8))
    }
}

@Suite struct WireObjectTests {
    @Test func acceptsCamelAndProtoNames() throws {
        let a = try WireObject.decode(Array(#"{"keyName":"k","keySize":"16"}"#.utf8), as: Schemas.generateKeyRequest)
        let b = try WireObject.decode(Array(#"{"key_name":"k","key_size":16}"#.utf8), as: Schemas.generateKeyRequest)
        #expect(a.string("keyName") == "k" && b.string("keyName") == "k")
        #expect(a.uint64("keySize") == 16 && b.uint64("keySize") == 16)
    }

    @Test func rejectsUnknownFieldsWithGoText() {
        #expect(throws: JSONError(#"unknown field "extra" in vssmpb.GenerateKeyRequest"#)) {
            try WireObject.decode(Array(#"{"extra":1}"#.utf8), as: Schemas.generateKeyRequest)
        }
        #expect(throws: JSONError(#"unknown field "KeyName" in vssmpb.GenerateKeyRequest"#)) {
            try WireObject.decode(Array(#"{"KeyName":"x"}"#.utf8), as: Schemas.generateKeyRequest)
        }
    }

    @Test func integerRulesOfJsonpb() {
        func size(_ json: String) throws -> UInt64 {
            try WireObject.decode(Array(json.utf8), as: Schemas.generateKeyRequest).uint64("keySize")
        }
        #expect(throws: JSONError("json: cannot unmarshal number -1 into Go value of type uint64")) { try size(#"{"keySize":-1}"#) }
        #expect(throws: JSONError.self) { try size(#"{"keySize":16.5}"#) }
        #expect(throws: JSONError.self) { try size(#"{"keySize":1e1}"#) }
        #expect(throws: JSONError("invalid character 'x' after top-level value")) { try size(#"{"keySize":"0x10"}"#) }
        #expect(throws: JSONError("json: cannot unmarshal number into Go value of type string")) {
            try WireObject.decode(Array(#"{"keyName":123}"#.utf8), as: Schemas.generateKeyRequest)
        }
    }

    @Test func nullAndArrayBodies() throws {
        let n = try WireObject.decode(Array("null".utf8), as: Schemas.generateKeyRequest)
        #expect(n.string("keyName") == "")
        #expect(throws: JSONError("json: cannot unmarshal array into Go value of type map[string]json.RawMessage")) {
            try WireObject.decode(Array("[]".utf8), as: Schemas.generateKeyRequest)
        }
        let nullField = try WireObject.decode(Array(#"{"keyName":null}"#.utf8), as: Schemas.generateKeyRequest)
        #expect(!nullField.has("keyName"))
    }

    @Test func writerOmitsProtoDefaultsLikeJsonpb() {
        var w = WireWriter()
        w.bool("valid", false)
        w.string("name", "")
        w.uint64("keyLength", 0)
        #expect(JSONWriter.string(w.value) == "{}")
        var x = WireWriter()
        x.bytes("output", [])  // non-nil empty bytes are emitted (Go jsonpb quirk)
        x.int64("createdAt", 1795357245406)
        x.array("symmetricKey", [])
        #expect(JSONWriter.string(x.value) == #"{"output":"","createdAt":"1795357245406","symmetricKey":[]}"#)
    }

    @Test func nestedMessagesAreValidated() {
        #expect(throws: JSONError(#"unknown field "bogus" in vssmpb.BackupBlob"#)) {
            try WireObject.decode(Array(#"{"backup":{"bogus":1}}"#.utf8), as: Schemas.restoreBackupRequest)
        }
    }
}

@Suite struct HTTPDateTests {
    @Test func formatsAndParsesIMFFixdate() {
        #expect(HTTPDate.format(784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")  // RFC 9110's example
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == 784_111_777)
        #expect(HTTPDate.format(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        for t: Int64 in [951_782_400, 1_709_210_096, 4_102_444_799, 1_796_629_418] {  // leap days, 2099, 2026
            #expect(HTTPDate.parse(HTTPDate.format(t)) == t, "\(HTTPDate.format(t))")
        }
        for bad in [
            "", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT",
        ] {
            #expect(HTTPDate.parse(bad) == nil, "\(bad)")
        }
    }
}
