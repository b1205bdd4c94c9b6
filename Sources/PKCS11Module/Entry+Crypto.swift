public import CPKCS11
import TokenCore

// PKCS#11 2.40 §5.11 Digest, §5.12 Sign, §5.13 Verify, §5.15 Random.

/// Two-call outputs: on CKR_BUFFER_TOO_SMALL the required length is reported too.
@inline(__always)
func sized(
    _ name: StaticString, _ out: UnsafeMutablePointer<CK_BYTE>?, _ len: UnsafeMutablePointer<CK_ULONG>?,
    _ body: (Int?) throws(TokenError) -> SizedOutput
) -> CK_RV {
    entry(name) { () throws(TokenError) in
        do throws(TokenError) {
            return Marshal.write(try body(try Marshal.capacity(out, len)), out, len)
        } catch {
            Marshal.reportRequired(error, len)
            throw error
        }
    }
}

/// Caller data for an active operation. If it cannot be taken (NULL with a length, or longer
/// than `Marshal.maxInput`) the operation ends, as any error other than CKR_BUFFER_TOO_SMALL must
/// (PKCS#11 §5.2); before, the session stayed stuck in CKR_OPERATION_ACTIVE.
func operationInput(_ h: CK_SESSION_HANDLE, _ p: UnsafeRawPointer?, _ n: CK_ULONG) throws(TokenError) -> [UInt8] {
    do { return try Marshal.bytes(p, n) } catch {
        library.endOperation(h)
        throw error
    }
}

/// Caller data an operation may hash in place (no copy, no size limit): only its pointer and
/// length are checked here; a NULL pointer with a length, or a length beyond Int, ends the operation.
func callerData(_ h: CK_SESSION_HANDLE, _ p: UnsafeRawPointer?, _ n: CK_ULONG) throws(TokenError) -> CallerData {
    guard let count = Int(exactly: n), count == 0 || p != nil else {
        library.endOperation(h)
        throw .argumentsBad("NULL buffer or impossible length \(n)")
    }
    return CallerData(UnsafeRawBufferPointer(start: count == 0 ? nil : p, count: count))
}

/// PKCS#11 2.40 §5.11 C_DigestInit (local).
@implementation @c
public func C_DigestInit(_ hSession: CK_SESSION_HANDLE, _ pMechanism: UnsafeMutablePointer<CK_MECHANISM>?) -> CK_RV {
    entry("C_DigestInit") { () throws(TokenError) in
        try library.digestInit(hSession, mechanism: try Marshal.mechanism(pMechanism)); return ok
    }
}

