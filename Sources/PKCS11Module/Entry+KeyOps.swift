public import CPKCS11
import TokenCore

// PKCS#11 2.40 §5.14 (C_WrapKey, C_UnwrapKey, C_DeriveKey) and §5.11 C_DigestKey: executed in the
// key service; key material never passes through the module (except the value of a key its
// creator made readable, which C_DigestKey digests like data).

@implementation @c
public func C_DigestKey(_ hSession: CK_SESSION_HANDLE, _ hKey: CK_OBJECT_HANDLE) -> CK_RV {
    entry("C_DigestKey") { () throws(TokenError) in
        try library.digestKey(hSession, key: ObjectHandle(rawValue: hKey)); return ok
    }
}

@implementation @c
public func C_WrapKey(
    _ hSession: CK_SESSION_HANDLE, _ pMechanism: UnsafeMutablePointer<CK_MECHANISM>?, _ hWrappingKey: CK_OBJECT_HANDLE,
    _ hKey: CK_OBJECT_HANDLE, _ pWrappedKey: UnsafeMutablePointer<CK_BYTE>?, _ pulWrappedKeyLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV {
    sized("C_WrapKey", pWrappedKey, pulWrappedKeyLen) { (cap: Int?) throws(TokenError) in
        try library.wrapKey(
            hSession, mechanism: try Marshal.mechanism(pMechanism), wrapping: ObjectHandle(rawValue: hWrappingKey),
            key: ObjectHandle(rawValue: hKey), capacity: cap)
    }
}

@implementation @c
public func C_UnwrapKey(
    _ hSession: CK_SESSION_HANDLE, _ pMechanism: UnsafeMutablePointer<CK_MECHANISM>?, _ hUnwrappingKey: CK_OBJECT_HANDLE,
    _ pWrappedKey: UnsafeMutablePointer<CK_BYTE>?, _ ulWrappedKeyLen: CK_ULONG, _ pTemplate: UnsafeMutablePointer<CK_ATTRIBUTE>?,
    _ ulAttributeCount: CK_ULONG, _ phKey: UnsafeMutablePointer<CK_OBJECT_HANDLE>?
) -> CK_RV {
    entry("C_UnwrapKey") { () throws(TokenError) in
        guard let phKey else { throw .argumentsBad("NULL phKey") }
        phKey.pointee = try library.unwrapKey(
            hSession, mechanism: try Marshal.mechanism(pMechanism), unwrapping: ObjectHandle(rawValue: hUnwrappingKey),
            wrapped: try Marshal.bytes(pWrappedKey, ulWrappedKeyLen),
            template: try Marshal.template(pTemplate, ulAttributeCount)
        ).rawValue
        return ok
    }
}

@implementation @c
public func C_DeriveKey(
    _ hSession: CK_SESSION_HANDLE, _ pMechanism: UnsafeMutablePointer<CK_MECHANISM>?, _ hBaseKey: CK_OBJECT_HANDLE,
    _ pTemplate: UnsafeMutablePointer<CK_ATTRIBUTE>?, _ ulAttributeCount: CK_ULONG, _ phKey: UnsafeMutablePointer<CK_OBJECT_HANDLE>?
) -> CK_RV {
    entry("C_DeriveKey") { () throws(TokenError) in
        guard let phKey else { throw .argumentsBad("NULL phKey") }
        phKey.pointee = try library.deriveKey(
            hSession, mechanism: try Marshal.mechanism(pMechanism), base: ObjectHandle(rawValue: hBaseKey),
            template: try Marshal.template(pTemplate, ulAttributeCount)
        ).rawValue
        return ok
    }
}
