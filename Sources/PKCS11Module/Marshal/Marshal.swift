import CPKCS11
import Glibc
import TokenCore

/// Every pointer the module receives is read or written here and nowhere else (STYLE.md rule 3).
/// Lengths from the caller are checked before use; nothing here can trap on caller input.
enum Marshal {
    /// Upper bound for any caller-supplied length we copy (guards against garbage lengths).
    static let maxInput = 64 << 20
    static let maxAttributes = 4096

    static func count(_ n: CK_ULONG, limit: Int) throws(TokenError) -> Int {
        guard n <= CK_ULONG(limit) else { throw .argumentsBad("length \(n) is too large") }
        return Int(n)
    }

    /// Copies `n` bytes from a caller buffer (NULL allowed only with n == 0).
    static func bytes(_ p: UnsafeRawPointer?, _ n: CK_ULONG) throws(TokenError) -> [UInt8] {
        let len = try count(n, limit: maxInput)
        if len == 0 { return [] }
        guard let p else { throw .argumentsBad("NULL buffer with length \(n)") }
        return Array(UnsafeRawBufferPointer(start: p, count: len))
    }

    /// A NUL-terminated string at a pointer the caller may have got wrong (C_Initialize's
    /// `pReserved`, which the spec says is NULL and we accept as a config path): copied through a
    /// pipe, so an unmapped address is EFAULT from the kernel (CKR_ARGUMENTS_BAD) instead of a
    /// SIGSEGV in the host. Page by page, never across a page boundary in one copy, at most `limit` bytes.
    static func probedCString(_ p: UnsafeRawPointer, limit: Int = 4096) throws(TokenError) -> String {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw .functionFailed("pipe failed: \(errno)") }
        defer { close(fds[0]); close(fds[1]) }
        // Close-on-exec, so a host that forks and execs meanwhile does not inherit them.
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        // sysconf answers a positive page size (or -1): anything else falls back to 4 KiB pages.
        let page = UInt(exactly: sysconf(Int32(_SC_PAGESIZE))).flatMap { $0 >= 4096 && $0 <= 1 << 30 ? $0 : nil } ?? 4096
        var out: [UInt8] = []
        var address = UInt(bitPattern: p)
        var chunk = [UInt8](repeating: 0, count: Int(page))
        while out.count < limit {
            // Up to the end of this page (at most `page` bytes, so the conversion cannot fail).
            guard let toPageEnd = Int(exactly: page - address % page) else { throw .argumentsBad("pReserved") }
            let n = min(toPageEnd, limit - out.count)
            guard let src = UnsafeRawPointer(bitPattern: address) else { throw .argumentsBad("pReserved is not a readable string") }
            let written = Glibc.write(fds[1], src, n)
            guard written == n else { throw .argumentsBad("pReserved is not a readable string") }
            let got = chunk.withUnsafeMutableBytes { Glibc.read(fds[0], $0.baseAddress, n) }
            guard got == n else { throw .functionFailed("pipe read failed") }
            if let nul = chunk.prefix(n).firstIndex(of: 0) {
                out += chunk.prefix(nul)
                return String(decoding: out, as: UTF8.self)
            }
            out += chunk.prefix(n)
            // Wraps past the top of the address space to 0, which the guard above refuses.
            address &+= UInt(bitPattern: n)
        }
        throw .argumentsBad("pReserved is not a NUL-terminated path of at most \(limit) bytes")
    }

    static func string(_ p: UnsafeRawPointer?, _ n: CK_ULONG) throws(TokenError) -> String {
        String(decoding: try bytes(p, n), as: UTF8.self)
    }

    static func template(_ p: UnsafeMutablePointer<CK_ATTRIBUTE>?, _ n: CK_ULONG) throws(TokenError) -> Template {
        let c = try count(n, limit: maxAttributes)
        if c == 0 { return Template() }
        guard let p else { throw .argumentsBad("NULL template with \(n) attributes") }
        var out: [(AttributeType, [UInt8])] = []
        out.reserveCapacity(c)
        for i in 0..<c {
            let a = p[i]
            out.append((AttributeType(rawValue: a.type), try bytes(a.pValue, a.ulValueLen)))
        }
        return Template(out)
    }

    static func mechanism(_ p: UnsafeMutablePointer<CK_MECHANISM>?) throws(TokenError) -> Mechanism {
        guard let m = p?.pointee else { throw .argumentsBad("NULL mechanism") }
        let type = MechanismType(rawValue: m.mechanism)
        func param<T>(_ t: T.Type) throws(TokenError) -> T? {
            guard let raw = m.pParameter else { return nil }
            guard m.ulParameterLen == CK_ULONG(MemoryLayout<T>.size) else {
                throw .mechanismParamInvalid("parameter length \(m.ulParameterLen), expected \(MemoryLayout<T>.size)")
            }
            return raw.loadUnaligned(as: T.self)
        }
        switch type {
        case let t where t.takesPSSParameters:
            guard let pss = try param(CK_RSA_PKCS_PSS_PARAMS.self),
                let hash = HashAlgorithm(mechanism: MechanismType(rawValue: pss.hashAlg)),
                let mgf = HashAlgorithm(mgf: pss.mgf), pss.sLen <= 1 << 16
            else {
                throw .mechanismParamInvalid("CK_RSA_PKCS_PSS_PARAMS")
            }
            return Mechanism(type, .pss(hash: hash, mgf1: mgf, saltLength: Int(pss.sLen)))
        case .rsaPKCSOAEP:
            guard let oaep = try param(CK_RSA_PKCS_OAEP_PARAMS.self),
                let hash = HashAlgorithm(mechanism: MechanismType(rawValue: oaep.hashAlg)),
                let mgf = HashAlgorithm(mgf: oaep.mgf)
            else { throw .mechanismParamInvalid("CK_RSA_PKCS_OAEP_PARAMS") }
            let label = oaep.source == 0 ? [] : try bytes(oaep.pSourceData, oaep.ulSourceDataLen)
            return Mechanism(type, .oaep(hash: hash, mgf1: mgf, label: label))
        case .aesCTR:
            guard let c = try param(CK_AES_CTR_PARAMS.self), c.ulCounterBits >= 1, c.ulCounterBits <= 128 else {
                throw .mechanismParamInvalid("CK_AES_CTR_PARAMS")
            }
            return Mechanism(type, .iv(withUnsafeBytes(of: c.cb) { Array($0) }))
        case .aesGCM:
            guard let g = try param(CK_GCM_PARAMS.self) else { throw .mechanismParamInvalid("CK_GCM_PARAMS") }
            return Mechanism(
                type, .gcm(iv: try bytes(g.pIv, g.ulIvLen), aad: try bytes(g.pAAD, g.ulAADLen), tagBits: Int(clamping: g.ulTagBits)))
        case .concatenateBaseAndData, .concatenateDataAndBase, .xorBaseAndData, .aesECBEncryptData:
            guard let d = try param(CK_KEY_DERIVATION_STRING_DATA.self) else {
                throw .mechanismParamInvalid("CK_KEY_DERIVATION_STRING_DATA")
            }
            return Mechanism(type, .data(try bytes(d.pData, d.ulLen)))
        case .aesCBCEncryptData:
            guard let c = try param(CK_AES_CBC_ENCRYPT_DATA_PARAMS.self) else {
                throw .mechanismParamInvalid("CK_AES_CBC_ENCRYPT_DATA_PARAMS")
            }
            return Mechanism(type, .ivData(iv: withUnsafeBytes(of: c.iv) { Array($0) }, data: try bytes(c.pData, c.length)))
        case .concatenateBaseAndKey:
            guard let k = try param(CK_OBJECT_HANDLE.self) else { throw .mechanismParamInvalid("CK_OBJECT_HANDLE") }
            return Mechanism(type, .key(k))  // CK_ULONG is UInt: no conversion
        case .extractKeyFromKey:
            guard let bit = try param(CK_ULONG.self) else { throw .mechanismParamInvalid("CK_EXTRACT_PARAMS") }
            return Mechanism(type, .bitIndex(bit))
        case .eddsa:
            // CK_EDDSA_PARAMS (PKCS#11 3.0; not in the 2.40 header): CK_BBOOL phFlag, then
            // CK_ULONG ulContextDataLen and CK_BYTE_PTR pContextData at their natural alignment.
            guard let raw = m.pParameter else { return Mechanism(type) }
            let size = 3 * MemoryLayout<CK_ULONG>.size
            guard m.ulParameterLen == CK_ULONG(size) else { throw .mechanismParamInvalid("CK_EDDSA_PARAMS") }
            let ph = raw.load(as: UInt8.self)
            let contextLen = raw.loadUnaligned(fromByteOffset: MemoryLayout<CK_ULONG>.size, as: CK_ULONG.self)
            return Mechanism(type, .eddsa(prehash: ph != 0, contextLength: contextLen))
        case .mlDSA:
            // CK_SIGN_ADDITIONAL_CONTEXT (PKCS#11 3.2), optional: the hedge variant and a context string.
            guard m.pParameter != nil else { return Mechanism(type) }
            guard let c = try param(CK_SIGN_ADDITIONAL_CONTEXT.self) else { throw .mechanismParamInvalid("CK_SIGN_ADDITIONAL_CONTEXT") }
            guard c.ulContextLen <= 255 else { throw .mechanismParamInvalid("an ML-DSA context is at most 255 bytes") }
            return Mechanism(type, .signContext(hedge: c.hedgeVariant, context: try bytes(c.pContext, c.ulContextLen)))
        case .ecdh1Derive:
            guard let e = try param(CK_ECDH1_DERIVE_PARAMS.self) else { throw .mechanismParamInvalid("CK_ECDH1_DERIVE_PARAMS") }
            return Mechanism(
                type,
                .ecdh(
                    kdf: UInt(e.kdf), sharedData: try bytes(e.pSharedData, e.ulSharedDataLen),
                    publicData: try bytes(e.pPublicData, e.ulPublicDataLen)))
        default:
            if m.ulParameterLen > 0 { return Mechanism(type, .raw(try bytes(m.pParameter, m.ulParameterLen))) }
            return Mechanism(type)
        }
    }

    /// The caller's output capacity: nil when the buffer is NULL (a size query).
    static func capacity(_ out: UnsafeMutablePointer<CK_BYTE>?, _ len: UnsafeMutablePointer<CK_ULONG>?) throws(TokenError) -> Int? {
        guard let len else { throw .argumentsBad("NULL length pointer") }
        guard out != nil else { return nil }
        return Int(clamping: len.pointee)
    }

    /// Writes a two-call result (PKCS#11 2.40 §5.2): the length always, the bytes when given.
    static func write(_ r: SizedOutput, _ out: UnsafeMutablePointer<CK_BYTE>?, _ len: UnsafeMutablePointer<CK_ULONG>?) -> CK_RV {
        guard let len else { return CK_RV(CKR_ARGUMENTS_BAD) }
        switch r {
        case .length(let n):
            len.pointee = CK_ULONG(n)
        case .bytes(let b):
            if let out, !b.isEmpty { b.withUnsafeBufferPointer { out.update(from: $0.baseAddress.unsafelyUnwrapped, count: b.count) } }
            len.pointee = CK_ULONG(b.count)
        }
        return ok
    }

    /// Sets the length for a `.bufferTooSmall` error so the caller can retry (op stays active).
    static func reportRequired(_ e: TokenError, _ len: UnsafeMutablePointer<CK_ULONG>?) {
        if case .bufferTooSmall(let n) = e { len?.pointee = CK_ULONG(n) }
    }

    /// C_GetAttributeValue's per-attribute rules (2.40 §5.7): every attribute is processed; the
    /// return code reports the last kind of problem seen.
    static func writeAttributes(_ results: [Library.AttributeResult], into p: UnsafeMutablePointer<CK_ATTRIBUTE>) -> CK_RV {
        var rv = ok
        for (i, r) in results.enumerated() {
            switch r {
            case .sensitive:
                p[i].ulValueLen = cpkcs11_unavailable_information
                rv = CK_RV(CKR_ATTRIBUTE_SENSITIVE)
            case .invalid:
                p[i].ulValueLen = cpkcs11_unavailable_information
                rv = CK_RV(CKR_ATTRIBUTE_TYPE_INVALID)
            case .value(let v):
                if let dst = p[i].pValue {
                    if p[i].ulValueLen < CK_ULONG(v.count) {
                        p[i].ulValueLen = cpkcs11_unavailable_information
                        rv = CK_RV(CKR_BUFFER_TOO_SMALL)
                        continue
                    }
                    if !v.isEmpty { v.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress.unsafelyUnwrapped, byteCount: v.count) } }
                }
                p[i].ulValueLen = CK_ULONG(v.count)
            }
        }
        return rv
    }

    /// Fills a fixed-size, space-padded CK_UTF8CHAR field (never NUL-terminated).
    static func pad<T>(_ s: String, _ field: inout T) {
        withUnsafeMutableBytes(of: &field) { buf in
            let bytes = Array(s.utf8.prefix(buf.count))
            for i in 0..<buf.count { buf[i] = i < bytes.count ? bytes[i] : 0x20 }
        }
    }

    static func writeHandles(_ hs: [UInt], _ p: UnsafeMutablePointer<CK_ULONG>, _ count: UnsafeMutablePointer<CK_ULONG>) {
        for (i, h) in hs.enumerated() { p[i] = CK_ULONG(h) }
        count.pointee = CK_ULONG(hs.count)
    }
}
