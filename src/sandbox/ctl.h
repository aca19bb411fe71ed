/* The control channel between a sandbox's creator (worker, `shed run`,
 * `shed tool`) and its init: a socketpair(AF_UNIX, SOCK_SEQPACKET) made
 * before the clone. One JSON object per logical message, fds passed with
 * SCM_RIGHTS.
 *
 * WIRE FORMAT (exact; a caller may write its own non-blocking reader):
 *   Each datagram is at most CTL_MAX_MSG bytes.
 *   - A datagram whose first byte is '{' is one complete message: the
 *     compact JSON text of an object (no NUL, no trailing newline).
 *   - Larger messages are split: N-1 datagrams starting with the byte 'P'
 *     followed by a chunk of the JSON text, then one datagram starting with
 *     'L' followed by the last chunk. The message is the concatenation of
 *     the chunks (without the 'P'/'L' bytes); at most CTL_MAX_TOTAL bytes.
 *     Parts of one message are never interleaved with another message
 *     (each side has a single writer).
 *   - Fds (at most CTL_MAX_FDS) travel as SCM_RIGHTS on the FIRST datagram
 *     of a message.
 *   Anything else (empty datagram, other first byte, truncation) is a
 *   protocol error; the receiver should close the channel.
 *
 * creator -> init
 *   {"type":"config","workdir":W,"env":[...],"roots":[...],"ro_roots":[...],
 *    "command_timeout_ms":T,"disk_max":B,"files_max":N,"fallback_as":B,"fallback_nproc":N,...}
 *                                            first message, sent by sandbox_create only
 *   {"type":"tool","id":N,"tool":"bash","input":{...},"timeout_ms":T}
 *   {"type":"cancel","id":N}                 abort call N (tool: error result; exec: SIGKILL group)
 *   {"type":"exec","id":N,"argv":[...],"env":[...],"cwd":"/workspace","timeout_ms":T,"last":B}
 *                                            + 3 fds: stdin, stdout, stderr of the command;
 *                                              last: init exits right after this command's
 *                                              "exit" (ending the sandbox: `shed run`)
 *   {"type":"shell","id":N}                  lend the session's bash: init kills the current
 *                                              shell (lent or not), starts a fresh one, answers
 *                                              "shell" with its fds and never reads them
 *   {"type":"shell_kill","id":N}             SIGKILL the shell's process group and reap it
 *   {"type":"policy","network":{...}}        runtime policy change notice (ignored by init)
 *   {"type":"terminate"}                     SIGTERM every process but init (destroy's first step)
 * init -> creator
 *   {"type":"ready","pid":P,"listeners":["http","socks","dns"]}
 *                                            + 3 fds: egress listeners (TCP 127.0.0.1:3128,
 *                                              TCP 127.0.0.1:1080, UDP 127.0.0.1:53), see egress.h
 *   {"type":"result","id":N,"is_error":B,"content":[...]}           (tool)
 *   {"type":"exit","id":N,"status":S,"signal":G}                    (exec; signal 0 = exited)
 *   {"type":"shell","id":N,"pid":P}          + 2 fds: bash's stdin (AF_UNIX stream socket,
 *                                              write to it) and its merged stdout/stderr (pipe,
 *                                              read end), both O_NONBLOCK; the creator drives
 *                                              the bash tool's protocol itself (tools/bash_proto.h)
 *                                              and closes them when done with the shell; P is the
 *                                              pid inside the sandbox (for logs only)
 *   {"type":"shell_killed","id":N}           the shell is dead and reaped; any "limit" that
 *                                              killed it was sent before
 *   {"type":"limit","what":"disk","used":U,"max":M}                 a limit was hit; processes killed
 *   {"type":"error","id":N,"message":"..."}  a request could not be served
 * A request that is not understood gets an "error" (id 0 when it had none).
 * The lent shell: a "tool" request for bash takes the session back (the
 * lent shell is killed, a fresh one serves it); a watchdog limit kills it
 * like every other process (the creator sees EOF, then asks "shell_kill",
 * whose answer comes after the "limit").
 * Ordering: init serves one request at a time; a tool call blocks the
 * channel until its result, except that ANY message arriving during a tool
 * call aborts that call (cancel_fd semantics), after which the message is
 * handled normally. Exec'd commands run concurrently; their "exit" comes
 * whenever they end. Ids are the creator's; init echoes them.
 * Closing the creator's end makes init exit, which tears the sandbox down.
 */
#pragma once
#include <jansson.h>
#include <stddef.h>

#include "base/buf.h"
#include "base/err.h"

#define CTL_MAX_MSG   (60 * 1024) /* one datagram: under the default AF_UNIX sndbuf (212992) */
#define CTL_MAX_TOTAL (64 << 20)  /* one logical message after reassembly */
#define CTL_MAX_FDS   8

/* The channel's JSON codec (fast paths for long strings). ctl_encode
 * appends the compact text of j to out (-EMSGSIZE past out's limit).
 * ctl_decode parses one message strictly (RFC 8259, valid UTF-8, strings
 * may hold U+0000, nesting at most JSON_DEFAULT_DEPTH, top level an object);
 * NULL with err set on anything else. */
int ctl_encode(buf_t *out, const json_t *j);
json_t *ctl_decode(const char *data, size_t len, shed_err *err);

/* Send one JSON message with up to CTL_MAX_FDS fds. If the socket is
 * non-blocking and full, waits for it (poll) up to 10 s, then -ETIMEDOUT. */
int ctl_send(int fd, json_t *msg, const int *fds, int nfds, shed_err *err);

/* The same in two steps, for a sender that writes the JSON text itself
 * (init's tool results: no object built around the content): append the
 * compact text of one object to the buffer ctl_send_buffer() returns (this
 * thread's, emptied), then ctl_send_buffered() sends it. */
buf_t *ctl_send_buffer(void);
int ctl_send_buffered(int fd, const int *fds, int nfds, shed_err *err);

/* Receive one message (reassembling parts); fds received are CLOEXEC.
 * Its buffer is one per thread, reused (every call ends with a whole
 * message or an error, so nothing carries over between calls).
 * `fds` has room for CTL_MAX_FDS (may be NULL: received fds are closed).
 * Blocks (poll) until a whole message arrived, also on a non-blocking fd.
 * Returns 0, or -EPIPE on orderly close, or -errno (-EPROTO on a bad datagram). */
int ctl_recv(int fd, json_t **msg, int *fds, int *nfds, shed_err *err);

/* Incremental reader for event loops: call ctl_read() whenever the
 * (non-blocking) fd is readable. Returns 0 with *msg set when a message is
 * complete, -EAGAIN when more datagrams are needed, -EPIPE on close, or
 * another -errno. Fds of a partial message are kept until it completes. */
typedef struct ctl_reader {
    buf_t acc;          /* chunks of a partial message */
    int fds[CTL_MAX_FDS];
    int nfds;
    int partial;        /* 1 while inside a P...L sequence */
} ctl_reader;
void ctl_reader_init(ctl_reader *r);
void ctl_reader_free(ctl_reader *r); /* closes pending fds */
int ctl_read(ctl_reader *r, int fd, json_t **msg, int *fds, int *nfds, shed_err *err);
