/* floor: what one remote ECDSA signature costs on this machine with nothing but TLS and the
 * signature: a C client and a C server (two processes, loopback, one keep-alive TLS 1.3
 * connection), a 300-byte request, the server hashes it and signs with P-256 (context built
 * once), a 150-byte answer. No HTTP, no JSON, no PKCS#11, no audit. `make bench` prints it beside
 * the module's figures: the part of a signature no implementation of a network key service avoids.
 *
 *   floor DIR ROUNDS     DIR holds rpc-cert.pem and rpc-key.pem (the dev-env server identity)
 * Prints p50/p99 of the round trips and CPU microseconds per request of client and server.
 *
 *   floor --cold DIR PORT RUNS
 * The start of a TLS client, median of RUNS fresh processes: OpenSSL initialisation, a client
 * context, the CA, certificate and key files of DIR (ca.pem, client-cert.pem, client-key.pem),
 * TCP connect and the mutual-TLS handshake with the `vssm serve` API listener at PORT, and one
 * HTTP exchange (ext/capabilities). The part of the module's cold path any OpenSSL client pays
 * (loading libssl itself is not counted: this program links it). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "benchutil.h"

/* The server: one connection, sign every request; reports its CPU per request on the pipe. */
static void serve(int listener, const char *cert, const char *key, int report) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) != 1 || SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) _exit(1);
    int one = 1, fd = accept(listener, NULL, NULL);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) != 1) _exit(1);
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    EVP_PKEY_CTX *sign = EVP_PKEY_CTX_new(ec, NULL);
    EVP_PKEY_sign_init(sign);
    char buf[4096], out[150];
    unsigned char digest[32], sig[128];
    double c0 = -1;
    long n = 0;
    for (;;) {
        int r = SSL_read(ssl, buf, sizeof buf);
        if (r <= 0) break;
        if (c0 < 0) c0 = self_cpu() * 1e6; /* from the first request: the handshake is not counted */
        else n++;
        EVP_Digest(buf, (size_t)r, digest, NULL, EVP_sha256(), NULL);
        size_t len = sizeof sig;
        EVP_PKEY_sign(sign, sig, &len, digest, sizeof digest);
        memset(out, 'x', sizeof out);
        memcpy(out, sig, len);
        SSL_write(ssl, out, sizeof out);
    }
    double per = n > 0 ? (self_cpu() * 1e6 - c0) / n : 0;
    if (write(report, &per, sizeof per) != sizeof per) _exit(1);
    _exit(0);
}

/* One cold client start in this (fresh) process; microseconds, or -1. */
static double cold_once(const char *dir, int port) {
    char ca[1024], cert[1024], key[1024];
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(cert, sizeof cert, "%s/client-cert.pem", dir);
    snprintf(key, sizeof key, "%s/client-key.pem", dir);
    double t0 = now() * 1e6;
    OPENSSL_init_ssl(0, NULL);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) return -1;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "VSSM");
    if (SSL_connect(ssl) != 1) return -1;
    const char *req = "POST /REST/v1/ext/capabilities HTTP/1.1\r\nHost: VSSM\r\nContent-Length: 2\r\n\r\n{}";
    if (SSL_write(ssl, req, (int)strlen(req)) <= 0) return -1;
    char buf[4096];
    if (SSL_read(ssl, buf, sizeof buf) <= 0) return -1;
    return now() * 1e6 - t0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "--cold") == 0) {
        int runs = atoi(argv[4]), got = 0;
        double v[256];
        for (int i = 0; i < runs && i < 256; i++) {
            int p[2];
            if (pipe(p) != 0) return 1;
            pid_t pid = fork();
            if (pid == 0) {
                double t = cold_once(argv[2], atoi(argv[3]));
                _exit(write(p[1], &t, sizeof t) == sizeof t ? 0 : 1);
            }
            close(p[1]);
            double t = -1;
            if (read(p[0], &t, sizeof t) == sizeof t && t > 0) v[got++] = t;
            close(p[0]);
            waitpid(pid, NULL, 0);
        }
        if (!got) { printf("cold_errors=%d\n", runs); return 1; }
        qsort(v, (size_t)got, sizeof(double), cmp);
        printf("cold_tls_p50_us=%.0f cold_runs=%d\n", v[got / 2], got);
        return 0;
    }
    if (argc != 3) { fprintf(stderr, "usage: see the comment at the top of floor.c\n"); return 2; }
    int rounds = atoi(argv[2]);
    if (rounds < 100) rounds = 100;
    char cert[1024], key[1024];
    snprintf(cert, sizeof cert, "%s/rpc-cert.pem", argv[1]);
    snprintf(key, sizeof key, "%s/rpc-key.pem", argv[1]);
    int one = 1, listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t alen = sizeof addr;
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || getsockname(listener, (struct sockaddr *)&addr, &alen) != 0 || listen(listener, 4) != 0) return 1;
    int pipefd[2];
    if (pipe(pipefd) != 0) return 1;
    pid_t pid = fork();
    if (pid == 0) { close(pipefd[0]); serve(listener, cert, key, pipefd[1]); }
    close(pipefd[1]);

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_read_ahead(ctx, 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) return 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1) { fprintf(stderr, "floor: handshake failed\n"); return 1; }
    char request[300], buf[4096];
    memset(request, 'r', sizeof request);
    double *lat = malloc(sizeof(double) * (size_t)rounds);
    double c0 = self_cpu() * 1e6;
    for (int i = 0; i < rounds; i++) {
        double t = now() * 1e6;
        if (SSL_write(ssl, request, sizeof request) <= 0) return 1;
        for (int got = 0; got < 150;) {
            int r = SSL_read(ssl, buf, sizeof buf);
            if (r <= 0) return 1;
            got += r;
        }
        lat[i] = now() * 1e6 - t;
    }
    double client = (self_cpu() * 1e6 - c0) / rounds;
    SSL_shutdown(ssl);
    close(fd);
    double server = 0;
    if (read(pipefd[0], &server, sizeof server) != sizeof server) server = 0;
    waitpid(pid, NULL, 0);
    qsort(lat, (size_t)rounds, sizeof(double), cmp);
    printf("rounds=%d p50_us=%.0f p99_us=%.0f client_cpu_us=%.1f server_cpu_us=%.1f\n", rounds, lat[rounds / 2],
           lat[(int)(rounds * 0.99)], client, server);
    return 0;
}
