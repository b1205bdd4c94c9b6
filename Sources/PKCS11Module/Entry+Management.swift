public import CPKCS11
import TokenCore

// PKCS#11 2.40 §5.7 object management and §5.14 key management: need the admin password
// (SO login, or a user login on a slot whose user PIN is the admin password) and a R/W session.

/// PKCS#11 2.40 §5.7 C_CreateObject: certificates, data objects, private and secret keys.
@implementation @c
public func C_CreateObject(
    _ hSession: CK_SESSION_HANDLE, _ pTemplate: UnsafeMutablePointer<CK_ATTRIBUTE>?, _ ulCount: CK_ULONG,
    _ phObject: UnsafeMutablePointer<CK_OBJECT_HANDLE>?
) -> CK_RV {
    entry("C_CreateObject") { () throws(TokenError) in
        guard let phObject else { throw .argumentsBad("NULL phObject") }
        var template = try Marshal.template(pTemplate, ulCount)
        defer { template.wipe() }
        phObject.pointee = try library.createObject(hSession, template: template).rawValue
        return ok
    }
}

/// PKCS#11 2.40 §5.7 C_CopyObject: keys are copied inside the service (session <-> token).
@implementation @c
public func C_CopyObject(
    _ hSession: CK_SESSION_HANDLE, _ hObject: CK_OBJECT_HANDLE, _ pTemplate: UnsafeMutablePointer<CK_ATTRIBUTE>?, _ ulCount: CK_ULONG,
    _ phNewObject: UnsafeMutablePointer<CK_OBJECT_HANDLE>?
) -> CK_RV {
    entry("C_CopyObject") { () throws(TokenError) in
        guard let phNewObject else { throw .argumentsBad("NULL phNewObject") }
        let template = try Marshal.template(pTemplate, ulCount)
        phNewObject.pointee = try library.copyObject(hSession, object: ObjectHandle(rawValue: hObject), template: template).rawValue
        return ok
    }
}

/// PKCS#11 2.40 §5.7 C_DestroyObject: destroys the key (both halves of a pair) or object in the service.
@implementation @c
public func C_DestroyObject(_ hSession: CK_SESSION_HANDLE, _ hObject: CK_OBJECT_HANDLE) -> CK_RV {
    entry("C_DestroyObject") { () throws(TokenError) in
        try library.destroyObject(hSession, object: ObjectHandle(rawValue: hObject))
        return ok
    }
}

/// PKCS#11 2.40 §5.7 C_SetAttributeValue: CKA_ID of keys, CKA_LABEL/CKA_ID of stored objects.
@implementation @c
public func C_SetAttributeValue(
    _ hSession: CK_SESSION_HANDLE, _ hObject: CK_OBJECT_HANDLE, _ pTemplate: UnsafeMutablePointer<CK_ATTRIBUTE>?, _ ulCount: CK_ULONG
) -> CK_RV {
    entry("C_SetAttributeValue") { () throws(TokenError) in
        try library.setAttributes(hSession, object: ObjectHandle(rawValue: hObject), template: try Marshal.template(pTemplate, ulCount))
        return ok
    }
}

/// PKCS#11 2.40 §5.14 C_GenerateKey: CKM_AES_KEY_GEN, CKM_GENERIC_SECRET_KEY_GEN (standard templates).
@implementation @c
public func C_GenerateKey(
    _ hSession: CK_SESSION_HANDLE, _ pMechanism: UnsafeMutablePointer<CK_MECHANISM>?, _ pTemplate: UnsafeMutablePointer<CK_ATTRIBUTE>?,
    _ ulCount: CK_ULONG, _ phKey: UnsafeMutablePointer<CK_OBJECT_HANDLE>?
) -> CK_RV {
    entry("C_GenerateKey") { () throws(TokenError) in
        guard let phKey else { throw .argumentsBad("NULL phKey") }
        phKey.pointee = try library.generateKey(
            hSession, mechanism: try Marshal.mechanism(pMechanism), template: try Marshal.template(pTemplate, ulCount)
        ).rawValue
        return ok
    }
}

/// PKCS#11 2.40 §5.14 C_GenerateKeyPair: CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_EC_KEY_PAIR_GEN (standard templates).
@implementation @c
public func C_GenerateKeyPair(
    _ hSession: CK_SESSION_HANDLE, _ pMechanism: UnsafeMutablePointer<CK_MECHANISM>?,
    _ pPublicKeyTemplate: UnsafeMutablePointer<CK_ATTRIBUTE>?, _ ulPublicKeyAttributeCount: CK_ULONG,
    _ pPrivateKeyTemplate: UnsafeMutablePointer<CK_ATTRIBUTE>?, _ ulPrivateKeyAttributeCount: CK_ULONG,
    _ phPublicKey: UnsafeMutablePointer<CK_OBJECT_HANDLE>?, _ phPrivateKey: UnsafeMutablePointer<CK_OBJECT_HANDLE>?
) -> CK_RV {
    entry("C_GenerateKeyPair") { () throws(TokenError) in
        guard let phPublicKey, let phPrivateKey else { throw .argumentsBad("NULL key handle pointer") }
        let pair = try library.generateKeyPair(
            hSession, mechanism: try Marshal.mechanism(pMechanism),
            publicTemplate: try Marshal.template(pPublicKeyTemplate, ulPublicKeyAttributeCount),
            privateTemplate: try Marshal.template(pPrivateKeyTemplate, ulPrivateKeyAttributeCount))
        phPublicKey.pointee = pair.public.rawValue
        phPrivateKey.pointee = pair.private.rawValue
        return ok
    }
}

