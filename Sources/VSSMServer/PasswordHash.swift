import VSSMCrypto
import VSSMWire

/// The original's admin password format: `$s0$<hex params>$<b64 salt>$<b64 key>` where params is
/// `log2(N)<<16 | r<<8 | p` (`F0801` = N 32768, r 8, p 1) and key = scrypt(password, salt, 32 bytes).
public struct PasswordHash: Sendable {
    public let log2N: Int
    public let r: Int
    public let p: Int
    public let salt: [UInt8]
    public let key: [UInt8]

    public init(parsing text: String) throws(ServiceError) {
        let parts = text.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0].isEmpty, parts[1] == "s0", let params = Int(parts[2], radix: 16) else {
            throw ServiceError.internalError("rootPassword is not a $s0$ scrypt hash")
        }
        log2N = params >> 16
        r = (params >> 8) & 0xFF
        p = params & 0xFF
        guard (1...24).contains(log2N), r > 0, p > 0,
              let salt = try? Base64.decode(String(parts[3])), let key = try? Base64.decode(String(parts[4])),
              !salt.isEmpty, !key.isEmpty else {
            throw ServiceError.internalError("rootPassword is not a valid $s0$ scrypt hash")
        }
        self.salt = salt
        self.key = key
    }

    /// A new hash with the original's parameters (N 32768, r 8, p 1, 16-byte salt, 32-byte key).
    public static func create(password: String) throws(CryptoError) -> String {
        let salt = SecureRandom.bytes(16)
        let key = try KDF.scrypt(password: Array(password.utf8), salt: salt, n: 32768, r: 8, p: 1, length: 32)
        return "$s0$F0801$\(Base64.encode(salt))$\(Base64.encode(key))"
    }

    public func verify(_ password: String) -> Bool {
        guard let derived = try? KDF.scrypt(password: Array(password.utf8), salt: salt, n: 1 << UInt64(log2N),
                                            r: UInt64(r), p: UInt64(p), length: key.count) else { return false }
        return constantTimeEqual(derived, key)
    }
}
