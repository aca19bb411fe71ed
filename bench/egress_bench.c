/* Benchmark driver for bench/egress.sh: a source/sink/echo server on
 * 127.0.0.1 and a client that measures large transfers (both ways) and
 * connection set-up latency, either directly, through shed's egress (run
 * in-process on its own loop thread, listeners on 127.0.0.2 standing in for
 * init's), through an external HTTP CONNECT proxy, or through "hop": a bare
 * two-hop forwarder (127.0.0.3; no protocol, no policy, two threads per
 * connection splicing through 1 MiB pipes) that shows what the second TCP
 * hop alone costs on this machine, the floor under any relaying proxy.
 *   egress_bench direct|shed|hop|proxy:PORT SIZE_MIB ROUNDS CONNS
 * Prints "download_mibps", "upload_mibps" (medians of ROUNDS),
 * "setup_us_p50/p99" (over CONNS sequential connections), and "cpu_s_per_gib":
 * this process's CPU time (client, server and, for shed, the proxy) per GiB
 * moved during the transfers. */
#include "base/json.h"
#include "egress/egress.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)
static size_t g_size;
static int g_port;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(CHUNK);
    char cmd;
    if (read(fd, &cmd, 1) == 1) {
        if (cmd == 'D') {
            memset(buf, 'd', CHUNK);
            for (size_t left = g_size; left;) {
                ssize_t n = write(fd, buf, left < CHUNK ? left : CHUNK);
                if (n <= 0) break;
                left -= (size_t)n;
            }
        } else if (cmd == 'U') {
            while (read(fd, buf, CHUNK) > 0) {}
            ssize_t w = write(fd, "K", 1);
            (void)w;
        } else if (cmd == 'E') {
            ssize_t w = write(fd, "e", 1);
            (void)w;
        }
    }
    free(buf);
    close(fd);
    return NULL;
}

static void *server(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) continue;
        pthread_t t;
        pthread_create(&t, NULL, serve, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
    return NULL;
}

static int listen_on(const char *ip, int type, int *port)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) die("bind");
    if (type == SOCK_STREAM && listen(fd, 1024) < 0) die("listen");
    socklen_t sl = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &sl);
    if (port) *port = ntohs(a.sin_port);
    return fd;
}

static int dial(const char *ip, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* ---- hop: the bare two-hop forwarder ---- */

typedef struct {
    int src, dst;
} hop_half;

static void *hop_pump(void *arg)
{
    hop_half *h = arg;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) die("pipe2");
    fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    for (;;) {
        ssize_t n = splice(h->src, NULL, p[1], NULL, 1 << 20, SPLICE_F_MOVE);
        if (n <= 0) break;
        while (n > 0) {
            ssize_t m = splice(p[0], NULL, h->dst, NULL, (size_t)n, SPLICE_F_MOVE);
            if (m <= 0) goto out;
            n -= m;
        }
    }
out:
    shutdown(h->dst, SHUT_WR);
    close(p[0]);
    close(p[1]);
    return NULL;
}

static int dial(const char *ip, int port);

static void *hop_conn(void *arg)
{
    int cfd = (int)(intptr_t)arg;
    int ufd = dial("127.0.0.1", g_port);
    int one = 1;
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    hop_half up = {cfd, ufd}, down = {ufd, cfd};
    pthread_t t;
    pthread_create(&t, NULL, hop_pump, &up);
    hop_pump(&down);
    pthread_join(t, NULL);
    close(cfd);
    close(ufd);
    return NULL;
}

static void *hop_server(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        pthread_t t;
        pthread_create(&t, NULL, hop_conn, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
    return NULL;
}

static const char *g_proxy_ip;
static int g_proxy_port;
static const char *g_target; /* host name the proxy is asked for */
static const char *g_hop_ip;
static int g_hop_port;

/* A connection to the server, directly or through the proxy's CONNECT. */
static int open_conn(void)
{
    if (g_hop_ip) return dial(g_hop_ip, g_hop_port);
    if (!g_proxy_ip) return dial("127.0.0.1", g_port);
    int fd = dial(g_proxy_ip, g_proxy_port);
    char req[256];
    int n = snprintf(req, sizeof(req), "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", g_target,
                     g_port, g_target, g_port);
    if (write(fd, req, (size_t)n) != n) die("write CONNECT");
    /* The server says nothing before it is asked, so everything that comes
     * now is the reply head: read it as it arrives, not byte by byte. */
    char head[1024];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, head + len, sizeof(head) - 1 - len);
        if (n <= 0) die("read CONNECT reply");
        len += (size_t)n;
        head[len] = '\0';
        if (strstr(head, "\r\n\r\n") || len == sizeof(head) - 1) break;
    }
    if (!strstr(head, " 200")) {
        fprintf(stderr, "proxy refused: %s\n", head);
        exit(1);
    }
    return fd;
}

