#!/usr/bin/env python3
"""Generates include/cpkcs11.h and Sources/CPKCS11Table/table.c from include/pkcs11.h (p11-kit's 2.40 header).

The 2.40 member order is read from the header's own struct ck_function_list; the 3.0 additions
follow the OASIS PKCS#11 v3.0 base specification (CK_FUNCTION_LIST_3_0, sections 5.1 and 5.4).
Run after changing either list: python3 scripts/gen-pkcs11-tables.py
"""
import os
import re

root = os.path.join(os.path.dirname(__file__), "..", "include")
h = open(os.path.join(root, "pkcs11.h")).read()
m = re.search(r"struct ck_function_list\n\{\n  struct ck_version version;\n(.*?)\n\};", h, re.S)
names = [n for n, _ in re.findall(r"CK_C_(\w+) (\w+);", m.group(1))]
assert len(names) == 68, len(names)

S = "CK_SESSION_HANDLE hSession"
P = "CK_VOID_PTR pParameter, CK_ULONG ulParameterLen"
V30 = [
    ("GetInterfaceList", "(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount)"),
    ("GetInterface", "(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion, CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags)"),
    ("LoginUser", f"({S}, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen)"),
    ("SessionCancel", f"({S}, CK_FLAGS flags)"),
    ("MessageEncryptInit", f"({S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)"),
    ("EncryptMessage", f"({S}, {P}, CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pPlaintext, CK_ULONG ulPlaintextLen, CK_BYTE_PTR pCiphertext, CK_ULONG_PTR pulCiphertextLen)"),
    ("EncryptMessageBegin", f"({S}, {P}, CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen)"),
    ("EncryptMessageNext", f"({S}, {P}, CK_BYTE_PTR pPlaintextPart, CK_ULONG ulPlaintextPartLen, CK_BYTE_PTR pCiphertextPart, CK_ULONG_PTR pulCiphertextPartLen, CK_FLAGS flags)"),
    ("MessageEncryptFinal", f"({S})"),
    ("MessageDecryptInit", f"({S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)"),
    ("DecryptMessage", f"({S}, {P}, CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pCiphertext, CK_ULONG ulCiphertextLen, CK_BYTE_PTR pPlaintext, CK_ULONG_PTR pulPlaintextLen)"),
    ("DecryptMessageBegin", f"({S}, {P}, CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen)"),
    ("DecryptMessageNext", f"({S}, {P}, CK_BYTE_PTR pCiphertextPart, CK_ULONG ulCiphertextPartLen, CK_BYTE_PTR pPlaintextPart, CK_ULONG_PTR pulPlaintextPartLen, CK_FLAGS flags)"),
    ("MessageDecryptFinal", f"({S})"),
    ("MessageSignInit", f"({S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)"),
    ("SignMessage", f"({S}, {P}, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)"),
    ("SignMessageBegin", f"({S}, {P})"),
    ("SignMessageNext", f"({S}, {P}, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)"),
    ("MessageSignFinal", f"({S})"),
    ("MessageVerifyInit", f"({S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)"),
    ("VerifyMessage", f"({S}, {P}, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)"),
    ("VerifyMessageBegin", f"({S}, {P})"),
    ("VerifyMessageNext", f"({S}, {P}, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)"),
    ("MessageVerifyFinal", f"({S})"),
]

# PKCS#11 3.2 additions, in the order of the OASIS v3.2 pkcs11f.h (CK_FUNCTION_LIST_3_2 is the 3.0
# list followed by these). The first two are implemented in Swift; the others are stubs.
M = "CK_MECHANISM_PTR pMechanism"
V32 = [
    ("EncapsulateKey", f"({S}, {M}, CK_OBJECT_HANDLE hPublicKey, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_BYTE_PTR pCiphertext, CK_ULONG_PTR pulCiphertextLen, CK_OBJECT_HANDLE_PTR phKey)"),
    ("DecapsulateKey", f"({S}, {M}, CK_OBJECT_HANDLE hPrivateKey, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_BYTE_PTR pCiphertext, CK_ULONG ulCiphertextLen, CK_OBJECT_HANDLE_PTR phKey)"),
    ("VerifySignatureInit", f"({S}, {M}, CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)"),
    ("VerifySignature", f"({S}, CK_BYTE_PTR pData, CK_ULONG ulDataLen)"),
    ("VerifySignatureUpdate", f"({S}, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)"),
    ("VerifySignatureFinal", f"({S})"),
    ("GetSessionValidationFlags", f"({S}, CK_ULONG type, CK_FLAGS *pFlags)"),
    ("AsyncComplete", f"({S}, CK_UTF8CHAR_PTR pFunctionName, CK_VOID_PTR pResult)"),
    ("AsyncGetID", f"({S}, CK_UTF8CHAR_PTR pFunctionName, CK_ULONG_PTR pulID)"),
    ("AsyncJoin", f"({S}, CK_UTF8CHAR_PTR pFunctionName, CK_ULONG ulID, CK_BYTE_PTR pData, CK_ULONG ulData)"),
    ("WrapKeyAuthenticated", f"({S}, {M}, CK_OBJECT_HANDLE hWrappingKey, CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen)"),
    ("UnwrapKeyAuthenticated", f"({S}, {M}, CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey, CK_ULONG ulWrappedKeyLen, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen, CK_OBJECT_HANDLE_PTR phKey)"),
]
IMPLEMENTED32 = {"EncapsulateKey", "DecapsulateKey"}

