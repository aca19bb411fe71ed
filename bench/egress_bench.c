/* Benchmark driver for bench/egress.sh: a source/sink/echo server on
 * 127.0.0.1 and a client that measures large transfers (both ways) and
 * connection set-up latency, either directly, through shed's egress (run
 * in-process on its own loop thread, listeners on 127.0.0.2 standing in for
 * init's), through an external HTTP CONNECT proxy, through "hop": a bare
 * two-hop forwarder (127.0.0.3; no protocol, no policy, two threads per
 * connection splicing through 1 MiB pipes) that shows what the second TCP
 * hop alone costs on this machine, the floor under any relaying proxy, or
 * through "sockmap": the same bare forwarder with the kernel moving the
 * bytes (127.0.0.4; a BPF sockhash and SK_SKB verdict program redirecting
 * each socket's received bytes to its peer; needs CAP_BPF + CAP_NET_ADMIN,
 * exits 3 without). It never fails because the machine is slow; it exits 1
 * if a transfer is not byte-exact in length.
 *   egress_bench direct|shed|hop|sockmap|proxy:PORT SIZE_MIB ROUNDS CONNS
 * Prints "download_mibps", "upload_mibps" (medians of ROUNDS),
 * "setup_us_p50/p99" (over CONNS sequential connections), "cpu_s_per_gib":
 * this process's CPU time (client, server and the proxy or forwarder) per
 * GiB moved during the transfers, and "sys_cpu_s_per_gib": the whole
 * machine's busy CPU time per GiB (kernel threads included: sockmap's
 * sending runs in kworkers; everyone else's load too).
 * EGRESS_BENCH_NETNS=1 (hop, sockmap; root): the client and the
 * forwarder's listener live in a new network namespace, the forwarder's
 * upstream connections and the server in the original one, as with a
 * sandbox.
 * EGRESS_BENCH_LO_GSO=BYTES (root; with EGRESS_BENCH_NETNS, or the whole
 * driver run in a fresh netns: `unshare -n`): raise that namespace's lo GSO
 * and GRO limits (IPv4 and IPv6, "BIG TCP", up to lo's tso_max_size, 524280
 * on Linux 6.x) before measuring: an experiment on the sandbox-side leg
 * (docs/egress.md). */
#include "base/json.h"
#include "egress/egress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <linux/bpf.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sched.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)
static size_t g_size;
static int g_port;
static const char *g_hop_ip; /* the forwarder (hop, sockmap) the client dials */
static int g_hop_port;

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

/* EGRESS_BENCH_VERIFY=1: the transfers carry a position-dependent pattern
 * that the receiving side checks byte by byte (costs CPU: for correctness
 * runs, not for figures). */
static int g_verify;

static unsigned char pattern_at(size_t pos)
{
    return (unsigned char)(((uint32_t)pos * 2654435761u) >> 24);
}

static void pattern_fill(char *b, size_t pos, size_t len)
{
    if (!g_verify) return;
    for (size_t i = 0; i < len; i++) b[i] = (char)pattern_at(pos + i);
}

