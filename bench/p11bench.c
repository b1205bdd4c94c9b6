/* p11bench: C_Sign throughput and latency of any PKCS#11 module, and its cold path.
 *   p11bench MODULE LABEL MECH THREADS SECONDS [PIN]     MECH: ecdsa (CKM_ECDSA over a SHA-256 digest, as TLS stacks sign) | rsa (CKM_SHA256_RSA_PKCS)
 *   p11bench --cold MODULE LABEL MECH RUNS [PIN]         median of fresh processes: dlopen..first sign
 * Prints one line: name=value pairs. The module config comes from the environment
 * (VSSM_PKCS11_CONFIG, SOFTHSM2_CONF). With P11BENCH_SERVER_PID set, the CPU time that process
 * spent during the measurement is reported per signature as well (server_cpu_us), beside this
 * process's own (module_cpu_us: the module plus the small loop around it). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "benchutil.h"
#include "cpkcs11.h"

static CK_FUNCTION_LIST *f;
static CK_SLOT_ID slot; /* first slot with a token (SoftHSM's slot IDs are not 0) */
static const char *label, *pin;
static CK_MECHANISM_TYPE mech;
static double seconds;
/* Threaded hosts ask for locking (SoftHSM does none with NULL init args). */
static CK_C_INITIALIZE_ARGS init_args = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};

static CK_OBJECT_HANDLE find_key(CK_SESSION_HANDLE s) {
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE k = 0;
    CK_ULONG n = 0;
    f->C_FindObjectsInit(s, t, 2);
    f->C_FindObjects(s, &k, 1, &n);
    f->C_FindObjectsFinal(s);
    return n == 1 ? k : 0;
}

static int sign(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k) {
    CK_MECHANISM m = {mech, NULL, 0};
    unsigned char data[32] = {1, 2, 3}, sig[512];
    CK_ULONG len = sizeof sig;
    if (f->C_SignInit(s, &m, k) != CKR_OK) return 0;
    return f->C_Sign(s, data, sizeof data, sig, &len) == CKR_OK;
}

typedef struct { double *lat; long n, cap; long errors; } result_t;

static void *worker(void *arg) {
    result_t *r = arg;
    CK_SESSION_HANDLE s;
    if (f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK) { r->errors++; return NULL; }
    CK_OBJECT_HANDLE k = find_key(s);
    if (!k) { r->errors++; return NULL; }
    double end = now() + seconds;
    while (now() < end) {
        double t0 = now();
        if (!sign(s, k)) { r->errors++; if (r->errors > 100) break; continue; }
        if (r->n == r->cap) { r->cap = r->cap ? r->cap * 2 : 4096; r->lat = realloc(r->lat, r->cap * sizeof(double)); }
        r->lat[r->n++] = (now() - t0) * 1e6;
    }
    f->C_CloseSession(s);
    return NULL;
}

static int load(const char *module) {
    void *h = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 0; }
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
    return get && get(&f) == CKR_OK;
}

static int login(void) {
    CK_SESSION_HANDLE s;
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    if (f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK || n < 1) return 0;
    for (CK_ULONG i = n; i-- > 0;) {
        CK_TOKEN_INFO ti;
        if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK && (ti.flags & CKF_TOKEN_INITIALIZED)) slot = slots[i];
    }
    if (!pin) return 1;
    if (f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK) return 0;
    CK_RV rv = f->C_Login(s, CKU_USER, (unsigned char *)pin, strlen(pin));
    return rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN; /* session stays open: login state persists */
}

/* One cold run in this process: load + init + login + find + first sign. */
static int cold_once(const char *module) {
    double t0 = now();
    if (!load(module) || f->C_Initialize(&init_args) != CKR_OK || !login()) return 1;
    CK_SESSION_HANDLE s;
    f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
    CK_OBJECT_HANDLE k = find_key(s);
    if (!k || !sign(s, k)) return 1;
    printf("%.0f\n", (now() - t0) * 1e6);
    fflush(stdout); /* the child leaves with _exit */
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 6 && strcmp(argv[1], "--cold") == 0) {
        const char *module = argv[2];
        label = argv[3];
        mech = strcmp(argv[4], "rsa") == 0 ? CKM_SHA256_RSA_PKCS : CKM_ECDSA;
        int runs = atoi(argv[5]);
        pin = argc > 6 ? argv[6] : NULL;
        double v[256];
        int got = 0;
        for (int i = 0; i < runs && i < 256; i++) {
            int p[2];
            if (pipe(p) != 0) return 1;
            pid_t pid = fork();
            if (pid == 0) { dup2(p[1], 1); close(p[0]); _exit(cold_once(module)); }
            close(p[1]);
            char buf[64] = {0};
            ssize_t n = read(p[0], buf, sizeof buf - 1);
            close(p[0]);
            int st;
            waitpid(pid, &st, 0);
            if (n > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0) v[got++] = atof(buf);
        }
        if (!got) { printf("cold_errors=%d\n", runs); return 1; }
        qsort(v, got, sizeof(double), cmp);
        printf("cold_p50_us=%.0f cold_runs=%d\n", v[got / 2], got);
        return 0;
    }
    if (argc < 6) { fprintf(stderr, "usage: see the comment at the top of p11bench.c\n"); return 2; }
    label = argv[2];
    mech = strcmp(argv[3], "rsa") == 0 ? CKM_SHA256_RSA_PKCS : CKM_ECDSA;
    int threads = atoi(argv[4]);
    seconds = atof(argv[5]);
    pin = argc > 6 ? argv[6] : NULL;
    if (!load(argv[1]) || f->C_Initialize(&init_args) != CKR_OK || !login()) { fprintf(stderr, "init failed\n"); return 1; }
    pthread_t t[64];
    result_t r[64];
    memset(r, 0, sizeof r);
    if (threads > 64) threads = 64;
    const char *server = getenv("P11BENCH_SERVER_PID");
    double c0 = self_cpu(), s0 = proc_cpu(server);
    double t0 = now();
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, &r[i]);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    double elapsed = now() - t0;
    double c1 = self_cpu(), s1 = proc_cpu(server);
    long total = 0, errors = 0;
    for (int i = 0; i < threads; i++) { total += r[i].n; errors += r[i].errors; }
    double *all = malloc((total ? total : 1) * sizeof(double));
    long k = 0;
    for (int i = 0; i < threads; i++) { memcpy(all + k, r[i].lat, r[i].n * sizeof(double)); k += r[i].n; }
    qsort(all, total, sizeof(double), cmp);
    printf("signs_per_s=%.0f p50_us=%.0f p99_us=%.0f signs=%ld errors=%ld module_cpu_us=%.1f", total / elapsed,
           total ? all[total / 2] : 0, total ? all[(long)(total * 0.99)] : 0, total, errors,
           total ? (c1 - c0) * 1e6 / total : 0);
    if (s0 >= 0 && s1 >= 0) printf(" server_cpu_us=%.1f", total ? (s1 - s0) * 1e6 / total : 0);
    printf("\n");
    f->C_Finalize(NULL);
    return errors ? 1 : 0;
}
