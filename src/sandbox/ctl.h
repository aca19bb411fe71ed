/* The control channel between a sandbox's creator (worker, `shed run`,
 * `shed tool`) and its init: SOCK_SEQPACKET, one JSON object per message
 * (≤ CTL_MAX_MSG bytes; larger payloads are split by the sender into
 * "part" messages, see ctl.c), fds passed with SCM_RIGHTS.
 *
 * creator -> init
 *   {"type":"tool","id":N,"tool":"bash","input":{...},"timeout_ms":T}
 *   {"type":"cancel","id":N}                 abort call N (error result)
 *   {"type":"exec","id":N,"argv":[...],"env":[...],"stdio":true}  + 3 fds (shed run)
 *   {"type":"policy","network":{...}}        runtime policy change notice (egress)
 * init -> creator
 *   {"type":"ready","pid":P}                            + fds: egress listeners (see egress.h)
 *   {"type":"result","id":N,"is_error":B,"content":[...]}
 *   {"type":"exit","id":N,"status":S,"signal":G}        (exec)
 *   {"type":"error","id":N,"message":"..."}
 */
#pragma once
#include <jansson.h>
#include <stddef.h>

#include "base/err.h"

#define CTL_MAX_MSG (256 * 1024)  /* one datagram */
#define CTL_MAX_TOTAL (64 << 20)  /* one logical message after reassembly */
#define CTL_MAX_FDS 8

/* Send one JSON message with up to CTL_MAX_FDS fds. Blocking socket. */
int ctl_send(int fd, json_t *msg, const int *fds, int nfds, shed_err *err);
/* Receive one message (reassembling parts); fds received are CLOEXEC.
 * Returns 0, or -EPIPE on orderly close, or -errno. */
int ctl_recv(int fd, json_t **msg, int *fds, int *nfds, shed_err *err);
