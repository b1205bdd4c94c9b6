import Glibc
import Synchronization
public import VSSMCrypto

/// The node's key store on disk: AES-256-GCM under a key derived (HKDF-SHA256) from the RPC
/// private key, so the file is useless without the bootstrap secret. Written atomically
/// (temp file, fsync, rename, fsync of the directory): a crash leaves the old or the new state.
///
/// Layout: magic `VSSMSEAL1\n` || nonce(12) || ciphertext || tag(16); the magic is the AAD.
public struct SealedStateFile: Sendable {
    public let directory: String
    public var path: String { directory + "/keystore.sealed" }
    private let key: [UInt8]
    static let magic = Array("VSSMSEAL1\n".utf8)

    /// `rpcKeyPKCS8` must be the canonical (OpenSSL re-encoded) PKCS#8 so that the same key
    /// supplied in another encoding (e.g. by a Go tool) unseals the same file.
    public init(directory: String, rpcKey: PrivateKey) throws(CryptoError) {
        self.directory = directory
        key = try rpcKey.derivedKey(salt: "vssm state seal", info: "keystore v1")
    }

    public func seal(_ plaintext: [UInt8]) throws(CryptoError) -> [UInt8] {
        let nonce = SecureRandom.bytes(12)
        let aes = try BlockCipher(kind: .aes, key: key)
        let (ct, tag) = try aes.gcmSeal(nonce: nonce, aad: SealedStateFile.magic, plaintext)
        return SealedStateFile.magic + nonce + ct + tag
    }

    public func unseal(_ file: [UInt8]) throws(CryptoError) -> [UInt8] {
        let m = SealedStateFile.magic
        guard file.count >= m.count + 28, Array(file.prefix(m.count)) == m else {
            throw CryptoError("not a sealed key store")
        }
        let nonce = Array(file[m.count..<(m.count + 12)])
        let body = Array(file[(m.count + 12)...])
        let aes = try BlockCipher(kind: .aes, key: key)
        do {
            return try aes.gcmOpen(nonce: nonce, aad: m, Array(body.dropLast(16)), tag: Array(body.suffix(16)))
        } catch {
            throw CryptoError("the key store was sealed with a different RPC key (or is damaged)")
        }
    }

    /// The previous generation, kept beside the newest: one damaged file never loses every key.
    public var previousPath: String { path + ".prev" }

    /// Contents of the newest file, or nil when there is none yet.
    public func read() throws(ServiceError) -> [UInt8]? {
        try FileUtil.readIfPresent(path)
    }

    /// What `load` found: the plaintext and, when the newest generation could not be used, why.
    public struct Loaded {
        public var plaintext: [UInt8]
        public var fromPrevious: String?
    }

    /// The newest generation that authenticates under this RPC key; falls back to the previous
    /// generation when the newest is missing, truncated or fails its GCM tag. When neither
    /// authenticates the newest file's error is thrown (most likely a wrong RPC key). nil: no state yet.
    public func load() throws(ServiceError) -> Loaded? {
        let newest = try? read()
        let previous = try? FileUtil.readIfPresent(previousPath)
        var newestError: String? = nil
        if let newest = newest ?? nil {
            do { return Loaded(plaintext: try unseal(newest)) } catch { newestError = error.message }
        } else if (previous ?? nil) == nil {
            return nil
        }
        if let previous = previous ?? nil, let plain = try? unseal(previous) {
            return Loaded(plaintext: plain, fromPrevious: newestError ?? "\(path) is missing or unreadable")
        }
        throw .badRequest(newestError ?? "\(path) cannot be read")
    }

    /// Replaces the newest generation; the one it replaces becomes the previous generation. At every
    /// instant both names hold a complete file (hard link, then atomic renames).
    public func write(_ sealed: [UInt8]) throws(ServiceError) {
        if access(path, F_OK) == 0 {
            let tmp = previousPath + ".tmp.\(getpid())"
            unlink(tmp)
            if link(path, tmp) == 0 {
                if rename(tmp, previousPath) != 0 { unlink(tmp) }
            } else if let current = try? FileUtil.readFile(path) {
                // File systems without hard links: a copy.
                try? FileUtil.writeAtomically(path: previousPath, bytes: current, mode: 0o600)
            }
        }
        try FileUtil.writeAtomically(path: path, bytes: sealed, mode: 0o600)
    }
}

extension PrivateKey {
    /// A 32-byte key derived (HKDF-SHA256) from this key's canonical PKCS#8 encoding: the sealed
    /// store and the audit chain take their keys from the RPC key this way, each with its own labels.
    func derivedKey(salt: String, info: String) throws(CryptoError) -> [UInt8] {
        var der = pkcs8DER
        defer { zeroize(&der) }
        return try KDF.hkdfSHA256(key: der, salt: Array(salt.utf8), info: Array(info.utf8), length: 32)
    }
}

public enum FileUtil {
    static func errorText() -> String { String(cString: strerror(errno)) }

    public static func makeDirectory(_ path: String, mode: UInt32 = 0o700) throws(ServiceError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw .internalError("cannot create \(current): \(errorText())")
            }
        }
    }

    /// Temporary names unique within the process (two threads may write one path's next version).
    static let tmpCounter = Atomic<Int>(0)

    public static func writeAtomically(path: String, bytes: [UInt8], mode: UInt32) throws(ServiceError) {
        let tmp = path + ".tmp.\(getpid()).\(FileUtil.tmpCounter.wrappingAdd(1, ordering: .relaxed).newValue)"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .internalError("cannot create \(tmp): \(errorText())") }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBufferPointer { Glibc.write(fd, $0.baseAddress.unsafelyUnwrapped + offset, bytes.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errorText()
                close(fd)
                unlink(tmp)
                throw .internalError("cannot write \(tmp): \(e)")
            }
            offset += n
        }
        guard fsync(fd) == 0 else {
            let e = errorText()
            close(fd)
            unlink(tmp)
            throw .internalError("cannot sync \(tmp): \(e)")
        }
        close(fd)
        guard rename(tmp, path) == 0 else {
            let e = errorText()
            unlink(tmp)
            throw .internalError("cannot rename \(tmp): \(e)")
        }
        let dir = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
    }

    /// Names in a directory (without `.` and `..`); nil when it cannot be opened.
    public static func listDirectory(_ path: String) -> [String]? {
        guard let d = opendir(path) else { return nil }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Contents of a file, or nil when it does not exist.
    public static func readIfPresent(_ path: String) throws(ServiceError) -> [UInt8]? {
        if access(path, F_OK) != 0 && errno == ENOENT { return nil }
        return try readFile(path)
    }

    public static func readFile(_ path: String, limit: Int = 64 << 20) throws(ServiceError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .internalError("cannot open \(path): \(errorText())") }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = Glibc.read(fd, &chunk, chunk.count)
            if n < 0 { if errno == EINTR { continue }; throw .internalError("cannot read \(path): \(errorText())") }
            if n == 0 { break }
            out += chunk.prefix(n)
            guard out.count <= limit else { throw .internalError("\(path) is too large") }
        }
        return out
    }
}
