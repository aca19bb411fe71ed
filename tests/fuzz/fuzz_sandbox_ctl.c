/* Fuzz the control channel's reader with what a hostile sandbox could send:
 * the input is a sequence of datagrams, each a 2-byte big-endian length and
 * that many bytes, sent over a real SOCK_SEQPACKET pair and read back with
 * the incremental reader. Every message it returns must be a JSON object. */
#include "sandbox/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return 0;
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    ctl_reader r;
    ctl_reader_init(&r);
    size_t off = 0;
    int sent = 0;
    while (off + 2 <= size && sent < 64) {
        size_t n = ((size_t)data[off] << 8 | data[off + 1]) % (CTL_MAX_MSG + 2);
        off += 2;
        if (n > size - off) n = size - off;
        if (send(sv[0], data + off, n, MSG_NOSIGNAL) < 0) break;
        off += n;
        sent++;
        for (;;) {
            json_t *m = NULL;
            int fds[CTL_MAX_FDS], nfds = 0;
            shed_err err;
            int rc = ctl_read(&r, sv[1], &m, fds, &nfds, &err);
            if (rc == 0) {
                if (!json_is_object(m)) abort();
                json_decref(m);
                for (int i = 0; i < nfds; i++) close(fds[i]);
                continue;
            }
            break; /* -EAGAIN: next datagram; errors: the reader reset itself */
        }
    }
    ctl_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
