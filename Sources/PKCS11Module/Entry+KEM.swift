public import CPKCS11
import TokenCore

// PKCS#11 3.2 C_EncapsulateKey / C_DecapsulateKey (CKM_ML_KEM), through the 3.2 interface
// (C_GetInterface with version 3.2; the 2.40 and 3.0 function lists do not carry them).

@implementation @c
public func C_EncapsulateKey(
    _ hSession: CK_SESSION_HANDLE, _ pMechanism: UnsafeMutablePointer<CK_MECHANISM>?, _ hPublicKey: CK_OBJECT_HANDLE,
    _ pTemplate: UnsafeMutablePointer<CK_ATTRIBUTE>?, _ ulAttributeCount: CK_ULONG, _ pCiphertext: UnsafeMutablePointer<CK_BYTE>?,
    _ pulCiphertextLen: UnsafeMutablePointer<CK_ULONG>?, _ phKey: UnsafeMutablePointer<CK_OBJECT_HANDLE>?
) -> CK_RV {
    // The ciphertext follows the two-call convention: a size query makes no key.
    var made: CK_OBJECT_HANDLE?
    let rv = sized("C_EncapsulateKey", pCiphertext, pulCiphertextLen) { (capacity: Int?) throws(TokenError) in
        if capacity != nil, phKey == nil { throw .argumentsBad("NULL phKey") }
        let r = try library.encapsulateKey(
            hSession, mechanism: try Marshal.mechanism(pMechanism), publicKey: ObjectHandle(rawValue: hPublicKey),
            template: try Marshal.template(pTemplate, ulAttributeCount), capacity: capacity)
        made = r.key?.rawValue
        return r.ciphertext
    }
    if rv == CK_RV(CKR_OK), let made, let phKey { phKey.pointee = made }
    return rv
}

@implementation @c
public func C_DecapsulateKey(
    _ hSession: CK_SESSION_HANDLE, _ pMechanism: UnsafeMutablePointer<CK_MECHANISM>?, _ hPrivateKey: CK_OBJECT_HANDLE,
    _ pTemplate: UnsafeMutablePointer<CK_ATTRIBUTE>?, _ ulAttributeCount: CK_ULONG, _ pCiphertext: UnsafeMutablePointer<CK_BYTE>?,
    _ ulCiphertextLen: CK_ULONG, _ phKey: UnsafeMutablePointer<CK_OBJECT_HANDLE>?
) -> CK_RV {
    entry("C_DecapsulateKey") { () throws(TokenError) in
        guard let phKey else { throw .argumentsBad("NULL phKey") }
        phKey.pointee = try library.decapsulateKey(
            hSession, mechanism: try Marshal.mechanism(pMechanism), privateKey: ObjectHandle(rawValue: hPrivateKey),
            template: try Marshal.template(pTemplate, ulAttributeCount), ciphertext: try Marshal.bytes(pCiphertext, ulCiphertextLen)
        ).rawValue
        return ok
    }
}