@implementation @c
public func C_Digest(
    _ hSession: CK_SESSION_HANDLE, _ pData: UnsafeMutablePointer<CK_BYTE>?, _ ulDataLen: CK_ULONG,
    _ pDigest: UnsafeMutablePointer<CK_BYTE>?, _ pulDigestLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV {
    sized("C_Digest", pDigest, pulDigestLen) { (cap: Int?) throws(TokenError) in
        try library.digest(hSession, input: try callerData(hSession, pData, ulDataLen), capacity: cap)
    }
}

@implementation @c
public func C_DigestUpdate(_ hSession: CK_SESSION_HANDLE, _ pPart: UnsafeMutablePointer<CK_BYTE>?, _ ulPartLen: CK_ULONG) -> CK_RV {
    entry("C_DigestUpdate") { () throws(TokenError) in
        try library.digestUpdate(hSession, input: try callerData(hSession, pPart, ulPartLen)); return ok
    }
}

@implementation @c
public func C_DigestFinal(
    _ hSession: CK_SESSION_HANDLE, _ pDigest: UnsafeMutablePointer<CK_BYTE>?, _ pulDigestLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV {
    sized("C_DigestFinal", pDigest, pulDigestLen) { (cap: Int?) throws(TokenError) in try library.digestFinal(hSession, capacity: cap) }
}

/// PKCS#11 2.40 §5.12 C_SignInit.
@implementation @c
public func C_SignInit(_ hSession: CK_SESSION_HANDLE, _ pMechanism: UnsafeMutablePointer<CK_MECHANISM>?, _ hKey: CK_OBJECT_HANDLE) -> CK_RV
{
    entry("C_SignInit") { () throws(TokenError) in
        try library.signInit(hSession, mechanism: try Marshal.mechanism(pMechanism), key: ObjectHandle(rawValue: hKey))
        return ok
    }
}

/// PKCS#11 2.40 §5.12 C_Sign. A size query is answered locally and keeps the operation active.
@implementation @c
public func C_Sign(
    _ hSession: CK_SESSION_HANDLE, _ pData: UnsafeMutablePointer<CK_BYTE>?, _ ulDataLen: CK_ULONG,
    _ pSignature: UnsafeMutablePointer<CK_BYTE>?, _ pulSignatureLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV {
    sized("C_Sign", pSignature, pulSignatureLen) { (cap: Int?) throws(TokenError) in
        try library.sign(hSession, input: try callerData(hSession, pData, ulDataLen), capacity: cap)
    }
}

@implementation @c
public func C_SignUpdate(_ hSession: CK_SESSION_HANDLE, _ pPart: UnsafeMutablePointer<CK_BYTE>?, _ ulPartLen: CK_ULONG) -> CK_RV {
    entry("C_SignUpdate") { () throws(TokenError) in
        try library.signUpdate(hSession, input: try callerData(hSession, pPart, ulPartLen)); return ok
    }
}

@implementation @c
public func C_SignFinal(
    _ hSession: CK_SESSION_HANDLE, _ pSignature: UnsafeMutablePointer<CK_BYTE>?, _ pulSignatureLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV {
    sized("C_SignFinal", pSignature, pulSignatureLen) { (cap: Int?) throws(TokenError) in try library.signFinal(hSession, capacity: cap) }
}

/// PKCS#11 2.40 §5.13 C_VerifyInit: verification runs locally with the public key.
@implementation @c
public func C_VerifyInit(
    _ hSession: CK_SESSION_HANDLE, _ pMechanism: UnsafeMutablePointer<CK_MECHANISM>?, _ hKey: CK_OBJECT_HANDLE
) -> CK_RV {
    entry("C_VerifyInit") { () throws(TokenError) in
        try library.verifyInit(hSession, mechanism: try Marshal.mechanism(pMechanism), key: ObjectHandle(rawValue: hKey))
        return ok
    }
}

@implementation @c
public func C_Verify(
    _ hSession: CK_SESSION_HANDLE, _ pData: UnsafeMutablePointer<CK_BYTE>?, _ ulDataLen: CK_ULONG,
    _ pSignature: UnsafeMutablePointer<CK_BYTE>?, _ ulSignatureLen: CK_ULONG
) -> CK_RV {
    entry("C_Verify") { () throws(TokenError) in
        try library.verify(
            hSession, input: try callerData(hSession, pData, ulDataLen), signature: try operationInput(hSession, pSignature, ulSignatureLen)
        )
        return ok
    }
}

@implementation @c
public func C_VerifyUpdate(_ hSession: CK_SESSION_HANDLE, _ pPart: UnsafeMutablePointer<CK_BYTE>?, _ ulPartLen: CK_ULONG) -> CK_RV {
    entry("C_VerifyUpdate") { () throws(TokenError) in
        try library.verifyUpdate(hSession, input: try callerData(hSession, pPart, ulPartLen)); return ok
    }
}

@implementation @c
public func C_VerifyFinal(_ hSession: CK_SESSION_HANDLE, _ pSignature: UnsafeMutablePointer<CK_BYTE>?, _ ulSignatureLen: CK_ULONG) -> CK_RV
{
    entry("C_VerifyFinal") { () throws(TokenError) in
        try library.verifyFinal(hSession, signature: try operationInput(hSession, pSignature, ulSignatureLen))
        return ok
    }
}

/// PKCS#11 2.40 §5.15 C_GenerateRandom (local CSPRNG).
@implementation @c
public func C_GenerateRandom(_ hSession: CK_SESSION_HANDLE, _ pRandomData: UnsafeMutablePointer<CK_BYTE>?, _ ulRandomLen: CK_ULONG) -> CK_RV
{
    entry("C_GenerateRandom") { () throws(TokenError) in
        let n = try Marshal.count(ulRandomLen, limit: 1 << 20)
        guard let pRandomData else { throw .argumentsBad("NULL buffer") }
        let r = try library.generateRandom(hSession, count: n)
        r.withUnsafeBufferPointer { if let b = $0.baseAddress { pRandomData.update(from: b, count: n) } }
        return ok
    }
}

/// PKCS#11 2.40 §5.15 C_SeedRandom: the seed is mixed into the local CSPRNG (credited with no entropy).
@implementation @c
public func C_SeedRandom(_ hSession: CK_SESSION_HANDLE, _ pSeed: UnsafeMutablePointer<CK_BYTE>?, _ ulSeedLen: CK_ULONG) -> CK_RV {
    entry("C_SeedRandom") { () throws(TokenError) in
        try library.seedRandom(hSession, seed: try Marshal.bytes(pSeed, ulSeedLen))
        return ok
    }
}

/// PKCS#11 2.40 §5.6 C_GetOperationState: a digest's state (two-call convention).
@implementation @c
public func C_GetOperationState(
    _ hSession: CK_SESSION_HANDLE, _ pOperationState: UnsafeMutablePointer<CK_BYTE>?,
    _ pulOperationStateLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV {
    sized("C_GetOperationState", pOperationState, pulOperationStateLen) { (cap: Int?) throws(TokenError) in
        try library.operationState(hSession, capacity: cap)
    }
}

/// PKCS#11 2.40 §5.6 C_SetOperationState: continues a saved digest in this session.
@implementation @c
public func C_SetOperationState(
    _ hSession: CK_SESSION_HANDLE, _ pOperationState: UnsafeMutablePointer<CK_BYTE>?, _ ulOperationStateLen: CK_ULONG,
    _ hEncryptionKey: CK_OBJECT_HANDLE, _ hAuthenticationKey: CK_OBJECT_HANDLE
) -> CK_RV {
    entry("C_SetOperationState") { () throws(TokenError) in
        try library.setOperationState(
            hSession, try Marshal.bytes(pOperationState, ulOperationStateLen), encryptionKey: UInt(hEncryptionKey),
            authenticationKey: UInt(hAuthenticationKey))
        return ok
    }
}