static void pattern_check(const char *what, const char *b, size_t pos, size_t len)
{
    if (!g_verify) return;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)b[i] != pattern_at(pos + i)) {
            fprintf(stderr, "%s: byte %zu differs\n", what, pos + i);
            exit(1);
        }
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
                size_t len = left < CHUNK ? left : CHUNK;
                pattern_fill(buf, g_size - left, len);
                ssize_t n = write(fd, buf, len);
                if (n <= 0) break;
                left -= (size_t)n;
            }
        } else if (cmd == 'U') {
            size_t got = 0;
            ssize_t n;
            while ((n = read(fd, buf, CHUNK)) > 0) {
                pattern_check("upload", buf, got, (size_t)n);
                got += (size_t)n;
            }
            if (n < 0 || got != g_size) {
                fprintf(stderr, "upload: the server got %zu of %zu bytes (%s)\n", got, g_size,
                        n < 0 ? strerror(errno) : "EOF");
                exit(1);
            }
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

/* The forwarders' accept threads start in the host's network namespace (so
 * that their upstream connections are made there) and get their listener
 * through a pipe: with EGRESS_BENCH_NETNS=1 it is made afterwards in a new
 * network namespace, where the client then runs, as in a sandbox. */
static int take_listener(int rfd)
{
    int lfd = -1;
    if (read(rfd, &lfd, sizeof(lfd)) != sizeof(lfd)) die("read listener");
    close(rfd);
    return lfd;
}

/* lo up, and with EGRESS_BENCH_LO_GSO its GSO/GRO limits raised through
 * rtnetlink (RTM_NEWLINK; the IPv4 attributes are Linux >= 6.3 and absent
 * from older uapi headers, hence the numbers). */
static void lo_setup(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) die("SIOCGIFFLAGS lo");
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) die("SIOCSIFFLAGS lo");
    close(s);
    const char *g = getenv("EGRESS_BENCH_LO_GSO");
    if (!g) return;
    uint32_t size = (uint32_t)strtoul(g, NULL, 10);
    enum { A_GSO_MAX_SIZE = 41, A_GRO_MAX_SIZE = 58, A_GSO_IPV4_MAX_SIZE = 63, A_GRO_IPV4_MAX_SIZE = 64 };
    static const unsigned short attrs[] = {A_GSO_MAX_SIZE, A_GRO_MAX_SIZE, A_GSO_IPV4_MAX_SIZE, A_GRO_IPV4_MAX_SIZE};
    struct {
        struct nlmsghdr h;
        struct ifinfomsg i;
        struct {
            struct rtattr a;
            uint32_t v;
        } at[4];
    } req = {0};
    req.h.nlmsg_len = sizeof(req);
    req.h.nlmsg_type = RTM_NEWLINK;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    req.i.ifi_family = AF_UNSPEC;
    req.i.ifi_index = (int)if_nametoindex("lo");
    for (int k = 0; k < 4; k++) {
        req.at[k].a.rta_len = RTA_LENGTH(sizeof(uint32_t));
        req.at[k].a.rta_type = attrs[k];
        req.at[k].v = size;
    }
    int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (nl < 0 || send(nl, &req, sizeof(req), 0) != (ssize_t)sizeof(req)) die("rtnetlink");
    char ack[512];
    ssize_t n = recv(nl, ack, sizeof(ack), 0);
    struct nlmsghdr *h = (struct nlmsghdr *)ack;
    if (n < (ssize_t)(sizeof(*h) + sizeof(int)) || h->nlmsg_type != NLMSG_ERROR) die("rtnetlink reply");
    int e = *(int *)NLMSG_DATA(h);
    if (e) {
        fprintf(stderr, "EGRESS_BENCH_LO_GSO=%u: %s\n", size, strerror(-e));
        exit(1);
    }
    close(nl);
}

static void start_forwarder(void *(*fn)(void *), const char *ip)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) die("pipe2");
    pthread_t t;
    pthread_create(&t, NULL, fn, (void *)(intptr_t)p[0]);
    if (getenv("EGRESS_BENCH_NETNS")) {
        if (unshare(CLONE_NEWNET) < 0) die("unshare(CLONE_NEWNET)");
        lo_setup();
        /* proof that the client is elsewhere: the server is unreachable */
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        if (connect(c, (struct sockaddr *)&a, sizeof(a)) == 0) {
            fprintf(stderr, "EGRESS_BENCH_NETNS: the server is reachable from the new netns\n");
            exit(1);
        }
        close(c);
    }
    int lfd = listen_on(ip, SOCK_STREAM, &g_hop_port);
    if (write(p[1], &lfd, sizeof(lfd)) != sizeof(lfd)) die("write listener");
    close(p[1]);
    g_hop_ip = ip;
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
    int lfd = take_listener((int)(intptr_t)arg);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        pthread_t t;
        pthread_create(&t, NULL, hop_conn, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
    return NULL;
}

/* ---- sockmap: the bare forwarder, bytes moved by the kernel ---- */

/* Two sockhashes keyed by socket cookie: "peers" maps a socket's cookie to
 * its peer in the tunnel; "members" maps it to the socket itself and has an
 * SK_SKB stream-verdict program attached, which sends every skb a member
 * receives out of peers[cookie(receiver)] (bpf_sk_redirect_hash to its
 * egress). Two maps because a socket gets the program as soon as it is
 * stored in the map it is attached to: with one map (cookie(a) -> b,
 * cookie(b) -> a) b would redirect before cookie(b) was there, and the
 * program drops what it cannot redirect (seen: a truncated download).
 * Peers go in first, members second. No byte comes up to user space; the
 * kernel's psock backlog (a kworker) does the sending. Loaded once per
 * process. No libbpf: the eleven instructions are assembled here. */
static int g_peers = -1, g_members = -1;

static int sys_bpf(int cmd, union bpf_attr *a)
{
    return (int)syscall(SYS_bpf, cmd, a, sizeof(*a));
}

#define INSN(c, d, s, o, i)                                                                      \
    ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})

/* 0, or exits 3 saying why when the process may not (CAP_BPF and
 * CAP_NET_ADMIN, or a kernel without sockmap). */
