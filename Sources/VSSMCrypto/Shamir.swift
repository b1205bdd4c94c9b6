/// Shamir's secret sharing over GF(2^8) (the AES field, x^8 + x^4 + x^3 + x + 1), byte by byte:
/// any `threshold` of the `count` shares give the secret back, fewer give no information about it.
/// Share x (1...count) holds f_b(x) for each secret byte b, where f_b is a random polynomial of
/// degree threshold − 1 with f_b(0) = b.
public enum Shamir {
    // exp/log tables for generator 3.
    private static let tables: (exp: [UInt8], log: [UInt8]) = {
        var exp = [UInt8](repeating: 0, count: 512)
        var log = [UInt8](repeating: 0, count: 256)
        var x: UInt8 = 1
        for i in 0..<255 {
            exp[i] = x
            log[Int(x)] = UInt8(i)
            // x *= 3 in GF(256): x*2 ^ x
            let doubled = (x << 1) ^ ((x & 0x80) != 0 ? 0x1B : 0)
            x = doubled ^ x
        }
        for i in 255..<512 { exp[i] = exp[i - 255] }
        return (exp, log)
    }()

    static func mul(_ a: UInt8, _ b: UInt8) -> UInt8 {
        guard a != 0, b != 0 else { return 0 }
        return tables.exp[Int(tables.log[Int(a)]) + Int(tables.log[Int(b)])]
    }

    static func div(_ a: UInt8, _ b: UInt8) -> UInt8 {
        // b is never 0 here (distinct share indices); no trap either way.
        guard a != 0, b != 0 else { return 0 }
        return tables.exp[Int(tables.log[Int(a)]) + 255 - Int(tables.log[Int(b)])]
    }

    /// `count` shares (x = 1...count) of `secret`; any `threshold` of them recover it.
    public static func split(_ secret: [UInt8], threshold: Int, count: Int) throws(CryptoError) -> [(x: UInt8, y: [UInt8])] {
        guard threshold >= 2, count >= threshold, count <= 255 else {
            throw CryptoError("a split needs 2 <= threshold <= shares <= 255")
        }
        guard !secret.isEmpty else { throw CryptoError("nothing to split") }
        var shares = (1...count).map { (x: UInt8($0), y: [UInt8](repeating: 0, count: secret.count)) }
        var coefficients = [UInt8](repeating: 0, count: threshold)
        for (i, byte) in secret.enumerated() {
            coefficients[0] = byte
            let random = SecureRandom.bytes(threshold - 1)
            for j in 1..<threshold { coefficients[j] = random[j - 1] }
            for s in shares.indices {
                // Horner: f(x) = c0 + x(c1 + x(c2 + ...))
                var y: UInt8 = 0
                for c in coefficients.reversed() { y = mul(y, shares[s].x) ^ c }
                shares[s].y[i] = y
            }
            zeroize(&coefficients)
        }
        return shares
    }

    /// The secret from `threshold` or more distinct shares of equal length (Lagrange at x = 0).
    public static func combine(_ shares: [(x: UInt8, y: [UInt8])]) throws(CryptoError) -> [UInt8] {
        guard let length = shares.first?.y.count, length > 0 else { throw CryptoError("no shares") }
        guard shares.allSatisfy({ $0.y.count == length && $0.x != 0 }) else { throw CryptoError("shares of different lengths") }
        guard Set(shares.map(\.x)).count == shares.count else { throw CryptoError("the same share twice") }
        // Lagrange basis at 0: l_j = prod_{m != j} x_m / (x_m - x_j); subtraction is xor.
        var basis: [UInt8] = []
        for (j, sj) in shares.enumerated() {
            var l: UInt8 = 1
            for (m, sm) in shares.enumerated() where m != j { l = mul(l, div(sm.x, sm.x ^ sj.x)) }
            basis.append(l)
        }
        var secret = [UInt8](repeating: 0, count: length)
        for i in 0..<length {
            var acc: UInt8 = 0
            for (j, s) in shares.enumerated() { acc ^= mul(s.y[i], basis[j]) }
            secret[i] = acc
        }
        return secret
    }
}
