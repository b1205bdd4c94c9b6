public import CPKCS11
import TokenCore

// PKCS#11 2.40 §5.7 Object management: served from the token's local index.

/// PKCS#11 2.40 §5.7 C_FindObjectsInit.
@implementation @c
public func C_FindObjectsInit(_ hSession: CK_SESSION_HANDLE, _ pTemplate: UnsafeMutablePointer<CK_ATTRIBUTE>?, _ ulCount: CK_ULONG) -> CK_RV
{
    entry("C_FindObjectsInit") { () throws(TokenError) in
        try library.findInit(hSession, template: try Marshal.template(pTemplate, ulCount))
        return ok
    }
}

/// PKCS#11 2.40 §5.7 C_FindObjects.
@implementation @c
public func C_FindObjects(
    _ hSession: CK_SESSION_HANDLE, _ phObject: UnsafeMutablePointer<CK_OBJECT_HANDLE>?, _ ulMaxObjectCount: CK_ULONG,
    _ pulObjectCount: UnsafeMutablePointer<CK_ULONG>?
) -> CK_RV {
    entry("C_FindObjects") { () throws(TokenError) in
        guard let phObject, let pulObjectCount else { throw .argumentsBad("NULL output") }
        let found = try library.find(hSession, max: Int(clamping: ulMaxObjectCount))
        Marshal.writeHandles(found.map(\.rawValue), phObject, pulObjectCount)
        return ok
    }
}

/// PKCS#11 2.40 §5.7 C_FindObjectsFinal.
@implementation @c
public func C_FindObjectsFinal(_ hSession: CK_SESSION_HANDLE) -> CK_RV {
    entry("C_FindObjectsFinal") { () throws(TokenError) in
        try library.findFinal(hSession); return ok
    }
}

/// PKCS#11 2.40 §5.7 C_GetAttributeValue.
@implementation @c
public func C_GetAttributeValue(
    _ hSession: CK_SESSION_HANDLE, _ hObject: CK_OBJECT_HANDLE, _ pTemplate: UnsafeMutablePointer<CK_ATTRIBUTE>?, _ ulCount: CK_ULONG
) -> CK_RV {
    entry("C_GetAttributeValue") { () throws(TokenError) in
        let n = try Marshal.count(ulCount, limit: Marshal.maxAttributes)
        guard let pTemplate, n > 0 else { throw .argumentsBad("empty template") }
        let types = (0..<n).map { AttributeType(rawValue: pTemplate[$0].type) }
        let results = try library.attributes(hSession, object: ObjectHandle(rawValue: hObject), types: types)
        return Marshal.writeAttributes(results, into: pTemplate)
    }
}

/// PKCS#11 2.40 §5.7 C_GetObjectSize: not meaningful for remote objects.
@implementation @c
public func C_GetObjectSize(_ hSession: CK_SESSION_HANDLE, _ hObject: CK_OBJECT_HANDLE, _ pulSize: UnsafeMutablePointer<CK_ULONG>?) -> CK_RV
{
    entry("C_GetObjectSize") { () throws(TokenError) in
        guard let pulSize else { throw .argumentsBad("NULL pulSize") }
        _ = try library.attributes(hSession, object: ObjectHandle(rawValue: hObject), types: [])
        pulSize.pointee = cpkcs11_unavailable_information
        return ok
    }
}