static double download(void)
{
    char *buf = malloc(CHUNK);
    double t0 = now_s();
    int fd = open_conn();
    if (write(fd, "D", 1) != 1) die("write");
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n <= 0) break;
        got += (size_t)n;
    }
    double dt = now_s() - t0;
    close(fd);
    free(buf);
    if (got != g_size) {
        fprintf(stderr, "download: %zu of %zu bytes\n", got, g_size);
        exit(1);
    }
    return (double)g_size / (1 << 20) / dt;
}

static double upload(void)
{
    char *buf = malloc(CHUNK);
    memset(buf, 'u', CHUNK);
    double t0 = now_s();
    int fd = open_conn();
    if (write(fd, "U", 1) != 1) die("write");
    for (size_t left = g_size; left;) {
        ssize_t n = write(fd, buf, left < CHUNK ? left : CHUNK);
        if (n <= 0) die("upload write");
        left -= (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    char k = 0;
    if (read(fd, &k, 1) != 1 || k != 'K') die("upload ack");
    double dt = now_s() - t0;
    close(fd);
    free(buf);
    return (double)g_size / (1 << 20) / dt;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: egress_bench direct|shed|hop|proxy:PORT SIZE_MIB ROUNDS CONNS\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    g_size = (size_t)atol(argv[2]) << 20;
    int rounds = atoi(argv[3]), conns = atoi(argv[4]);
    int lfd = listen_on("127.0.0.1", SOCK_STREAM, &g_port);
    pthread_t st;
    pthread_create(&st, NULL, server, (void *)(intptr_t)lfd);

    egress_runner *runner = NULL;
    egress_policy *pol = NULL;
    if (strcmp(argv[1], "shed") == 0) {
        const char *js = "{\"allowedDomains\":[\"bench.test\"],\"staticHosts\":{\"bench.test\":"
                         "\"127.0.0.1\"},\"allowCidrs\":[\"127.0.0.0/8\"]}";
        shed_err err;
        json_t *j = json_parse(js, strlen(js), 4096, 8, &err);
        if (egress_policy_parse(j, &pol, &err) < 0) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        json_decref(j);
        int hport;
        int h = listen_on("127.0.0.2", SOCK_STREAM, &hport);
        if (egress_runner_start("bench", pol, h, -1, -1, &runner, &err) < 0) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        g_proxy_ip = "127.0.0.2";
        g_proxy_port = hport;
        g_target = "bench.test";
    } else if (strncmp(argv[1], "proxy:", 6) == 0) {
        g_proxy_ip = "127.0.0.1";
        g_proxy_port = atoi(argv[1] + 6);
        g_target = "localhost";
    } else if (strcmp(argv[1], "hop") == 0) {
        int hfd = listen_on("127.0.0.3", SOCK_STREAM, &g_hop_port);
        pthread_t ht;
        pthread_create(&ht, NULL, hop_server, (void *)(intptr_t)hfd);
        g_hop_ip = "127.0.0.3";
    } else if (strcmp(argv[1], "direct") != 0) {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }

    double *d = calloc((size_t)rounds, sizeof(double)), *u = calloc((size_t)rounds, sizeof(double));
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    for (int i = 0; i < rounds; i++) {
        d[i] = download();
        u[i] = upload();
    }
    getrusage(RUSAGE_SELF, &r1);
#define TV(t) ((double)(t).tv_sec + (double)(t).tv_usec / 1e6)
    double cpu = TV(r1.ru_utime) - TV(r0.ru_utime) + TV(r1.ru_stime) - TV(r0.ru_stime);
    double gib = 2.0 * rounds * (double)g_size / (1 << 30);
    qsort(d, (size_t)rounds, sizeof(double), cmp_d);
    qsort(u, (size_t)rounds, sizeof(double), cmp_d);
    double *lat = calloc((size_t)conns, sizeof(double));
    for (int i = 0; i < conns; i++) {
        double t0 = now_s();
        int fd = open_conn();
        char e;
        if (write(fd, "E", 1) != 1 || read(fd, &e, 1) != 1) die("echo");
        lat[i] = (now_s() - t0) * 1e6;
        close(fd);
    }
    qsort(lat, (size_t)conns, sizeof(double), cmp_d);
    printf("download_mibps %.0f\nupload_mibps %.0f\nsetup_us_p50 %.0f\nsetup_us_p99 %.0f\n"
           "cpu_s_per_gib %.3f\n",
           d[rounds / 2], u[rounds / 2], lat[conns / 2], lat[(conns * 99) / 100], cpu / gib);
    egress_runner_stop(runner);
    egress_policy_free(pol);
    return 0;
}
