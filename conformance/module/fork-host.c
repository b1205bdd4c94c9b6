/* A C host that forks with live pooled connections (like nginx or Apache prefork). The parent
 * initializes and signs; the child must get CKR_CRYPTOKI_NOT_INITIALIZED until it initializes
 * again, then sign on its own connection; the parent then signs again on its original one.
 * Usage: fork-host MODULE LABEL   (config from VSSM_PKCS11_CONFIG). Prints one line per step. */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cpkcs11.h"

static CK_FUNCTION_LIST *f;

static CK_RV sign_once(const char *label, const char *who) {
    CK_SESSION_HANDLE s;
    CK_RV rv = f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) { printf("%s: C_OpenSession 0x%lx\n", who, rv); return rv; }
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE key = 0;
    CK_ULONG n = 0;
    f->C_FindObjectsInit(s, t, 2);
    f->C_FindObjects(s, &key, 1, &n);
    f->C_FindObjectsFinal(s);
    if (n != 1) { printf("%s: key not found\n", who); return CKR_GENERAL_ERROR; }
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    unsigned char data[] = "fork", sig[256];
    CK_ULONG siglen = sizeof sig;
    rv = f->C_SignInit(s, &m, key);
    if (rv == CKR_OK) rv = f->C_Sign(s, data, 4, sig, &siglen);
    printf("%s: sign 0x%lx (%lu bytes)\n", who, rv, siglen);
    f->C_CloseSession(s);
    return rv;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    setvbuf(stdout, NULL, _IONBF, 0); /* the child leaves with _exit */
    alarm(60); /* a hang is a failure */
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { printf("dlopen: %s\n", dlerror()); return 1; }
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
    if (!get || get(&f) != CKR_OK) return 1;
    if (f->C_Initialize(NULL) != CKR_OK) { printf("parent: init failed\n"); return 1; }
    for (int i = 0; i < 3; i++) if (sign_once(argv[2], "parent-before") != CKR_OK) return 1;
    pid_t pid = fork();
    if (pid == 0) {
        CK_SESSION_HANDLE s;
        CK_RV rv = f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s);
        printf("child: before C_Initialize: 0x%lx\n", rv);
        if (rv != CKR_CRYPTOKI_NOT_INITIALIZED) _exit(3);
        /* Like nginx workers: the environment is cleared after fork. The module must reuse the
         * configuration the parent loaded instead of looking for one again. */
        unsetenv("VSSM_PKCS11_CONFIG"); unsetenv("XDG_CONFIG_HOME"); setenv("HOME", "/nonexistent", 1);
        if (f->C_Initialize(NULL) != CKR_OK) { printf("child: init failed\n"); _exit(4); }
        printf("child: re-initialized without VSSM_PKCS11_CONFIG\n");
        if (sign_once(argv[2], "child") != CKR_OK) _exit(5);
        f->C_Finalize(NULL);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    printf("child exit: %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    CK_RV rv = sign_once(argv[2], "parent-after");
    f->C_Finalize(NULL);
    return (WIFEXITED(status) && WEXITSTATUS(status) == 0 && rv == CKR_OK) ? 0 : 1;
}
