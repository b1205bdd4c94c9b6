/* A host that lists the token's objects (which starts the module's change-following thread) and
 * then exits, with C_Finalize (argv[2] = "finalize") or without it, as many programs do: either way
 * the process must exit 0, never crash in OpenSSL's exit-time cleanup while the thread is in it.
 * Usage: exit-host MODULE finalize|exit   (config from VSSM_PKCS11_CONFIG). */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "cpkcs11.h"

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { printf("dlopen: %s\n", dlerror()); return 1; }
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
    CK_FUNCTION_LIST *f;
    if (!get || get(&f) != CKR_OK || f->C_Initialize(NULL) != CKR_OK) return 1;
    CK_SESSION_HANDLE s;
    if (f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK) return 1;
    CK_OBJECT_HANDLE o[8];
    CK_ULONG n = 0;
    if (f->C_FindObjectsInit(s, NULL, 0) != CKR_OK || f->C_FindObjects(s, o, 8, &n) != CKR_OK) return 1;
    f->C_FindObjectsFinal(s);
    usleep(20000); /* the thread is waiting now */
    if (strcmp(argv[2], "finalize") == 0 && f->C_Finalize(NULL) != CKR_OK) return 1;
    return 0;
}
