#ifndef COPENSSL_H
#define COPENSSL_H
// Tiny C shim over system OpenSSL 3: only what Swift cannot import directly (function-like
// macros, BIO_METHOD plumbing). Keep every function here a few lines long.
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/ec.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/pkcs12.h>
#include <openssl/crypto.h>
#include <openssl/provider.h>
#include <openssl/ecdsa.h>
#include <openssl/bn.h>
#include <openssl/dsa.h>
#include <openssl/param_build.h>

// SSL_CTX_set_min_proto_version / SSL_CTX_set_mode are macros.
static inline int copenssl_ctx_set_min_tls12(SSL_CTX *ctx) {
    return (int)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
}
static inline void copenssl_ctx_set_modes(SSL_CTX *ctx) {
    SSL_CTX_set_mode(ctx, SSL_MODE_AUTO_RETRY | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    // Read what the socket has in one recv: an answer is two records (head, body), which cost
    // four recv calls without read-ahead (5-byte header, then the record, each).
    SSL_CTX_set_read_ahead(ctx, 1);
}
static inline int copenssl_set_sni(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}
static inline void copenssl_free(void *p) { OPENSSL_free(p); }
/// SHA-256 of the peer's certificate (DER) into out[32]; 1 on success, 0 without a certificate.
static inline int copenssl_peer_cert_sha256(SSL *ssl, unsigned char *out) {
    X509 *x = SSL_get1_peer_certificate(ssl);
    if (x == NULL) return 0;
    unsigned int n = 0;
    int ok = X509_digest(x, EVP_sha256(), out, &n) == 1 && n == 32;
    X509_free(x);
    return ok;
}
static inline int copenssl_ctx_add0_chain_cert(SSL_CTX *ctx, X509 *x) { return (int)SSL_CTX_add0_chain_cert(ctx, x); }

/// A socket BIO that sends with MSG_NOSIGNAL so a peer reset never raises SIGPIPE in the host
/// (OpenSSL's own socket BIO uses write()). Does not own or close the fd.
BIO *copenssl_bio_new_nosignal(int fd);

/// Error string of the oldest queued OpenSSL error (clears the queue). Writes at most len-1 bytes.
void copenssl_last_error(char *buf, size_t len);

/// Reason text of the oldest queued OpenSSL error ("sslv3 alert certificate expired"), clearing
/// the queue; empty when there is none.
void copenssl_last_reason(char *buf, size_t len);

/// The peer certificate's subject and names, for messages: "subject CN=VSSM,OU=x; names DNS:VSSM, IP:127.0.0.1".
/// 0 when the connection has no peer certificate.
int copenssl_peer_summary(SSL *ssl, char *buf, size_t len);

/// Of the first certificate in a PEM: seconds until notAfter (negative when expired), whether it is
/// valid yet, and its subject. 1 on success.
int copenssl_pem_cert_validity(const unsigned char *pem, int len, long long *secondsLeft, int *notYetValid, char *subject, size_t subjectLen);

/// Refuse core dumps (RLIMIT_CORE 0, PR_SET_DUMPABLE 0): key material must never hit disk.
int copenssl_refuse_core_dumps(void);

/// HMAC with a prepared key (see shim.c); free the context with EVP_MAC_CTX_free.
EVP_MAC_CTX *copenssl_hmac_prepare(const char *digest, const unsigned char *key, size_t keylen);
int copenssl_hmac_compute(EVP_MAC_CTX *prepared, const unsigned char *data, size_t len, unsigned char *out, size_t outsize, size_t *outlen);
/// Passphrase callback data for PEM_read_bio_PrivateKey.
EVP_PKEY *copenssl_read_private_key_pem(const unsigned char *pem, int len, const char *pass);

/// A DSA key on domain parameters p, q, g (big-endian), or NULL. OpenSSL 3.0's provider key
/// generation from imported domain parameters fails without an error, so this uses the DSA_*
/// calls OpenSSL 3 deprecates (kept here, in C, where their deprecation is acknowledged once).
EVP_PKEY *copenssl_dsa_generate(const unsigned char *p, size_t plen, const unsigned char *q, size_t qlen,
                            const unsigned char *g, size_t glen);

#endif
