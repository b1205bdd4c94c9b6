/// A configuration file read strictly: every member must be known and of the right type, and every
/// complaint names the file, the member's path and its line and column, so a typo (`statedir`,
/// `userPinIsAdminpassword`, `"true"` for true) stops the program at start instead of being
/// ignored. Used by the service's `config.json` and the module's `pkcs11.json`.
public struct ConfigFile: Sendable {
    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public let message: String
        public init(_ message: String) { self.message = message }
        public var description: String { message }
    }

    public let path: String
    public let root: JSONValue
    private let bytes: [UInt8]
    private let keys: [String: Int]

    public init(path: String, bytes: [UInt8]) throws(Problem) {
        self.path = path
        self.bytes = bytes
        do { (root, keys) = try JSONParser.parseLocated(bytes) } catch {
            throw Problem("\(path): not valid JSON: \(error.message)")
        }
        guard case .object = root else { throw Problem("\(path): the file must hold one JSON object ({...})") }
    }

    /// `FILE:LINE:COLUMN` of a member (its key), or of the file when the path is not in it.
    public func location(_ member: String) -> String {
        guard let offset = keys[member] else { return path }
        let (line, column) = JSONParser.lineColumn(bytes, offset)
        return "\(path):\(line):\(column)"
    }

    public func problem(_ member: String, _ text: String) -> Problem {
        Problem("\(location(member)): \(member): \(text)")
    }

    /// Refuses members of `object` (at `path`, "" for the top level) that are not in `allowed`,
    /// suggesting the allowed name it most likely meant.
    public func onlyKnown(_ object: JSONValue, at path: String, _ allowed: [String]) throws(Problem) {
        guard case .object(let members) = object else { return }
        for (name, _) in members where !allowed.contains(name) {
            let member = path.isEmpty ? name : path + "." + name
            var hint = ""
            if let guess = ConfigFile.closest(name, allowed) { hint = " (did you mean \"\(guess)\"?)" }
            let known = allowed.map { "\"\($0)\"" }.joined(separator: ", ")
            throw Problem(
                "\(location(member)): unknown member \"\(name)\"\(path.isEmpty ? "" : " in \(path)")\(hint); known members: \(known)")
        }
    }

    // MARK: typed members (nil when absent; a wrong type is a Problem naming what was found)

    public func string(_ object: JSONValue, _ name: String, at path: String) throws(Problem) -> String? {
        guard let v = object[name] else { return nil }
        guard case .string(let s) = v else { throw typeProblem(path, name, "a string", v) }
        return s
    }

    public func bool(_ object: JSONValue, _ name: String, at path: String) throws(Problem) -> Bool? {
        guard let v = object[name] else { return nil }
        guard case .bool(let b) = v else { throw typeProblem(path, name, "true or false (without quotes)", v) }
        return b
    }

    public func strings(_ object: JSONValue, _ name: String, at path: String) throws(Problem) -> [String]? {
        guard let v = object[name] else { return nil }
        guard case .array(let items) = v else { throw typeProblem(path, name, "an array of strings", v) }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item else { throw typeProblem(path, "\(name)[\(i)]", "a string", item) }
            out.append(s)
        }
        return out
    }

    public func object(_ object: JSONValue, _ name: String, at path: String) throws(Problem) -> JSONValue? {
        guard let v = object[name] else { return nil }
        guard case .object = v else { throw typeProblem(path, name, "an object ({...})", v) }
        return v
    }

    /// A number within `range` (finite; a whole number when `integer`).
    public func number(
        _ object: JSONValue, _ name: String, at path: String, _ range: ClosedRange<Double>,
        integer: Bool
    ) throws(Problem) -> Double? {
        guard let v = object[name] else { return nil }
        let kind = integer ? "an integer" : "a number"
        let bounds = "from \(ConfigFile.plain(range.lowerBound)) to \(ConfigFile.plain(range.upperBound))"
        guard case .number(let text) = v, let d = Double(text), d.isFinite else { throw typeProblem(path, name, "\(kind) \(bounds)", v) }
        let member = path.isEmpty ? name : path + "." + name
        guard range.contains(d), !integer || d.rounded() == d else {
            throw problem(member, "must be \(kind) \(bounds), not \(text)")
        }
        return d
    }

    public func typeProblem(_ path: String, _ name: String, _ wanted: String, _ found: JSONValue) -> Problem {
        let member = path.isEmpty ? name : path + "." + name
        return problem(member, "must be \(wanted), not \(ConfigFile.kind(found))")
    }

    public static func kind(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case .bool(let b): return "\(b)"
        case .number(let n): return "the number \(n)"
        case .string(let s): return "the string \"\(s.count > 40 ? String(s.prefix(40)) + "..." : s)\""
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    static func plain(_ d: Double) -> String {
        if let i = Int(exactly: d) { return String(i) }
        return String(d)
    }

    /// The allowed name a typo most likely meant: same letters ignoring case, or at most two edits.
    static func closest(_ name: String, _ allowed: [String]) -> String? {
        if let same = allowed.first(where: { $0.lowercased() == name.lowercased() }) { return same }
        var best: (String, Int)?
        for candidate in allowed {
            let d = distance(Array(name.lowercased()), Array(candidate.lowercased()))
            if d <= 2, d < (best?.1 ?? Int.max) { best = (candidate, d) }
        }
        return best?.0
    }

    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + [Int](repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
