/* loadgen: drives a `vssm serve` API listener directly (no module), from its own process, over
 * keep-alive mTLS connections on one epoll thread.
 *
 *   loadgen sign  HOST PORT KEYNAME CONNECTIONS SECONDS   each connection keeps one ECDSA sign in flight
 *   loadgen idle  HOST PORT KEYNAME CONNECTIONS SECONDS   opens the connections, makes one request on each
 *                                                         (so the server counts it as an idle keep-alive
 *                                                         connection), then holds them without traffic
 * TLS material from the environment: VSSM_CA, VSSM_CLIENT_CERT, VSSM_CLIENT_KEY (as dev-env.sh
 * exports them). With LOADGEN_SERVER_PID set, the server's CPU time over the measurement is read
 * from /proc and reported per request and as requests per second of server CPU (one core).
 * Prints name=value pairs; `idle` prints `idle_ready=N` once all are open, then on exit how many
 * the server still holds open. Exit status 1 on any failed request. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "benchutil.h"

enum state { CONNECTING, HANDSHAKE, SENDING, RECEIVING, IDLE, CLOSED };

typedef struct {
    int fd;
    SSL *ssl;
    enum state st;
    size_t sent;
    char buf[8192];
    size_t got;
    double started;
    int want_write;
} conn_t;

static char request[1024];
static size_t request_len;
static double *lat;
static long nlat, caplat, failures, completed, settled;
static int measuring;

static void watch(int ep, conn_t *c, int write) {
    struct epoll_event ev = {.events = EPOLLIN | (write ? EPOLLOUT : 0), .data.ptr = c};
    if (c->want_write != write) {
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_write = write;
    }
}

static void fail(int ep, conn_t *c) {
    failures++;
    settled++;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl) SSL_free(c->ssl);
    c->ssl = NULL;
    close(c->fd);
    c->st = CLOSED;
}

/* A complete response in c->buf? 1 yes (status 200), -1 bad, 0 need more. */
static int response_done(conn_t *c) {
    c->buf[c->got < sizeof c->buf ? c->got : sizeof c->buf - 1] = 0;
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end) return c->got >= sizeof c->buf - 1 ? -1 : 0;
    char *cl = strcasestr(c->buf, "content-length:");
    if (!cl || cl > end) return -1;
    long len = strtol(cl + 15, NULL, 10);
    size_t total = (size_t)(end + 4 - c->buf) + (size_t)len;
    if (len < 0 || total >= sizeof c->buf) return -1;
    if (c->got < total) return 0;
    return strncmp(c->buf, "HTTP/1.1 200", 12) == 0 ? 1 : -1;
}

/* After an SSL call returned r <= 0: wait for the socket (1) or give the connection up (0). */
static int retry_later(int ep, conn_t *c, int r) {
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) { watch(ep, c, 0); return 1; }
    if (e == SSL_ERROR_WANT_WRITE) { watch(ep, c, 1); return 1; }
    ERR_clear_error();
    fail(ep, c);
    return 0;
}

static void step(int ep, conn_t *c, double deadline) {
    for (;;) {
        if (c->st == CONNECTING) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err) { fail(ep, c); return; }
            c->st = HANDSHAKE;
        }
        if (c->st == HANDSHAKE) {
            int r = SSL_do_handshake(c->ssl);
            if (r != 1) { retry_later(ep, c, r); return; }
            c->st = SENDING;
            c->sent = 0;
            c->started = now();
        }
        if (c->st == SENDING) {
            int r = SSL_write(c->ssl, request, (int)request_len);
            if (r <= 0) { retry_later(ep, c, r); return; }
            c->st = RECEIVING;
            c->got = 0;
            watch(ep, c, 0);
        }
        if (c->st == RECEIVING) {
            int r = SSL_read(c->ssl, c->buf + c->got, (int)(sizeof c->buf - 1 - c->got));
            if (r <= 0) { retry_later(ep, c, r); return; }
            c->got += (size_t)r;
            int done = response_done(c);
            if (done == 0) continue;
            if (done < 0) { fail(ep, c); return; }
            completed++;
            if (measuring) {
                if (nlat == caplat) { caplat = caplat ? caplat * 2 : 65536; lat = realloc(lat, caplat * sizeof(double)); }
                lat[nlat++] = (now() - c->started) * 1e6;
            }
            if (now() >= deadline) {
                c->st = IDLE;
                if (!measuring) settled++;
                return;
            }
            c->st = SENDING;
            c->started = now();
            continue;
        }
        if (c->st == IDLE) {
            /* The server closing an idle connection shows as EOF here. */
            char b[256];
            int r = SSL_read(c->ssl, b, sizeof b);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ) return;
                ERR_clear_error();
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                SSL_free(c->ssl);
                c->ssl = NULL;
                close(c->fd);
                c->st = CLOSED;
            }
            return;
        }
        return;
    }
}

