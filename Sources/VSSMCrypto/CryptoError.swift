import VSSMWire
import COpenSSL

/// The one error type of the crypto layer. `message` is safe to show to a client: it never
/// contains key material.
public struct CryptoError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }

    /// The oldest queued OpenSSL error, prefixed with what we were doing; clears the queue.
    static func openssl(_ what: String) -> CryptoError {
        var buf = [CChar](repeating: 0, count: 256)
        copenssl_last_error(&buf, buf.count)
        let detail = String(cBuffer: buf)
        return CryptoError(detail.isEmpty ? what : "\(what): \(detail)")
    }
}

/// Non-throwing variant for bodies that only call C.
@inline(__always)
func bytesPointer<R>(_ bytes: [UInt8], _ body: (UnsafePointer<UInt8>, Int) -> R) -> R {
    if bytes.isEmpty {
        var zero: UInt8 = 0
        return body(&zero, 0)
    }
    return bytes.withUnsafeBufferPointer { buf in body(buf.baseAddress.unsafelyUnwrapped, buf.count) }
}

/// Runs `body` with a pointer to the bytes (never NULL, even for an empty array, because some
/// OpenSSL calls reject NULL inputs).
@inline(__always)
func withBytes<R>(_ bytes: [UInt8], _ body: (UnsafePointer<UInt8>, Int) throws(CryptoError) -> R) throws(CryptoError) -> R {
    if bytes.isEmpty {
        var zero: UInt8 = 0
        return try body(&zero, 0)
    }
    return try bytes.withUnsafeBufferPointer { (buf) throws(CryptoError) -> R in
        // swiftlint:disable:next force_unwrapping
        try body(buf.baseAddress.unsafelyUnwrapped, buf.count)
    }
}

/// Overwrites a buffer we own that held secrets.
public func zeroize(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBufferPointer { buf in
        if let base = buf.baseAddress { OPENSSL_cleanse(base, buf.count) }
    }
}

public enum ProcessHardening {
    /// RLIMIT_CORE 0 and PR_SET_DUMPABLE 0: key material never lands in a core file.
    @discardableResult
    public static func refuseCoreDumps() -> Bool { copenssl_refuse_core_dumps() == 0 }
}