static void sockmap_setup(void)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_type = BPF_MAP_TYPE_SOCKHASH;
    a.key_size = 8;   /* the receiving socket's cookie */
    a.value_size = 4; /* from user space: the peer's fd */
    a.max_entries = 4096;
    g_peers = sys_bpf(BPF_MAP_CREATE, &a);
    g_members = sys_bpf(BPF_MAP_CREATE, &a);
    if (g_peers < 0 || g_members < 0) {
        fprintf(stderr, "sockmap unavailable: bpf(BPF_MAP_CREATE sockhash): %s\n", strerror(errno));
        exit(3);
    }
    struct bpf_insn prog[] = {
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0), /* r6 = skb */
        INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_get_socket_cookie), /* r0 = cookie(skb->sk) */
        INSN(BPF_STX | BPF_MEM | BPF_DW, 10, 0, -8, 0), /* *(u64 *)(fp - 8) = r0 */
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 1, 6, 0, 0), /* r1 = skb */
        INSN(BPF_LD | BPF_DW | BPF_IMM, 2, BPF_PSEUDO_MAP_FD, 0, g_peers), /* r2 = peers */
        INSN(0, 0, 0, 0, 0),
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 3, 10, 0, 0),
        INSN(BPF_ALU64 | BPF_ADD | BPF_K, 3, 0, 0, -8), /* r3 = &cookie */
        INSN(BPF_ALU64 | BPF_MOV | BPF_K, 4, 0, 0, 0),  /* r4 = 0: the peer's egress */
        INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_redirect_hash), /* SK_PASS or SK_DROP */
        INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    };
    static char log[16384];
    memset(&a, 0, sizeof(a));
    a.prog_type = BPF_PROG_TYPE_SK_SKB;
    a.insns = (uintptr_t)prog;
    a.insn_cnt = sizeof(prog) / sizeof(prog[0]);
    a.license = (uintptr_t) "Dual MIT/GPL";
    a.log_buf = (uintptr_t)log;
    a.log_size = sizeof(log);
    a.log_level = 1;
    int pfd = sys_bpf(BPF_PROG_LOAD, &a);
    if (pfd < 0) {
        fprintf(stderr, "sockmap unavailable: bpf(BPF_PROG_LOAD sk_skb): %s\n%s\n", strerror(errno), log);
        exit(3);
    }
    memset(&a, 0, sizeof(a));
    a.target_fd = (uint32_t)g_members;
    a.attach_bpf_fd = (uint32_t)pfd;
    a.attach_type = BPF_SK_SKB_STREAM_VERDICT;
    if (sys_bpf(BPF_PROG_ATTACH, &a) < 0) {
        fprintf(stderr, "sockmap unavailable: bpf(BPF_PROG_ATTACH stream verdict): %s\n", strerror(errno));
        exit(3);
    }
    close(pfd); /* the map holds the program */
}

static uint64_t cookie_of(int fd)
{
    uint64_t c = 0;
    socklen_t l = sizeof(c);
    if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &l) < 0) die("SO_COOKIE");
    return c;
}

static void smap_put(int map, uint64_t key, int fd)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    uint32_t v = (uint32_t)fd;
    a.map_fd = (uint32_t)map;
    a.key = (uintptr_t)&key;
    a.value = (uintptr_t)&v;
    a.flags = BPF_NOEXIST;
    if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a) < 0) die("bpf(BPF_MAP_UPDATE_ELEM)");
}

static struct tcp_info info_of(int fd)
{
    struct tcp_info ti;
    socklen_t l = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0) die("TCP_INFO");
    return ti;
}

/* Bytes that ever entered fd's send queue (before its FIN): acked plus
 * still queued (SIOCOUTQ: write_seq - snd_una). Two calls, not one
 * snapshot: acked is read first, so the sum can only fall short (by what
 * was acked in between), never overshoot; it is exact once the queue is
 * still. (Read the other way round it overshot and cut transfers short.) */
static uint64_t sent_total(int fd)
{
    uint64_t acked = info_of(fd).tcpi_bytes_acked;
    int outq = 0;
    if (ioctl(fd, SIOCOUTQ, &outq) < 0) die("SIOCOUTQ");
    return acked + (uint64_t)outq;
}

