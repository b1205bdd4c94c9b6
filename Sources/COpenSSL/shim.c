#include "copenssl.h"
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <stdio.h>

static BIO_METHOD *nosignal_method = NULL;
static pthread_once_t nosignal_once = PTHREAD_ONCE_INIT;

static int ns_write(BIO *b, const char *data, int len) {
    int fd = (int)(intptr_t)BIO_get_data(b);
    ssize_t n;
    do { n = send(fd, data, (size_t)len, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    BIO_clear_retry_flags(b);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_write(b);
    return (int)n;
}
static int ns_read(BIO *b, char *data, int len) {
    int fd = (int)(intptr_t)BIO_get_data(b);
    ssize_t n;
    do { n = recv(fd, data, (size_t)len, 0); } while (n < 0 && errno == EINTR);
    BIO_clear_retry_flags(b);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_read(b);
    return (int)n;
}
static int ns_puts(BIO *b, const char *s) { return ns_write(b, s, (int)strlen(s)); }
static long ns_ctrl(BIO *b, int cmd, long num, void *ptr) {
    (void)b; (void)num; (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_PUSH: case BIO_CTRL_POP: return 0;
    default: return 0;
    }
}
static int ns_create(BIO *b) { BIO_set_init(b, 1); return 1; }
static int ns_destroy(BIO *b) { (void)b; return 1; }

static void ns_init_method(void) {
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "vssm nosignal socket");
    if (!m) return;
    BIO_meth_set_write(m, ns_write);
    BIO_meth_set_read(m, ns_read);
    BIO_meth_set_puts(m, ns_puts);
    BIO_meth_set_ctrl(m, ns_ctrl);
    BIO_meth_set_create(m, ns_create);
    BIO_meth_set_destroy(m, ns_destroy);
    nosignal_method = m;
}

BIO *copenssl_bio_new_nosignal(int fd) {
    pthread_once(&nosignal_once, ns_init_method);
    if (!nosignal_method) return NULL;
    BIO *b = BIO_new(nosignal_method);
    if (!b) return NULL;
    BIO_set_data(b, (void *)(intptr_t)fd);
    return b;
}

void copenssl_last_error(char *buf, size_t len) {
    if (len == 0) return;
    unsigned long e = ERR_get_error();
    if (e == 0) { buf[0] = 0; }
    else { ERR_error_string_n(e, buf, len); }
    ERR_clear_error();
}

int copenssl_refuse_core_dumps(void) {
    struct rlimit rl = {0, 0};
    int a = setrlimit(RLIMIT_CORE, &rl);
    int b = prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    return (a == 0 && b == 0) ? 0 : -1;
}

static int pass_cb(char *buf, int size, int rwflag, void *u) {
    (void)rwflag;
    const char *p = (const char *)u;
    if (!p) return -1;
    size_t n = strlen(p);
    if ((int)n > size) return -1;
    memcpy(buf, p, n);
    return (int)n;
}

EVP_PKEY *copenssl_read_private_key_pem(const unsigned char *pem, int len, const char *pass) {
    BIO *b = BIO_new_mem_buf(pem, len);
    if (!b) return NULL;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, pass_cb, (void *)pass);
    BIO_free(b);
    return k;
}

/* HMAC with a key set up once: the context keeps the key schedule, each MAC works on a copy
 * (HMAC() one-shot fetches the algorithm again on every call in OpenSSL 3). */
EVP_MAC_CTX *copenssl_hmac_prepare(const char *digest, const unsigned char *key, size_t keylen) {
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (!mac) return NULL;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac); /* the context holds its own reference */
    if (!ctx) return NULL;
    OSSL_PARAM params[2] = {OSSL_PARAM_construct_utf8_string("digest", (char *)digest, 0), OSSL_PARAM_construct_end()};
    if (EVP_MAC_init(ctx, key, keylen, params) != 1) { EVP_MAC_CTX_free(ctx); return NULL; }
    return ctx;
}

int copenssl_hmac_compute(EVP_MAC_CTX *prepared, const unsigned char *data, size_t len, unsigned char *out, size_t outsize, size_t *outlen) {
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(prepared);
    if (!ctx) return 0;
    int ok = EVP_MAC_update(ctx, data, len) == 1 && EVP_MAC_final(ctx, out, outlen, outsize) == 1;
    EVP_MAC_CTX_free(ctx);
    return ok;
}