hdr = """/* vssm-pkcs11: the PKCS#11 header the module and its tests import.
 *
 * pkcs11.h is p11-kit's PKCS#11 2.40 header, copied unchanged from Debian 12 (libp11-kit-dev 0.24.1;
 * its notice grants unlimited permission to copy). This file adds what PKCS#11 3.0 (OASIS PKCS#11
 * Base Specification v3.0, sections 3.3 and 5.4) needs and that header lacks: CK_INTERFACE, the 3.0
 * function list and the new entry points' prototypes. Generated by scripts/gen-pkcs11-tables.py.
 */
#ifndef CPKCS11_H
#define CPKCS11_H
#include "pkcs11.h"

typedef struct CK_INTERFACE {
    CK_CHAR *pInterfaceName;
    CK_VOID_PTR pFunctionList;
    CK_FLAGS flags;
} CK_INTERFACE;
typedef CK_INTERFACE *CK_INTERFACE_PTR;
typedef CK_INTERFACE_PTR *CK_INTERFACE_PTR_PTR;
#define CKF_INTERFACE_FORK_SAFE 0x00000001UL
#define CKF_END_OF_MESSAGE 0x00000001UL

"""
hdr += "".join(f"typedef CK_RV (*CK_C_{n}){a};\n" for n, a in V30)
hdr += "".join(f"CK_RV C_{n}{a};\n" for n, a in V30[:2])
hdr += "\ntypedef struct CK_FUNCTION_LIST_3_0 {\n    CK_VERSION version;\n"
hdr += "".join(f"    CK_C_{n} C_{n};\n" for n in names)
hdr += "".join(f"    CK_C_{n} C_{n};\n" for n, _ in V30)
hdr += """} CK_FUNCTION_LIST_3_0;
typedef CK_FUNCTION_LIST_3_0 *CK_FUNCTION_LIST_3_0_PTR;

/* PKCS#11 3.2 (OASIS PKCS#11 Specification v3.2): the 3.0 list, then these. */
"""
hdr += "".join(f"typedef CK_RV (*CK_C_{n}){a};\n" for n, a in V32)
hdr += "".join(f"CK_RV C_{n}{a};\n" for n, a in V32 if n in IMPLEMENTED32)
hdr += "\ntypedef struct CK_FUNCTION_LIST_3_2 {\n    CK_VERSION version;\n"
hdr += "".join(f"    CK_C_{n} C_{n};\n" for n in names)
hdr += "".join(f"    CK_C_{n} C_{n};\n" for n, _ in V30)
hdr += "".join(f"    CK_C_{n} C_{n};\n" for n, _ in V32)
hdr += """} CK_FUNCTION_LIST_3_2;
typedef CK_FUNCTION_LIST_3_2 *CK_FUNCTION_LIST_3_2_PTR;

/* PKCS#11 3.2 (OASIS PKCS#11 Specification v3.2): ML-DSA and ML-KEM keys and mechanisms. */
#define CKK_ML_KEM 0x00000049UL
#define CKK_ML_DSA 0x0000004aUL
#define CKA_PARAMETER_SET 0x0000061dUL
#define CKA_ENCAPSULATE 0x00000633UL
#define CKA_DECAPSULATE 0x00000634UL
#define CKM_ML_KEM_KEY_PAIR_GEN 0x0000000fUL
#define CKM_ML_KEM 0x00000017UL
#define CKM_ML_DSA_KEY_PAIR_GEN 0x0000001cUL
#define CKM_ML_DSA 0x0000001dUL
#define CKP_ML_DSA_44 0x00000001UL
#define CKP_ML_DSA_65 0x00000002UL
#define CKP_ML_DSA_87 0x00000003UL
#define CKP_ML_KEM_512 0x00000001UL
#define CKP_ML_KEM_768 0x00000002UL
#define CKP_ML_KEM_1024 0x00000003UL
#define CKH_HEDGE_PREFERRED 0x00000000UL
#define CKH_HEDGE_REQUIRED 0x00000001UL
#define CKH_DETERMINISTIC_REQUIRED 0x00000002UL
typedef CK_ULONG CK_HEDGE_TYPE;
typedef struct CK_SIGN_ADDITIONAL_CONTEXT {
    CK_HEDGE_TYPE hedgeVariant;
    CK_BYTE_PTR pContext;
    CK_ULONG ulContextLen;
} CK_SIGN_ADDITIONAL_CONTEXT;

/* Values whose macros contain casts (Swift does not import those). */
static const CK_ULONG cpkcs11_unavailable_information = (CK_ULONG)-1;
static const CK_ULONG cpkcs11_effectively_infinite = 0UL;
#endif
"""
open(os.path.join(root, "cpkcs11.h"), "w").write(hdr)

