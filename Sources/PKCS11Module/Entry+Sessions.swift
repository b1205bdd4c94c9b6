public import CPKCS11
import TokenCore

// PKCS#11 2.40 §5.6 Session management.

/// PKCS#11 2.40 §5.6 C_OpenSession. CKF_SERIAL_SESSION is mandatory; notify callbacks are never called.
@implementation @c
public func C_OpenSession(
    _ slotID: CK_SLOT_ID, _ flags: CK_FLAGS, _ pApplication: UnsafeMutableRawPointer?, _ notify: CK_NOTIFY?,
    _ phSession: UnsafeMutablePointer<CK_SESSION_HANDLE>?
) -> CK_RV {
    entry("C_OpenSession") { () throws(TokenError) in
        guard let phSession else { throw .argumentsBad("NULL phSession") }
        guard flags & CK_FLAGS(CKF_SERIAL_SESSION) != 0 else { throw .sessionParallelNotSupported }
        phSession.pointee = try library.openSession(slot: slotID, readWrite: flags & CK_FLAGS(CKF_RW_SESSION) != 0)
        return ok
    }
}

/// PKCS#11 2.40 §5.6 C_CloseSession.
@implementation @c
public func C_CloseSession(_ hSession: CK_SESSION_HANDLE) -> CK_RV {
    entry("C_CloseSession") { () throws(TokenError) in
        try library.closeSession(hSession); return ok
    }
}

/// PKCS#11 2.40 §5.6 C_CloseAllSessions.
@implementation @c
public func C_CloseAllSessions(_ slotID: CK_SLOT_ID) -> CK_RV {
    entry("C_CloseAllSessions") { () throws(TokenError) in
        try library.closeAllSessions(slot: slotID); return ok
    }
}

/// PKCS#11 2.40 §5.6 C_GetSessionInfo; ulDeviceError carries the key service's last HTTP status.
@implementation @c
public func C_GetSessionInfo(_ hSession: CK_SESSION_HANDLE, _ pInfo: UnsafeMutablePointer<CK_SESSION_INFO>?) -> CK_RV {
    entry("C_GetSessionInfo") { () throws(TokenError) in
        guard let pInfo else { throw .argumentsBad("NULL pInfo") }
        let i = try library.sessionInfo(hSession)
        var flags = CK_FLAGS(CKF_SERIAL_SESSION)
        if i.readWrite { flags |= CK_FLAGS(CKF_RW_SESSION) }
        pInfo.pointee = CK_SESSION_INFO(slotID: i.slot, state: i.state, flags: flags, ulDeviceError: i.deviceError)
        return ok
    }
}

/// PKCS#11 2.40 §5.6 C_Login. CKU_USER: any PIN unless the client key is encrypted (then it
/// decrypts it) or the slot treats the user PIN as the admin password; CKU_SO: the admin password.
@implementation @c
public func C_Login(
    _ hSession: CK_SESSION_HANDLE, _ userType: CK_USER_TYPE, _ pPin: UnsafeMutablePointer<CK_UTF8CHAR>?, _ ulPinLen: CK_ULONG
) -> CK_RV {
    entry("C_Login") { () throws(TokenError) in
        // A NULL PIN is only for tokens with a protected authentication path (we have none).
        guard pPin != nil else { throw .argumentsBad("NULL PIN") }
        var pin = try Marshal.bytes(pPin, ulPinLen)
        defer { for i in pin.indices { pin[i] = 0 } }
        try library.login(hSession, user: UserType(rawValue: userType), pin: String(decoding: pin, as: UTF8.self))
        return ok
    }
}

/// PKCS#11 2.40 §5.6 C_Logout.
@implementation @c
public func C_Logout(_ hSession: CK_SESSION_HANDLE) -> CK_RV {
    entry("C_Logout") { () throws(TokenError) in
        try library.logout(hSession); return ok
    }
}
