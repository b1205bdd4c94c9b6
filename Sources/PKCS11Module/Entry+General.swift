import Glibc
public import CPKCS11
import TokenCore
import VSSMWire

// PKCS#11 2.40 §5.4 General-purpose functions, §5.5 Slot and token management.

let library = Library.shared

/// PKCS#11 2.40 §5.4 C_Initialize. No network here: the config is read, services connect lazily.
@implementation @c
public func C_Initialize(_ pInitArgs: UnsafeMutableRawPointer?) -> CK_RV {
    entry("C_Initialize", initialized: false) { () throws(TokenError) in
        var configPath: String? = nil
        var threads = true
        if let raw = pInitArgs {
            let args = raw.loadUnaligned(as: CK_C_INITIALIZE_ARGS.self)
            // A host that forbids threads gets none: tokens then list every `refreshSeconds`.
            threads = args.flags & CK_FLAGS(CKF_LIBRARY_CANT_CREATE_OS_THREADS) == 0
            let someMutex = args.CreateMutex != nil || args.DestroyMutex != nil || args.LockMutex != nil || args.UnlockMutex != nil
            let allMutex = args.CreateMutex != nil && args.DestroyMutex != nil && args.LockMutex != nil && args.UnlockMutex != nil
            if someMutex && !allMutex { throw .argumentsBad("some but not all mutex functions given") }
            // We always lock internally with OS primitives (CKF_OS_LOCKING_OK or not). The only thread
            // is a token's change follower (ended at C_Finalize).
            // The spec says NULL; a non-NULL value is taken as a config path, read without trusting it.
            if let reserved = args.pReserved {
                configPath = try Marshal.probedCString(reserved)
            }
        }
        _ = ForkHandlers.installed
        if library.isInitialized { throw .alreadyInitialized }
        // A missing or bad configuration is CKR_FUNCTION_FAILED: the caller's arguments are fine,
        // and the entry point logs it at the default level.
        let config = try ModuleConfig.forInitialize(explicit: configPath)
        try library.initialize(tokens: config.tokens(threads: threads))
        Log.write(.info, "initialized from \(config.path) with \(config.slots.count) slot(s)")
        return ok
    }
}

/// PKCS#11 2.40 §5.4 C_Finalize.
@implementation @c
public func C_Finalize(_ pReserved: UnsafeMutableRawPointer?) -> CK_RV {
    entry("C_Finalize") { () throws(TokenError) in
        guard pReserved == nil else { throw .argumentsBad("pReserved must be NULL") }
        try library.finalize()
        ModuleConfig.forget()
        return ok
    }
}

/// PKCS#11 2.40 §5.4 C_GetInfo.
@implementation @c
public func C_GetInfo(_ pInfo: UnsafeMutablePointer<CK_INFO>?) -> CK_RV {
    entry("C_GetInfo") { () throws(TokenError) in
        guard let pInfo else { throw .argumentsBad("NULL pInfo") }
        var info = CK_INFO()
        info.cryptokiVersion = CK_VERSION(major: 2, minor: 40)
        Marshal.pad("vssm-pkcs11", &info.manufacturerID)
        Marshal.pad("VSSM PKCS#11 module", &info.libraryDescription)
        let version = VSSMVersion.majorMinor
        info.libraryVersion = CK_VERSION(major: version.major, minor: version.minor)
        pInfo.pointee = info
        return ok
    }
}