void copenssl_last_reason(char *buf, size_t len) {
    if (len == 0) return;
    buf[0] = 0;
    unsigned long e = ERR_get_error();
    if (e != 0) {
        const char *r = ERR_reason_error_string(e);
        if (r != NULL) { strncpy(buf, r, len - 1); buf[len - 1] = 0; }
        else { ERR_error_string_n(e, buf, len); }
    }
    ERR_clear_error();
}

static void append(char *buf, size_t len, const char *s) {
    size_t used = strlen(buf);
    if (used + 1 >= len) return;
    strncat(buf, s, len - used - 1);
}

int copenssl_peer_summary(SSL *ssl, char *buf, size_t len) {
    if (len == 0) return 0;
    buf[0] = 0;
    X509 *x = SSL_get0_peer_certificate(ssl);
    /* After a failed verification the session has no peer; the chain the server sent is still there. */
    if (x == NULL) {
        STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
        if (chain != NULL && sk_X509_num(chain) > 0) x = sk_X509_value(chain, 0);
    }
    if (x == NULL) return 0;
    char subject[512];
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL) return 0;
    X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
    int n = BIO_read(b, subject, sizeof(subject) - 1);
    BIO_free(b);
    subject[n > 0 ? n : 0] = 0;
    append(buf, len, "subject ");
    append(buf, len, subject);
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (names != NULL) {
        append(buf, len, "; names ");
        for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
            char one[300];
            one[0] = 0;
            if (g->type == GEN_DNS) {
                snprintf(one, sizeof(one), "DNS:%.*s", ASN1_STRING_length(g->d.dNSName), (const char *)ASN1_STRING_get0_data(g->d.dNSName));
            } else if (g->type == GEN_IPADD && ASN1_STRING_length(g->d.iPAddress) == 4) {
                const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
                snprintf(one, sizeof(one), "IP:%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
            }
            if (one[0]) {
                if (i > 0) append(buf, len, ", ");
                append(buf, len, one);
            }
        }
        GENERAL_NAMES_free(names);
    }
    ERR_clear_error();
    return 1;
}

int copenssl_pem_cert_validity(const unsigned char *pem, int len, long long *secondsLeft, int *notYetValid, char *subject, size_t subjectLen) {
    BIO *b = BIO_new_mem_buf(pem, len);
    if (b == NULL) return 0;
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if (x == NULL) { ERR_clear_error(); return 0; }
    int days = 0, secs = 0;
    int ok = ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x));
    *secondsLeft = (long long)days * 86400 + secs;
    *notYetValid = X509_cmp_current_time(X509_get0_notBefore(x)) > 0;
    if (subjectLen > 0) {
        subject[0] = 0;
        BIO *m = BIO_new(BIO_s_mem());
        if (m != NULL) {
            X509_NAME_print_ex(m, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
            int n = BIO_read(m, subject, (int)subjectLen - 1);
            subject[n > 0 ? n : 0] = 0;
            BIO_free(m);
        }
    }
    X509_free(x);
    ERR_clear_error();
    return ok;
}

#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wdeprecated-declarations"
EVP_PKEY *copenssl_dsa_generate(const unsigned char *p, size_t plen, const unsigned char *q, size_t qlen,
                            const unsigned char *g, size_t glen) {
    if (plen == 0 || plen > 512 || qlen == 0 || qlen > 512 || glen == 0 || glen > 512) return NULL;
    BIGNUM *bp = BN_bin2bn(p, (int)plen, NULL), *bq = BN_bin2bn(q, (int)qlen, NULL), *bg = BN_bin2bn(g, (int)glen, NULL);
    DSA *dsa = DSA_new();
    if (!bp || !bq || !bg || !dsa || DSA_set0_pqg(dsa, bp, bq, bg) != 1) {
        BN_free(bp); BN_free(bq); BN_free(bg); DSA_free(dsa);
        return NULL;
    }
    /* bp, bq, bg now belong to dsa. */
    EVP_PKEY *key = NULL;
    if (BN_num_bits(bq) >= 160 && BN_num_bits(bp) >= 1024 && DSA_generate_key(dsa) == 1 && (key = EVP_PKEY_new()) != NULL
        && EVP_PKEY_set1_DSA(key, dsa) != 1) {
        EVP_PKEY_free(key);
        key = NULL;
    }
    DSA_free(dsa);
    return key;
}
#pragma clang diagnostic pop
