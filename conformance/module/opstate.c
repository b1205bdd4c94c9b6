/* C_GetOperationState / C_SetOperationState from C (issue 22, item 3), as OpenSSL's providers use
 * them to duplicate contexts. Session A hashes the first half of a message with CKM_SHA256 and
 * saves its state; session B restores it, hashes the second half and finishes: the digest must
 * equal OpenSSL's SHA-256 of the whole message (a single pass). Then the same for a signature:
 * A begins CKM_ECDSA_SHA256 with the key LABEL, B restores the state (naming the key, as
 * pkcs11-provider does) and finishes; the raw signature (r||s) is written to SIGFILE for
 * `openssl dgst -verify`. MSGFILE receives the message.
 * Usage: opstate MODULE PIN LABEL MSGFILE SIGFILE   (config from VSSM_PKCS11_CONFIG). */
#include <dlfcn.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cpkcs11.h"

static CK_FUNCTION_LIST *f;

#define CHECK(what, call)                                                  \
    do {                                                                   \
        CK_RV rv_ = (call);                                                \
        if (rv_ != CKR_OK) {                                               \
            printf("%s: 0x%lx\n", what, rv_);                              \
            return 1;                                                      \
        }                                                                  \
    } while (0)

static int save(CK_SESSION_HANDLE s, unsigned char **state, CK_ULONG *len) {
    CHECK("C_GetOperationState (size)", f->C_GetOperationState(s, NULL, len));
    *state = malloc(*len);
    if (*state == NULL) return 1;
    CHECK("C_GetOperationState", f->C_GetOperationState(s, *state, len));
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 6) return 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    alarm(60);
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { printf("dlopen: %s\n", dlerror()); return 1; }
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
    if (!gfl || gfl(&f) != CKR_OK) return 1;
    CHECK("C_Initialize", f->C_Initialize(NULL));
    CK_SESSION_HANDLE a, b;
    CHECK("C_OpenSession A", f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &a));
    CHECK("C_OpenSession B", f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &b));
    CK_RV rv = f->C_Login(a, CKU_USER, (CK_UTF8CHAR *)argv[2], strlen(argv[2]));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) { printf("C_Login: 0x%lx\n", rv); return 1; }

    unsigned char msg[3000];
    for (size_t i = 0; i < sizeof msg; i++) msg[i] = (unsigned char)(i * 7 + 3);
    FILE *m = fopen(argv[4], "wb");
    if (!m || fwrite(msg, 1, sizeof msg, m) != sizeof msg) return 1;
    fclose(m);

    /* A digest saved half-way in A, finished in B. */
    CK_MECHANISM sha = {CKM_SHA256, NULL, 0};
    CHECK("C_DigestInit", f->C_DigestInit(a, &sha));
    CHECK("C_DigestUpdate A", f->C_DigestUpdate(a, msg, 1234));
    unsigned char *state = NULL;
    CK_ULONG len = 0;
    if (save(a, &state, &len)) return 1;
    CHECK("C_SetOperationState B (digest)", f->C_SetOperationState(b, state, len, CK_INVALID_HANDLE, CK_INVALID_HANDLE));
    free(state);
    CHECK("C_DigestUpdate B", f->C_DigestUpdate(b, msg + 1234, sizeof msg - 1234));
    unsigned char got[32], want[32];
    CK_ULONG gotLen = sizeof got;
    CHECK("C_DigestFinal B", f->C_DigestFinal(b, got, &gotLen));
    unsigned int wantLen = 0;
    EVP_Digest(msg, sizeof msg, want, &wantLen, EVP_sha256(), NULL);
    if (gotLen != 32 || wantLen != 32 || memcmp(got, want, 32) != 0) { printf("digest: differs from a single pass\n"); return 1; }
    printf("digest: restored in another session, equal to OpenSSL's single pass\n");

    /* A signature begun in A, finished in B with the same key. */
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, argv[3], strlen(argv[3])}};
    CK_OBJECT_HANDLE key = 0;
    CK_ULONG n = 0;
    CHECK("C_FindObjectsInit", f->C_FindObjectsInit(a, t, 2));
    CHECK("C_FindObjects", f->C_FindObjects(a, &key, 1, &n));
    f->C_FindObjectsFinal(a);
    if (n != 1) { printf("key %s not found\n", argv[3]); return 1; }
    CK_MECHANISM ecdsa = {CKM_ECDSA_SHA256, NULL, 0};
    CHECK("C_SignInit", f->C_SignInit(a, &ecdsa, key));
    CHECK("C_SignUpdate A", f->C_SignUpdate(a, msg, 1000));
    if (save(a, &state, &len)) return 1;
    rv = f->C_SetOperationState(b, state, len, CK_INVALID_HANDLE, CK_INVALID_HANDLE);
    if (rv != CKR_KEY_NEEDED) { printf("signature state without its key: 0x%lx, not CKR_KEY_NEEDED\n", rv); return 1; }
    CHECK("C_SetOperationState B (signature)", f->C_SetOperationState(b, state, len, key, key));
    free(state);
    CHECK("C_SignUpdate B", f->C_SignUpdate(b, msg + 1000, sizeof msg - 1000));
    unsigned char sig[256];
    CK_ULONG sigLen = sizeof sig;
    CHECK("C_SignFinal B", f->C_SignFinal(b, sig, &sigLen));
    FILE *o = fopen(argv[5], "wb");
    if (!o || fwrite(sig, 1, sigLen, o) != sigLen) return 1;
    fclose(o);
    printf("signature: begun in one session, finished in another (%lu bytes)\n", sigLen);
    f->C_Finalize(NULL);
    return 0;
}
