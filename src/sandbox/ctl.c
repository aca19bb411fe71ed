/* The control channel's framing (see ctl.h for the exact wire format).
 * Never trusts a datagram: sizes are bounded, fds beyond CTL_MAX_FDS are
 * closed, a truncated or malformed datagram is a protocol error. */
#include "sandbox/ctl.h"

#include "base/cleanup.h"
#include "base/json.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int wait_fd(int fd, short ev, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = ev};
    for (;;) {
        int n = poll(&p, 1, timeout_ms);
        if (n > 0) return 0;
        if (n == 0) return -ETIMEDOUT;
        if (errno != EINTR) return -errno;
    }
}

static int send_dgram(int fd, const void *head, size_t headlen, const void *data, size_t len,
                      const int *fds, int nfds)
{
    struct iovec iov[2] = {{(void *)head, headlen}, {(void *)data, len}};
    union {
        char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = headlen ? 2 : 1};
    if (!headlen) iov[0] = iov[1];
    if (nfds > 0) {
        memset(&u, 0, sizeof(u));
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    for (;;) {
        ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (n >= 0) return 0;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            int rc = wait_fd(fd, POLLOUT, 10000);
            if (rc < 0) return rc;
            continue;
        }
        return -errno;
    }
}

int ctl_send(int fd, json_t *msg, const int *fds, int nfds, shed_err *err)
{
    if (nfds < 0 || nfds > CTL_MAX_FDS)
        return err_msg(err, EINVAL, "control message: %d fds, at most %d", nfds, CTL_MAX_FDS);
    if (!json_is_object(msg)) return err_msg(err, EINVAL, "control message: not an object");
    _cleanup_free_ char *text = json_compact(msg);
    if (!text) return err_set(err, ENOMEM, "control message: serialize");
    size_t len = strlen(text);
    if (len > CTL_MAX_TOTAL)
        return err_msg(err, EMSGSIZE, "control message of %zu bytes over the %d-byte limit", len,
                       CTL_MAX_TOTAL);
    int rc;
    if (len <= CTL_MAX_MSG) {
        rc = send_dgram(fd, NULL, 0, text, len, fds, nfds);
        if (rc < 0) return err_set(err, -rc, "send control message");
        return 0;
    }
    size_t chunk = CTL_MAX_MSG - 1, off = 0;
    while (off < len) {
        size_t n = len - off < chunk ? len - off : chunk;
        char tag = off + n < len ? 'P' : 'L';
        rc = send_dgram(fd, &tag, 1, text + off, n, off == 0 ? fds : NULL, off == 0 ? nfds : 0);
        if (rc < 0) return err_set(err, -rc, "send control message part");
        off += n;
    }
    return 0;
}

void ctl_reader_init(ctl_reader *r)
{
    memset(r, 0, sizeof(*r));
    buf_init(&r->acc, CTL_MAX_TOTAL);
}

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) close(fds[i]);
}

void ctl_reader_free(ctl_reader *r)
{
    buf_free(&r->acc);
    close_fds(r->fds, r->nfds);
    r->nfds = 0;
    r->partial = 0;
}

static void reader_reset(ctl_reader *r)
{
    buf_reset(&r->acc);
    r->nfds = 0;
    r->partial = 0;
}

/* One datagram into r; returns 1 when a message is complete, 0 for a part. */
static int read_dgram(ctl_reader *r, int fd, char *dg, shed_err *err)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct iovec iov = {dg, CTL_MAX_MSG + 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                        .msg_controllen = sizeof(u.buf)};
    ssize_t n;
    do
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN ? -EAGAIN : err_set(err, errno, "receive control message");
    int got[CTL_MAX_FDS], ngot = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *p = (int *)CMSG_DATA(c);
        for (int i = 0; i < k; i++) {
            if (ngot < CTL_MAX_FDS)
                got[ngot++] = p[i];
            else
                close(p[i]);
        }
    }
    if (n == 0 && ngot == 0) {
        err_msg(err, EPIPE, "control channel closed by the other side");
        return -EPIPE;
    }
    int bad = 0;
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) bad = 1;
    if (n == 0 || n > CTL_MAX_MSG) bad = 1;
    if (bad) {
        close_fds(got, ngot);
        return err_msg(err, EPROTO, "control channel: malformed datagram (%zd bytes)", n);
    }
    if (ngot) {
        if (r->partial || r->nfds) {
            close_fds(got, ngot);
            return err_msg(err, EPROTO, "control channel: fds on a continuation part");
        }
        memcpy(r->fds, got, sizeof(int) * ngot);
        r->nfds = ngot;
    }
    const char *data = dg;
    size_t len = (size_t)n;
    if (dg[0] == '{') {
        if (r->partial) return err_msg(err, EPROTO, "control channel: message inside parts");
        if (buf_append(&r->acc, data, len) < 0)
            return err_msg(err, EMSGSIZE, "control message over the size limit");
        return 1;
    }
    if (dg[0] != 'P' && dg[0] != 'L')
        return err_msg(err, EPROTO, "control channel: unknown datagram tag 0x%02x",
                       (unsigned char)dg[0]);
    if (buf_append(&r->acc, data + 1, len - 1) < 0)
        return err_msg(err, EMSGSIZE, "control message over the %d-byte limit", CTL_MAX_TOTAL);
    r->partial = dg[0] == 'P';
    return dg[0] == 'L';
}

int ctl_read(ctl_reader *r, int fd, json_t **msg, int *fds, int *nfds, shed_err *err)
{
    _cleanup_free_ char *dg = malloc(CTL_MAX_MSG + 1);
    if (!dg) return err_set(err, ENOMEM, "control message buffer");
    if (nfds) *nfds = 0;
    *msg = NULL;
    for (;;) {
        int rc = read_dgram(r, fd, dg, err);
        if (rc == -EAGAIN) return -EAGAIN;
        if (rc < 0) {
            close_fds(r->fds, r->nfds);
            reader_reset(r);
            return rc;
        }
        if (rc == 0) continue;
        shed_err perr;
        /* a tool result may carry U+0000 (a binary file read as text) */
        json_t *j = json_parse_flags(r->acc.data, r->acc.len, CTL_MAX_TOTAL, JSON_DEFAULT_DEPTH,
                                     JSON_ALLOW_NUL, &perr);
        if (!j || !json_is_object(j)) {
            json_decref(j);
            close_fds(r->fds, r->nfds);
            reader_reset(r);
            return err_msg(err, EPROTO, "control message: %s", j ? "not an object" : perr.msg);
        }
        if (fds && nfds) {
            memcpy(fds, r->fds, sizeof(int) * r->nfds);
            *nfds = r->nfds;
        } else {
            close_fds(r->fds, r->nfds);
        }
        reader_reset(r);
        *msg = j;
        return 0;
    }
}

int ctl_recv(int fd, json_t **msg, int *fds, int *nfds, shed_err *err)
{
    ctl_reader r;
    ctl_reader_init(&r);
    int rc;
    for (;;) {
        rc = ctl_read(&r, fd, msg, fds, nfds, err);
        if (rc != -EAGAIN) break;
        rc = wait_fd(fd, POLLIN, -1);
        if (rc < 0) {
            err_set(err, -rc, "wait for control message");
            break;
        }
    }
    ctl_reader_free(&r);
    return rc;
}
