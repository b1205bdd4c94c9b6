/// The field kinds that occur in VSSM's proto3 messages, as jsonpb maps them to JSON.
public indirect enum FieldKind: Sendable {
    case string, bytes, uint64, int64, bool
    case message(MessageSchema)
    case repeatedMessage(MessageSchema)
    case repeatedString
}

public struct FieldSpec: Sendable {
    /// lowerCamelCase JSON name (what jsonpb emits).
    public let json: String
    /// Original proto field name (also accepted on input).
    public let proto: String
    public let kind: FieldKind

    public init(_ json: String, _ kind: FieldKind) {
        self.json = json
        self.kind = kind
        var p = ""
        for c in json {
            if c.isUppercase { p += "_" + c.lowercased() } else { p.append(c) }
        }
        self.proto = p
    }
}

/// A proto message type: its Go name (`vssmpb.<Name>` in error texts) and fields.
public struct MessageSchema: Sendable {
    public let name: String
    public let fields: [FieldSpec]
    public init(_ name: String, _ fields: [FieldSpec]) {
        self.name = name
        self.fields = fields
    }
}

/// A decoded, validated message body: every present field has the right JSON type for its kind.
/// Getters return proto3 defaults for absent fields.
public struct WireObject: Sendable {
    public let schema: MessageSchema
    private var values: [String: JSONValue] = [:]
    private var nested: [String: WireObject] = [:]
    private var nestedLists: [String: [WireObject]] = [:]
    /// `bytes` fields, decoded once while the message is checked (no second base64 pass).
    private var decoded: [String: [UInt8]] = [:]

    /// Parses a request body the way the original's `jsonpb.Unmarshal` does.
    public static func decode(_ body: [UInt8], as schema: MessageSchema) throws(JSONError) -> WireObject {
        let value = try JSONParser.parse(body)
        return try WireObject(value, schema: schema)
    }

    public init(_ value: JSONValue, schema: MessageSchema) throws(JSONError) {
        self.schema = schema
        switch value {
        case .null:
            return  // `null` body is an empty message
        case .object(let members):
            // Each field once: a member repeated, or given under both its names (`keyName` and
            // `key_name`), is refused, so the audit record and the handler cannot read different values.
            var seen: Set<String> = []
            for (key, v) in members {
                guard let field = schema.fields.first(where: { $0.json == key || $0.proto == key }) else {
                    throw JSONError("unknown field \"\(key)\" in vssmpb.\(schema.name)")
                }
                guard seen.insert(field.json).inserted else {
                    throw JSONError("field \"\(field.json)\" is given more than once in vssmpb.\(schema.name)")
                }
                if case .null = v {
                    values[field.json] = nil
                    nested[field.json] = nil
                    nestedLists[field.json] = nil
                    decoded[field.json] = nil
                    continue
                }
                try WireObject.check(v, field: field)
                if case .bytes = field.kind, case .string(let s) = v { decoded[field.json] = try Base64.decode(s) }
                switch field.kind {
                case .message(let s): nested[field.json] = try WireObject(v, schema: s)
                case .repeatedMessage(let s):
                    guard case .array(let items) = v else { break }
                    var list: [WireObject] = []
                    for item in items { list.append(try WireObject(item, schema: s)) }
                    nestedLists[field.json] = list
                default: values[field.json] = v
                }
            }
        case .array:
            throw JSONError("json: cannot unmarshal array into Go value of type map[string]json.RawMessage")
        case .string:
            throw JSONError("json: cannot unmarshal string into Go value of type map[string]json.RawMessage")
        case .number:
            throw JSONError("json: cannot unmarshal number into Go value of type map[string]json.RawMessage")
        case .bool:
            throw JSONError("json: cannot unmarshal bool into Go value of type map[string]json.RawMessage")
        }
    }

