import Testing
@testable import VSSMWire

/// Configuration files are read strictly, and every complaint says where (issue 19).
struct ConfigFileTests {
    let text = """
        {
          "slots": [{
            "label": "a",
            "userPinIsAdminpassword": true
          }],
          "limits": {"maxBodyBytes": "12"}
        }
        """

    @Test func unknownMemberNamesItsLineColumnAndTheLikelyName() throws {
        let f = try ConfigFile(path: "p.json", bytes: Array(text.utf8))
        guard case .array(let slots)? = f.root["slots"] else { Issue.record("no slots"); return }
        #expect(
            throws: ConfigFile.Problem(
                "p.json:4:5: unknown member \"userPinIsAdminpassword\" in slots[0] (did you mean \"userPinIsAdminPassword\"?); known members: \"label\", \"userPinIsAdminPassword\""
            )
        ) {
            try f.onlyKnown(slots[0], at: "slots[0]", ["label", "userPinIsAdminPassword"])
        }
        #expect(throws: ConfigFile.Problem("p.json:6:3: unknown member \"limits\"; known members: \"slots\"")) {
            try f.onlyKnown(f.root, at: "", ["slots"])
        }
    }

    @Test func wrongTypesAreRefusedWithWhatWasFound() throws {
        let f = try ConfigFile(path: "c.json", bytes: Array(#"{"a": "true", "n": 1e400, "m": 2.5, "s": 5}"#.utf8))
        #expect(throws: ConfigFile.Problem(#"c.json:1:2: a: must be true or false (without quotes), not the string "true""#)) {
            _ = try f.bool(f.root, "a", at: "")
        }
        #expect(throws: ConfigFile.Problem("c.json:1:15: n: must be an integer from 1 to 10, not the number 1e400")) {
            _ = try f.number(f.root, "n", at: "", 1...10, integer: true)
        }
        #expect(throws: ConfigFile.Problem("c.json:1:27: m: must be an integer from 1 to 10, not 2.5")) {
            _ = try f.number(f.root, "m", at: "", 1...10, integer: true)
        }
        #expect(throws: ConfigFile.Problem("c.json:1:37: s: must be a string, not the number 5")) {
            _ = try f.string(f.root, "s", at: "")
        }
        #expect(try f.bool(f.root, "absent", at: "") == nil)
    }

    @Test func syntaxErrorsSayLineAndColumnAndDuplicatesAreRefused() {
        #expect(
            throws: ConfigFile.Problem(
                "x.json: not valid JSON: line 2, column 10: invalid character ',' looking for beginning of object key string")
        ) {
            _ = try ConfigFile(path: "x.json", bytes: Array("{\n  \"a\": 1,,\n}".utf8))
        }
        #expect(throws: ConfigFile.Problem("x.json: not valid JSON: line 1, column 21: limits.x appears twice")) {
            _ = try ConfigFile(path: "x.json", bytes: Array(#"{"limits": {"x": 1, "x": 2}}"#.utf8))
        }
        #expect(throws: ConfigFile.Problem("x.json: not valid JSON: line 1, column 10: unexpected '}' after the end of the value")) {
            _ = try ConfigFile(path: "x.json", bytes: Array(#"{"a": 1} }"#.utf8))
        }
        #expect(throws: ConfigFile.Problem("x.json: the file must hold one JSON object ({...})")) {
            _ = try ConfigFile(path: "x.json", bytes: Array("[1]".utf8))
        }
    }

    @Test func nonASCIIColumnsCountCharacters() throws {
        let f = try ConfigFile(path: "u.json", bytes: Array(#"{"é": 1, "zz": 2}"#.utf8))
        #expect(f.location("zz") == "u.json:1:10")
    }
}
