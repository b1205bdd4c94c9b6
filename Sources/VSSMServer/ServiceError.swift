import VSSMCrypto
import VSSMWire

/// The one error type of the key service's handlers. The body is always the original's
/// `{"error":"..."}`; the status says what kind of failure it was (the original sent 500 for all).
/// Errors become HTTP responses in exactly one place (`Router.respond`).
public struct ServiceError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What a person reads (the CLI prints errors with it): the message, never the type's fields.
    public var description: String { message }
    public let status: Int
    public let message: String

    public init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }

    /// `Retry-After` of a 429 that says when to try again ("… try again in N s.").
    var retryAfterSeconds: Int? {
        guard status == 429, let r = message.firstRange(of: "try again in ") else { return nil }
        return Int(message[r.upperBound...].prefix(while: { $0.isNumber }))
    }

    static func badRequest(_ m: String) -> ServiceError { ServiceError(400, m) }
    static func forbidden(_ m: String) -> ServiceError { ServiceError(403, m) }
    static func notFound(_ m: String) -> ServiceError { ServiceError(404, m) }
    static func conflict(_ m: String) -> ServiceError { ServiceError(409, m) }
    static func tooLarge(_ m: String) -> ServiceError { ServiceError(413, m) }
    static func unavailable(_ m: String) -> ServiceError { ServiceError(503, m) }
    static func internalError(_ m: String) -> ServiceError { ServiceError(500, m) }

    /// The request needs scrypt, which never runs on an event loop (`RequestContext.noHashing`):
    /// nothing was done or recorded; the listener hands it to the admin pool.
    static let needsHashing = ServiceError(0, "needs scrypt")
    static let wrongPassword = ServiceError(403, "Incorrect administrator password.")
    static let unauthenticated = ServiceError(401, "This connection did not present a verified client certificate; reconnect with one.")
    static func throttled(_ ms: Int) -> ServiceError {
        ServiceError(429, "Too many wrong passwords or PINs from this client certificate; try again in \((ms + 999) / 1000) s.")
    }
    static func invalidKeyName(_ name: String) -> ServiceError { ServiceError(404, "Invalid key name: \(name)") }
    static func invalidAlgorithm(_ a: String) -> ServiceError { ServiceError(400, "Invalid algorithm: \(a)") }

    /// Bad input caught by the crypto layer (padding, lengths, tags): the caller's fault.
    static func input(_ e: CryptoError) -> ServiceError { ServiceError(400, e.message) }
    static func json(_ e: JSONError) -> ServiceError { ServiceError(400, e.message) }

    var body: [UInt8] {
        var w = WireWriter()
        w.string("error", message)
        return w.bytes
    }
}