static void *smap_conn(void *arg)
{
    int fds[2] = {(int)(intptr_t)arg, dial("127.0.0.1", g_port)}; /* client, upstream */
    int one = 1;
    setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uint64_t c0 = cookie_of(fds[0]), c1 = cookie_of(fds[1]);
    smap_put(g_peers, c0, fds[1]);
    smap_put(g_peers, c1, fds[0]);
    smap_put(g_members, c0, fds[0]);
    smap_put(g_members, c1, fds[1]);
    /* Bytes that arrived before a socket joined the map wait in its
     * receive queue until the next data_ready, which may never come (the
     * client sent its one request byte and waits). SO_RCVLOWAT calls
     * data_ready when data is queued: the verdict takes them, in order. */
    setsockopt(fds[0], SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
    setsockopt(fds[1], SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
    /* User space only watches for the end: POLLRDHUP (never POLLIN: a read
     * here would take bytes from under the verdict). */
    struct pollfd p[2] = {{.fd = fds[0], .events = POLLRDHUP}, {.fd = fds[1], .events = POLLRDHUP}};
    int done[2] = {0, 0}, draining = 0;
    while (!done[0] || !done[1]) {
        if (poll(p, 2, draining ? 1 : -1) < 0) die("poll");
        draining = 0;
        for (int i = 0; i < 2; i++) {
            if (done[i] || !p[i].revents) continue;
            int src = fds[i], dst = fds[1 - i];
            if (p[i].revents & POLLERR) {
                /* A FIN received alone is an empty skb; its redirect
                 * "sends" nothing, which the psock backlog reports as EPIPE
                 * on the socket it was redirected to (after every byte
                 * before it). A reset says EPIPE or ECONNRESET too, and a
                 * socket that saw both FINs is in TCP_CLOSE like a reset
                 * one: no safe abort signal here; this bench has no
                 * resets. Clear the error (poll repeats it) and go on. */
                int e = 0;
                socklen_t el = sizeof(e);
                getsockopt(src, SOL_SOCKET, SO_ERROR, &e, &el);
            }
            if (!(p[i].revents & POLLRDHUP)) continue;
            /* The FIN came after every byte: shut the peer's sending side
             * once all of them have entered its send queue (none is in
             * the psock backlog any more). tcpi_bytes_received counts the
             * FIN. No event says when; poll again in 1 ms. */
            if (sent_total(dst) + 1 >= info_of(src).tcpi_bytes_received) {
                shutdown(dst, SHUT_WR);
                done[i] = 1;
                p[i].fd = -1;
            } else {
                draining = 1;
            }
        }
    }
    close(fds[0]);
    close(fds[1]);
    return NULL;
}

static void *smap_server(void *arg)
{
    int lfd = take_listener((int)(intptr_t)arg);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        pthread_t t;
        pthread_create(&t, NULL, smap_conn, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
    return NULL;
}

static const char *g_proxy_ip;
static int g_proxy_port;
static const char *g_target; /* host name the proxy is asked for */

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
        pattern_check("download", buf, got, (size_t)n);
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
        size_t len = left < CHUNK ? left : CHUNK;
        pattern_fill(buf, g_size - left, len);
        ssize_t n = write(fd, buf, len);
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

/* Busy CPU time of the whole machine (all CPUs, every process, kernel
 * threads and softirqs included), from /proc/stat. */
static double sys_busy_s(void)
{
    FILE *f = fopen("/proc/stat", "re");
    if (!f) return 0;
    unsigned long long v[10] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 8) return 0;
    /* user nice system (idle iowait) irq softirq steal */
    double busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
    return busy / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: egress_bench direct|shed|hop|sockmap|proxy:PORT SIZE_MIB ROUNDS CONNS\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* the whole driver in a namespace of its own (unshare -n): set its lo up */
    if (getenv("EGRESS_BENCH_LO_GSO") && !getenv("EGRESS_BENCH_NETNS")) lo_setup();
    g_verify = getenv("EGRESS_BENCH_VERIFY") != NULL;
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
        start_forwarder(hop_server, "127.0.0.3");
    } else if (strcmp(argv[1], "sockmap") == 0) {
        sockmap_setup();
        start_forwarder(smap_server, "127.0.0.4");
    } else if (strcmp(argv[1], "direct") != 0) {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }

    double *d = calloc((size_t)rounds, sizeof(double)), *u = calloc((size_t)rounds, sizeof(double));
    struct rusage r0, r1;
    double s0 = sys_busy_s();
    getrusage(RUSAGE_SELF, &r0);
    for (int i = 0; i < rounds; i++) {
        d[i] = download();
        u[i] = upload();
    }
    getrusage(RUSAGE_SELF, &r1);
    double s1 = sys_busy_s();
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
           "cpu_s_per_gib %.3f\nsys_cpu_s_per_gib %.3f\n",
           d[rounds / 2], u[rounds / 2], lat[conns / 2], lat[(conns * 99) / 100], cpu / gib,
           (s1 - s0) / gib);
    egress_runner_stop(runner);
    egress_policy_free(pol);
    return 0;
}