t = """/* Constant PKCS#11 function tables and the three table-lookup entry points.
 * Every slot is non-NULL (hosts call entries without checking). The other 2.40 entry points are
 * implemented in Swift (Sources/PKCS11Module, checked against pkcs11.h by @implementation @c);
 * the 3.0 message-based functions and the 3.2 ones it does not offer are stubs here.
 * Generated by scripts/gen-pkcs11-tables.py. */
#include <string.h>
#include "cpkcs11.h"

"""
for n, a in V30[2:]:
    t += f"static CK_RV stub_{n}{a} {{\n    return CKR_FUNCTION_NOT_SUPPORTED;\n}}\n"
t += "\nstatic CK_FUNCTION_LIST list_2_40 = {\n    {2, 40},\n" + "".join(f"    C_{n},\n" for n in names) + "};\n"
t += "\nstatic CK_FUNCTION_LIST_3_0 list_3_0 = {\n    {3, 0},\n" + "".join(f"    C_{n},\n" for n in names)
t += "    C_GetInterfaceList,\n    C_GetInterface,\n" + "".join(f"    stub_{n},\n" for n, _ in V30[2:]) + "};\n"
for n, a in V32:
    if n not in IMPLEMENTED32:
        t += f"static CK_RV stub_{n}{a} {{\n    return CKR_FUNCTION_NOT_SUPPORTED;\n}}\n"
t += "\nstatic CK_FUNCTION_LIST_3_2 list_3_2 = {\n    {3, 2},\n" + "".join(f"    C_{n},\n" for n in names)
t += "    C_GetInterfaceList,\n    C_GetInterface,\n" + "".join(f"    stub_{n},\n" for n, _ in V30[2:])
t += "".join(f"    C_{n},\n" if n in IMPLEMENTED32 else f"    stub_{n},\n" for n, _ in V32) + "};\n"
t += r"""
static CK_CHAR interface_name[] = "PKCS 11";
/* 3.0 first: C_GetInterface(NULL, NULL, ...) returns the default (PKCS#11 3.0 §5.4.2); a host
 * that wants 3.2 (ML-KEM's C_EncapsulateKey/C_DecapsulateKey) asks for that version. */
static CK_INTERFACE interfaces[3] = {
    {interface_name, &list_3_0, 0},
    {interface_name, &list_3_2, 0},
    {interface_name, &list_2_40, 0},
};

/* PKCS#11 2.40 §5.2 C_GetFunctionList */
CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList) {
    if (ppFunctionList == NULL) return CKR_ARGUMENTS_BAD;
    *ppFunctionList = &list_2_40;
    return CKR_OK;
}

/* PKCS#11 3.0 §5.4.1 C_GetInterfaceList: two-call length convention. */
CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount) {
    if (pulCount == NULL) return CKR_ARGUMENTS_BAD;
    CK_ULONG n = sizeof(interfaces) / sizeof(interfaces[0]);
    if (pInterfacesList == NULL) { *pulCount = n; return CKR_OK; }
    if (*pulCount < n) { *pulCount = n; return CKR_BUFFER_TOO_SMALL; }
    memcpy(pInterfacesList, interfaces, sizeof(interfaces));
    *pulCount = n;
    return CKR_OK;
}

/* PKCS#11 3.0 §5.4.2 C_GetInterface: NULL name = default; version and flags must match. */
CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion, CK_INTERFACE_PTR_PTR ppInterface,
                     CK_FLAGS flags) {
    if (ppInterface == NULL) return CKR_ARGUMENTS_BAD;
    if (pInterfaceName != NULL && strcmp((const char *)pInterfaceName, (const char *)interface_name) != 0)
        return CKR_ARGUMENTS_BAD;
    for (size_t i = 0; i < sizeof(interfaces) / sizeof(interfaces[0]); i++) {
        CK_VERSION *v = (CK_VERSION *)interfaces[i].pFunctionList;
        if (pVersion != NULL && (v->major != pVersion->major || v->minor != pVersion->minor)) continue;
        if ((interfaces[i].flags & flags) != flags) continue;
        *ppInterface = &interfaces[i];
        return CKR_OK;
    }
    return CKR_ARGUMENTS_BAD;
}
"""
open(os.path.join(root, "..", "Sources", "CPKCS11Table", "table.c"), "w").write(t)
print("generated include/cpkcs11.h and Sources/CPKCS11Table/table.c")