static int open_conn(int ep, SSL_CTX *ctx, conn_t *c, struct sockaddr_in *addr) {
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return 0;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)addr, sizeof *addr) != 0 && errno != EINPROGRESS) { close(c->fd); return 0; }
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, "VSSM");
    SSL_set_connect_state(c->ssl);
    c->st = CONNECTING;
    c->want_write = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    return 1;
}

static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }

int main(int argc, char **argv) {
    if (argc != 7 || (strcmp(argv[1], "sign") && strcmp(argv[1], "idle"))) {
        fprintf(stderr, "usage: see the comment at the top of loadgen.c\n");
        return 2;
    }
    const char *host = argv[2], *key = argv[4];
    int port = atoi(argv[3]), n = atoi(argv[5]);
    double seconds = atof(argv[6]);
    const char *ca = getenv("VSSM_CA"), *cert = getenv("VSSM_CLIENT_CERT"), *pkey = getenv("VSSM_CLIENT_KEY");
    if (!ca || !cert || !pkey || n < 1) { fprintf(stderr, "loadgen: VSSM_CA, VSSM_CLIENT_CERT, VSSM_CLIENT_KEY needed\n"); return 2; }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, pkey, SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "loadgen: cannot load the TLS files\n");
        return 2;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_read_ahead(ctx, 1);

    /* 32 bytes of input, hashed by the service with SHA-256 and signed with ECDSA. */
    const char *body_fmt = "{\"keyName\":\"%s\",\"algorithm\":\"SHA256withECDSA\",\"input\":\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\"}";
    char body[512];
    int bl = snprintf(body, sizeof body, body_fmt, key);
    request_len = (size_t)snprintf(request, sizeof request,
                                   "POST /REST/v1/asymmetric/sign HTTP/1.1\r\nHost: VSSM\r\nContent-Type: application/json\r\n"
                                   "Content-Length: %d\r\n\r\n%s", bl, body);

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    conn_t *conns = calloc((size_t)n, sizeof(conn_t));
    struct epoll_event events[256];
    const char *server = getenv("LOADGEN_SERVER_PID");

    /* Open in waves (at most 64 handshakes at a time, so the server's accept backlog is never the
     * bottleneck); each connection makes one request and then waits, idle. */
    int idle_mode = strcmp(argv[1], "idle") == 0;
    double t_open = now(), deadline = 0;
    int opened = 0;
    while (settled < n) {
        while (opened < n && opened - settled < 64) {
            if (!open_conn(ep, ctx, &conns[opened], &addr)) { failures++; settled++; conns[opened].st = CLOSED; }
            opened++;
        }
        int k = epoll_wait(ep, events, 256, 1000);
        for (int i = 0; i < k; i++) step(ep, events[i].data.ptr, deadline);
        if (now() - t_open > 300) { fprintf(stderr, "loadgen: opening took over 300 s\n"); return 1; }
    }
    if (idle_mode) {
        int open_now = 0;
        for (int i = 0; i < n; i++) open_now += conns[i].st == IDLE;
        printf("idle_ready=%d open_seconds=%.1f failures=%ld\n", open_now, now() - t_open, failures);
        fflush(stdout);
        double end = now() + seconds;
        while (!stop && now() < end) {
            int k = epoll_wait(ep, events, 256, 200);
            for (int i = 0; i < k; i++) step(ep, events[i].data.ptr, deadline);
        }
        open_now = 0;
        for (int i = 0; i < n; i++) open_now += conns[i].st == IDLE;
        printf("idle_open_at_end=%d\n", open_now);
        return 0;
    }

    /* sign: every connection has one request in flight until the deadline. */
    double c0 = proc_cpu(server), t0 = now();
    measuring = 1;
    deadline = t0 + seconds;
    for (int i = 0; i < n; i++) {
        if (conns[i].st != IDLE) continue;
        conns[i].st = SENDING;
        conns[i].started = now();
        step(ep, &conns[i], deadline);
    }
    for (;;) {
        int k = epoll_wait(ep, events, 256, 100);
        for (int i = 0; i < k; i++) step(ep, events[i].data.ptr, deadline);
        if (now() < deadline) continue;
        int busy = 0;
        for (int i = 0; i < n && !busy; i++) busy = conns[i].st != IDLE && conns[i].st != CLOSED;
        if (!busy) break;
        if (now() > deadline + 60) { fprintf(stderr, "loadgen: requests still open 60 s after the end\n"); failures++; break; }
    }
    double elapsed = now() - t0, c1 = proc_cpu(server);
    qsort(lat, (size_t)nlat, sizeof(double), cmp);
    printf("connections=%d requests=%ld requests_per_s=%.0f p50_us=%.0f p99_us=%.0f failures=%ld", n, nlat, nlat / elapsed,
           nlat ? lat[nlat / 2] : 0, nlat ? lat[(long)(nlat * 0.99)] : 0, failures);
    if (c0 >= 0 && c1 > c0 && nlat)
        printf(" server_cpu_us=%.1f requests_per_server_core_s=%.0f", (c1 - c0) * 1e6 / nlat, nlat / (c1 - c0));
    printf("\n");
    return failures ? 1 : 0;
}