/// PKCS#11 2.40 §5.5 C_GetSlotList: one slot per configured key service, token always present.
@implementation @c
public func C_GetSlotList(
    _ tokenPresent: CK_BBOOL, _ pSlotList: UnsafeMutablePointer<CK_SLOT_ID>?, _ pulCount: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV {
    entry("C_GetSlotList") { () throws(TokenError) in
        guard let pulCount else { throw .argumentsBad("NULL pulCount") }
        let slots = try library.tokens().map(\.slotID)
        guard let pSlotList else { pulCount.pointee = CK_ULONG(slots.count); return ok }
        guard pulCount.pointee >= CK_ULONG(slots.count) else {
            pulCount.pointee = CK_ULONG(slots.count)
            throw .bufferTooSmall(required: slots.count)
        }
        Marshal.writeHandles(slots, pSlotList, pulCount)
        return ok
    }
}

/// PKCS#11 2.40 §5.5 C_GetSlotInfo.
@implementation @c
public func C_GetSlotInfo(_ slotID: CK_SLOT_ID, _ pInfo: UnsafeMutablePointer<CK_SLOT_INFO>?) -> CK_RV {
    entry("C_GetSlotInfo") { () throws(TokenError) in
        guard let pInfo else { throw .argumentsBad("NULL pInfo") }
        let t = try library.token(slot: slotID)
        var info = CK_SLOT_INFO()
        Marshal.pad("VSSM key service \(t.configuration.label)", &info.slotDescription)
        Marshal.pad("vssm-pkcs11", &info.manufacturerID)
        info.flags = CK_FLAGS(CKF_TOKEN_PRESENT) | CK_FLAGS(CKF_HW_SLOT)
        info.hardwareVersion = CK_VERSION(major: 1, minor: 0)
        info.firmwareVersion = CK_VERSION(major: 1, minor: 0)
        pInfo.pointee = info
        return ok
    }
}

/// PKCS#11 2.40 §5.5 C_GetTokenInfo.
@implementation @c
public func C_GetTokenInfo(_ slotID: CK_SLOT_ID, _ pInfo: UnsafeMutablePointer<CK_TOKEN_INFO>?) -> CK_RV {
    entry("C_GetTokenInfo") { () throws(TokenError) in
        guard let pInfo else { throw .argumentsBad("NULL pInfo") }
        let t = try library.token(slot: slotID)
        var info = CK_TOKEN_INFO()
        Marshal.pad(t.configuration.label, &info.label)
        Marshal.pad("vssm-pkcs11", &info.manufacturerID)
        Marshal.pad("VSSM", &info.model)
        Marshal.pad(t.configuration.serial, &info.serialNumber)
        var flags = CK_FLAGS(CKF_RNG) | CK_FLAGS(CKF_TOKEN_INITIALIZED) | CK_FLAGS(CKF_USER_PIN_INITIALIZED)
        if t.configuration.hasUserPIN { flags |= CK_FLAGS(CKF_LOGIN_REQUIRED) }
        info.flags = flags
        info.ulMaxSessionCount = 0  // CK_EFFECTIVELY_INFINITE
        info.ulSessionCount = cpkcs11_unavailable_information
        info.ulMaxRwSessionCount = 0
        info.ulRwSessionCount = cpkcs11_unavailable_information
        info.ulMaxPinLen = 1024
        info.ulMinPinLen = 0
        info.ulTotalPublicMemory = cpkcs11_unavailable_information
        info.ulFreePublicMemory = cpkcs11_unavailable_information
        info.ulTotalPrivateMemory = cpkcs11_unavailable_information
        info.ulFreePrivateMemory = cpkcs11_unavailable_information
        info.hardwareVersion = CK_VERSION(major: 1, minor: 0)
        info.firmwareVersion = CK_VERSION(major: 1, minor: 0)
        Marshal.pad("", &info.utcTime)
        pInfo.pointee = info
        return ok
    }
}

/// PKCS#11 2.40 §5.5 C_GetMechanismList.
@implementation @c
public func C_GetMechanismList(
    _ slotID: CK_SLOT_ID, _ pMechanismList: UnsafeMutablePointer<CK_MECHANISM_TYPE>?, _ pulCount: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV {
    entry("C_GetMechanismList") { () throws(TokenError) in
        guard let pulCount else { throw .argumentsBad("NULL pulCount") }
        let list = try library.mechanisms(slot: slotID).keys.map(\.rawValue).sorted()
        guard let pMechanismList else { pulCount.pointee = CK_ULONG(list.count); return ok }
        guard pulCount.pointee >= CK_ULONG(list.count) else {
            pulCount.pointee = CK_ULONG(list.count)
            throw .bufferTooSmall(required: list.count)
        }
        Marshal.writeHandles(list, pMechanismList, pulCount)
        return ok
    }
}

/// PKCS#11 2.40 §5.5 C_GetMechanismInfo.
@implementation @c
public func C_GetMechanismInfo(_ slotID: CK_SLOT_ID, _ type: CK_MECHANISM_TYPE, _ pInfo: UnsafeMutablePointer<CK_MECHANISM_INFO>?) -> CK_RV
{
    entry("C_GetMechanismInfo") { () throws(TokenError) in
        guard let pInfo else { throw .argumentsBad("NULL pInfo") }
        guard let m = try library.mechanisms(slot: slotID)[MechanismType(rawValue: type)] else {
            throw .mechanismInvalid(MechanismType(rawValue: type))
        }
        pInfo.pointee = CK_MECHANISM_INFO(ulMinKeySize: m.minKeySize, ulMaxKeySize: m.maxKeySize, flags: m.flags)
        return ok
    }
}

/// PKCS#11 2.40 §5.5 C_WaitForSlotEvent: slots never change.
@implementation @c
public func C_WaitForSlotEvent(
    _ flags: CK_FLAGS, _ pSlot: UnsafeMutablePointer<CK_SLOT_ID>?, _ pReserved: UnsafeMutableRawPointer?
) -> CK_RV {
    entry("C_WaitForSlotEvent") { () throws(TokenError) in
        return CK_RV(CKR_FUNCTION_NOT_SUPPORTED)
    }
}

/// The module's locks that any host thread may hold, taken around fork() (prepare: in a fixed
/// order; parent and child: released), installed once at the first C_Initialize.
enum ForkHandlers {
    static let installed: Void = {
        _ = pthread_atfork(
            {
                ModuleConfig.prepareFork(); Library.shared.prepareFork()
            },
            {
                Library.shared.afterFork(); ModuleConfig.afterFork()
            },
            {
                Library.shared.afterFork(); ModuleConfig.afterFork()
            })
    }()
}
