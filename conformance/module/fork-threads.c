/* fork() while other threads are inside the module (issue 20): two threads call into the module
 * without pause (C_GetSessionInfo and C_FindObjects take the library lock) while the main thread
 * forks 20 children. Each child must answer CKR_CRYPTOKI_NOT_INITIALIZED, then initialize and
 * finalize, within 10 s (a child that inherited a held lock hangs and is killed by SIGALRM).
 * Usage: fork-threads MODULE   (config from VSSM_PKCS11_CONFIG). Prints "children ok N of 20". */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cpkcs11.h"

static CK_FUNCTION_LIST *f;
static volatile int stop;

static void *busy(void *arg) {
    (void)arg;
    CK_SESSION_HANDLE s;
    if (f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK) return NULL;
    CK_SESSION_INFO info;
    CK_OBJECT_HANDLE h;
    CK_ULONG n;
    while (!stop) {
        f->C_GetSessionInfo(s, &info);
        f->C_FindObjectsInit(s, NULL, 0);
        f->C_FindObjects(s, &h, 1, &n);
        f->C_FindObjectsFinal(s);
    }
    f->C_CloseSession(s);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { printf("dlopen: %s\n", dlerror()); return 1; }
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
    if (!gfl || gfl(&f) != CKR_OK || f->C_Initialize(NULL) != CKR_OK) { printf("initialize failed\n"); return 1; }
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, busy, NULL);
    usleep(100000);
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(10);
            CK_ULONG count = 0;
            CK_RV before = f->C_GetSlotList(CK_FALSE, NULL, &count);
            CK_RV init = f->C_Initialize(NULL);
            CK_RV fin = f->C_Finalize(NULL);
            _exit(before == CKR_CRYPTOKI_NOT_INITIALIZED && init == CKR_OK && fin == CKR_OK ? 0 : 3);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ok++;
        else printf("child %d: %s %d\n", i, WIFSIGNALED(status) ? "killed by signal" : "exit", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        usleep(20000);
    }
    stop = 1;
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    f->C_Finalize(NULL);
    printf("children ok %d of 20\n", ok);
    return ok == 20 ? 0 : 1;
}