// PKCS#11 2.40 §5.8 Encryption and §5.9 Decryption.

@implementation @c
public func C_EncryptInit(
    _ hSession: CK_SESSION_HANDLE, _ pMechanism: UnsafeMutablePointer<CK_MECHANISM>?, _ hKey: CK_OBJECT_HANDLE
) -> CK_RV {
    entry("C_EncryptInit") { () throws(TokenError) in
        try library.cipherInit(hSession, mechanism: try Marshal.mechanism(pMechanism), key: ObjectHandle(rawValue: hKey), encrypt: true)
        return ok
    }
}

@implementation @c
public func C_Encrypt(
    _ hSession: CK_SESSION_HANDLE, _ pData: UnsafeMutablePointer<CK_BYTE>?, _ ulDataLen: CK_ULONG,
    _ pEncryptedData: UnsafeMutablePointer<CK_BYTE>?, _ pulEncryptedDataLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV {
    sized("C_Encrypt", pEncryptedData, pulEncryptedDataLen) { (cap: Int?) throws(TokenError) in
        try library.cipher(hSession, encrypt: true, data: try operationInput(hSession, pData, ulDataLen), capacity: cap)
    }
}

@implementation @c
public func C_EncryptUpdate(
    _ hSession: CK_SESSION_HANDLE, _ pPart: UnsafeMutablePointer<CK_BYTE>?, _ ulPartLen: CK_ULONG,
    _ pEncryptedPart: UnsafeMutablePointer<CK_BYTE>?, _ pulEncryptedPartLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV {
    sized("C_EncryptUpdate", pEncryptedPart, pulEncryptedPartLen) { (cap: Int?) throws(TokenError) in
        try library.cipherUpdate(hSession, encrypt: true, part: try operationInput(hSession, pPart, ulPartLen), capacity: cap)
    }
}

@implementation @c
public func C_EncryptFinal(
    _ hSession: CK_SESSION_HANDLE, _ pLastEncryptedPart: UnsafeMutablePointer<CK_BYTE>?,
    _ pulLastEncryptedPartLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV {
    sized("C_EncryptFinal", pLastEncryptedPart, pulLastEncryptedPartLen) { (cap: Int?) throws(TokenError) in
        try library.cipher(hSession, encrypt: true, data: nil, capacity: cap)
    }
}

@implementation @c
public func C_DecryptInit(
    _ hSession: CK_SESSION_HANDLE, _ pMechanism: UnsafeMutablePointer<CK_MECHANISM>?, _ hKey: CK_OBJECT_HANDLE
) -> CK_RV {
    entry("C_DecryptInit") { () throws(TokenError) in
        try library.cipherInit(hSession, mechanism: try Marshal.mechanism(pMechanism), key: ObjectHandle(rawValue: hKey), encrypt: false)
        return ok
    }
}

@implementation @c
public func C_Decrypt(
    _ hSession: CK_SESSION_HANDLE, _ pEncryptedData: UnsafeMutablePointer<CK_BYTE>?, _ ulEncryptedDataLen: CK_ULONG,
    _ pData: UnsafeMutablePointer<CK_BYTE>?, _ pulDataLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV {
    sized("C_Decrypt", pData, pulDataLen) { (cap: Int?) throws(TokenError) in
        try library.cipher(hSession, encrypt: false, data: try operationInput(hSession, pEncryptedData, ulEncryptedDataLen), capacity: cap)
    }
}

@implementation @c
public func C_DecryptUpdate(
    _ hSession: CK_SESSION_HANDLE, _ pEncryptedPart: UnsafeMutablePointer<CK_BYTE>?, _ ulEncryptedPartLen: CK_ULONG,
    _ pPart: UnsafeMutablePointer<CK_BYTE>?, _ pulPartLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV {
    sized("C_DecryptUpdate", pPart, pulPartLen) { (cap: Int?) throws(TokenError) in
        try library.cipherUpdate(
            hSession, encrypt: false, part: try operationInput(hSession, pEncryptedPart, ulEncryptedPartLen), capacity: cap)
    }
}

@implementation @c
public func C_DecryptFinal(
    _ hSession: CK_SESSION_HANDLE, _ pLastPart: UnsafeMutablePointer<CK_BYTE>?, _ pulLastPartLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV {
    sized("C_DecryptFinal", pLastPart, pulLastPartLen) { (cap: Int?) throws(TokenError) in
        try library.cipher(hSession, encrypt: false, data: nil, capacity: cap)
    }
}