    private static func typeName(_ v: JSONValue) -> String {
        switch v {
        case .null: "null"
        case .bool: "bool"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    private static func check(_ v: JSONValue, field: FieldSpec) throws(JSONError) {
        func mismatch(_ go: String) -> JSONError {
            JSONError("json: cannot unmarshal \(typeName(v)) into Go value of type \(go)")
        }
        switch field.kind {
        case .string:
            guard case .string = v else { throw mismatch("string") }
        case .bytes:
            guard case .string = v else { throw mismatch("[]uint8") }
        case .bool:
            guard case .bool = v else { throw mismatch("bool") }
        case .uint64:
            _ = try parseInteger(v, signed: false)
        case .int64:
            _ = try parseInteger(v, signed: true)
        case .message:
            guard case .object = v else { throw mismatch("map[string]json.RawMessage") }
        case .repeatedMessage:
            guard case .array = v else { throw mismatch("[]json.RawMessage") }
        case .repeatedString:
            guard case .array(let items) = v else { throw mismatch("[]string") }
            for item in items {
                guard case .string = item else { throw JSONError("json: cannot unmarshal \(typeName(item)) into Go value of type string") }
            }
        }
    }

    /// jsonpb accepts an integer as a JSON number or as a quoted decimal string.
    static func parseInteger(_ v: JSONValue, signed: Bool) throws(JSONError) -> Int128 {
        let goType = signed ? "int64" : "uint64"
        let text: String
        switch v {
        case .number(let n): text = n
        case .string(let s):
            // The quoted form is re-parsed as JSON by jsonpb: "0x10" fails at 'x'.
            guard let first = s.utf8.first, (first >= 0x30 && first <= 0x39) || first == UInt8(ascii: "-") else {
                throw JSONError("invalid character \(s.isEmpty ? "'\"'" : "'\(s.prefix(1))'") looking for beginning of value")
            }
            for (i, c) in s.utf8.enumerated() where !(c >= 0x30 && c <= 0x39) && !(i == 0 && c == UInt8(ascii: "-")) {
                throw JSONError("invalid character '\(Character(Unicode.Scalar(c)))' after top-level value")
            }
            text = s
        default:
            throw JSONError("json: cannot unmarshal \(typeName(v)) into Go value of type \(goType)")
        }
        guard let value = Int128(text) else {
            throw JSONError("json: cannot unmarshal number \(text) into Go value of type \(goType)")
        }
        let range: ClosedRange<Int128> = signed ? Int128(Int64.min)...Int128(Int64.max) : 0...Int128(UInt64.max)
        guard range.contains(value) else {
            throw JSONError("json: cannot unmarshal number \(text) into Go value of type \(goType)")
        }
        return value
    }

    public func has(_ field: String) -> Bool {
        values[field] != nil || nested[field] != nil || nestedLists[field] != nil
    }

    public func string(_ field: String) -> String {
        if case .string(let s)? = values[field] { return s }
        return ""
    }

    /// nil when the field is absent (proto3 cannot tell absent from empty; Go's jsonpb can for bytes).
    public func bytes(_ field: String) -> [UInt8]? { decoded[field] }

    public func uint64(_ field: String) -> UInt64 {
        guard let v = values[field], let i = try? WireObject.parseInteger(v, signed: false) else { return 0 }
        return UInt64(i)
    }

    public func int64(_ field: String) -> Int64 {
        guard let v = values[field], let i = try? WireObject.parseInteger(v, signed: true) else { return 0 }
        return Int64(i)
    }

    public func bool(_ field: String) -> Bool {
        if case .bool(let b)? = values[field] { return b }
        return false
    }

    public func strings(_ field: String) -> [String] {
        guard case .array(let items)? = values[field] else { return [] }
        return items.compactMap { if case .string(let s) = $0 { s } else { nil } }
    }

    public func object(_ field: String) -> WireObject? { nested[field] }

    public func objects(_ field: String) -> [WireObject] { nestedLists[field] ?? [] }
}

/// Builds a jsonpb response: fields in declaration order, proto3 defaults omitted, 64-bit integers
/// as strings, bytes as padded standard base64 (omitted only when nil, as Go's jsonpb does).
public struct WireWriter: Sendable {
    public private(set) var members: [(String, JSONValue)] = []

    public init() {}

    public mutating func string(_ name: String, _ v: String) {
        if !v.isEmpty { members.append((name, .string(v))) }
    }
    public mutating func bytes(_ name: String, _ v: [UInt8]?) {
        if let v { members.append((name, .string(Base64.encode(v)))) }
    }
    public mutating func uint64(_ name: String, _ v: UInt64) {
        if v != 0 { members.append((name, .string(String(v)))) }
    }
    public mutating func int64(_ name: String, _ v: Int64) {
        if v != 0 { members.append((name, .string(String(v)))) }
    }
    public mutating func bool(_ name: String, _ v: Bool) {
        if v { members.append((name, .bool(true))) }
    }
    public mutating func object(_ name: String, _ v: JSONValue?) {
        if let v { members.append((name, v)) }
    }
    public mutating func array(_ name: String, _ v: [JSONValue]?) {
        if let v { members.append((name, .array(v))) }
    }
    public mutating func strings(_ name: String, _ v: [String]?) {
        if let v { members.append((name, .array(v.map { .string($0) }))) }
    }

    public var value: JSONValue { .object(members) }
    public var bytes: [UInt8] { JSONWriter.serialize(value) }
}
