public import CPKCS11

// Entry points this module does not (yet) offer: each answers CKR_FUNCTION_NOT_SUPPORTED
// (GetFunctionStatus/CancelFunction: CKR_FUNCTION_NOT_PARALLEL, as the spec requires).

@implementation @c
public func C_InitToken(
    _ slotID: CK_SLOT_ID, _ pPin: UnsafeMutablePointer<CK_UTF8CHAR>?, _ ulPinLen: CK_ULONG, _ pLabel: UnsafeMutablePointer<CK_UTF8CHAR>?
) -> CK_RV { CK_RV(CKR_FUNCTION_NOT_SUPPORTED) }

@implementation @c
public func C_InitPIN(_ hSession: CK_SESSION_HANDLE, _ pPin: UnsafeMutablePointer<CK_UTF8CHAR>?, _ ulPinLen: CK_ULONG) -> CK_RV {
    CK_RV(CKR_FUNCTION_NOT_SUPPORTED)
}

@implementation @c
public func C_SetPIN(
    _ hSession: CK_SESSION_HANDLE, _ pOldPin: UnsafeMutablePointer<CK_UTF8CHAR>?, _ ulOldLen: CK_ULONG,
    _ pNewPin: UnsafeMutablePointer<CK_UTF8CHAR>?, _ ulNewLen: CK_ULONG
) -> CK_RV { CK_RV(CKR_FUNCTION_NOT_SUPPORTED) }

@implementation @c
public func C_SignRecoverInit(
    _ hSession: CK_SESSION_HANDLE, _ pMechanism: UnsafeMutablePointer<CK_MECHANISM>?, _ hKey: CK_OBJECT_HANDLE
) -> CK_RV { CK_RV(CKR_FUNCTION_NOT_SUPPORTED) }

@implementation @c
public func C_SignRecover(
    _ hSession: CK_SESSION_HANDLE, _ pData: UnsafeMutablePointer<CK_BYTE>?, _ ulDataLen: CK_ULONG,
    _ pSignature: UnsafeMutablePointer<CK_BYTE>?, _ pulSignatureLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV { CK_RV(CKR_FUNCTION_NOT_SUPPORTED) }

@implementation @c
public func C_VerifyRecoverInit(
    _ hSession: CK_SESSION_HANDLE, _ pMechanism: UnsafeMutablePointer<CK_MECHANISM>?, _ hKey: CK_OBJECT_HANDLE
) -> CK_RV { CK_RV(CKR_FUNCTION_NOT_SUPPORTED) }

@implementation @c
public func C_VerifyRecover(
    _ hSession: CK_SESSION_HANDLE, _ pSignature: UnsafeMutablePointer<CK_BYTE>?, _ ulSignatureLen: CK_ULONG,
    _ pData: UnsafeMutablePointer<CK_BYTE>?, _ pulDataLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV { CK_RV(CKR_FUNCTION_NOT_SUPPORTED) }

@implementation @c
public func C_DigestEncryptUpdate(
    _ hSession: CK_SESSION_HANDLE, _ pPart: UnsafeMutablePointer<CK_BYTE>?, _ ulPartLen: CK_ULONG,
    _ pEncryptedPart: UnsafeMutablePointer<CK_BYTE>?, _ pulEncryptedPartLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV { CK_RV(CKR_FUNCTION_NOT_SUPPORTED) }

@implementation @c
public func C_DecryptDigestUpdate(
    _ hSession: CK_SESSION_HANDLE, _ pEncryptedPart: UnsafeMutablePointer<CK_BYTE>?, _ ulEncryptedPartLen: CK_ULONG,
    _ pPart: UnsafeMutablePointer<CK_BYTE>?, _ pulPartLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV { CK_RV(CKR_FUNCTION_NOT_SUPPORTED) }

@implementation @c
public func C_SignEncryptUpdate(
    _ hSession: CK_SESSION_HANDLE, _ pPart: UnsafeMutablePointer<CK_BYTE>?, _ ulPartLen: CK_ULONG,
    _ pEncryptedPart: UnsafeMutablePointer<CK_BYTE>?, _ pulEncryptedPartLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV { CK_RV(CKR_FUNCTION_NOT_SUPPORTED) }

@implementation @c
public func C_DecryptVerifyUpdate(
    _ hSession: CK_SESSION_HANDLE, _ pEncryptedPart: UnsafeMutablePointer<CK_BYTE>?, _ ulEncryptedPartLen: CK_ULONG,
    _ pPart: UnsafeMutablePointer<CK_BYTE>?, _ pulPartLen: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV { CK_RV(CKR_FUNCTION_NOT_SUPPORTED) }

@implementation @c
public func C_GetFunctionStatus(_ hSession: CK_SESSION_HANDLE) -> CK_RV { CK_RV(CKR_FUNCTION_NOT_PARALLEL) }

@implementation @c
public func C_CancelFunction(_ hSession: CK_SESSION_HANDLE) -> CK_RV { CK_RV(CKR_FUNCTION_NOT_PARALLEL) }
