/* The bash tool's protocol with its shell, as pieces that do no i/o: read
 * the call's input, build the bytes to write to the shell's stdin, feed the
 * shell's output as it arrives and say when the call's sentinel was seen,
 * build the result. One implementation for both drivers: tools_bash_call
 * (bash.c: init's synchronous path, poll) and the worker's direct path
 * (worker/sbx.c: its event loop, the shell's fds lent by init). The same
 * output stream gives the same result byte for byte, whatever the chunking.
 *
 * Each call writes
 *   { CMD
 *   } </dev/null 2>&1; printf '\n__ANT_CM''D_<uuid>_DONE__%d\n' $?
 * (the sentinel split with '' so that the shell's echo of the input, if any,
 * never contains it) and reads the merged output until the sentinel: the
 * call ends at the sentinel, not at EOF, so a background job that keeps the
 * pipe open never holds a call open. The output is kept bounded while it
 * streams (a ring of the last bytes, grown only as output arrives), then cut
 * to the reference's last 100 KiB (UTF-16 units, as a JS string counts
 * them), ANSI escapes stripped. Never trusts the output: any bytes, any
 * amount, any chunking. Never does i/o itself.
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define TOOLS_BASH_MAX_COMMAND (16 << 20)
#define TOOLS_BASH_CHUNK       65536 /* one read of the output */
#define TOOLS_BASH_READS_WAKE  16    /* reads per wake-up: a flood cannot starve the caller */
#define TOOLS_BASH_DRAIN_READS 64    /* reads of stale output dropped before a call (bounded: `yes &`) */

/* A call's input, read by tools_bash_parse. */
typedef struct tools_bash_req {
    const char *cmd;    /* borrowed from the input object; NULL: none */
    size_t cmdlen;
    bool restart;       /* the caller kills the shell before anything else */
    double timeout;     /* ms, as the error text prints it */
    int64_t timeout_ms; /* the same, clamped to [1, 9e15] */
} tools_bash_req;

/* Reads input ({"command","restart","timeout_ms"}). NULL: req is a command
 * to run (in a shell killed first when req->restart). Else the call's whole
 * result (bad input; "bash session restarted"), after the caller killed the
 * shell if req->restart. call_timeout_ms > 0 applies when the input has no
 * timeout_ms, else default_timeout_ms. */
json_t *tools_bash_parse(json_t *input, int64_t call_timeout_ms, int64_t default_timeout_ms,
                         tools_bash_req *req);

/* One call in progress. */
typedef struct tools_bash_run {
    buf_t in;          /* the bytes for the shell's stdin */
    size_t sent;       /* of in, written so far (the driver advances it) */
    char sentinel[64];
    size_t slen;
    char carry[128];   /* the stream's last slen-1 bytes: a sentinel across chunks */
    size_t ncarry;
    bool found;        /* the sentinel was seen */
    bool seen;         /* ... and the newline ending its line: done */
    char *ring;        /* the output's last bytes; grows up to its bound */
    size_t cap, start, len;
    size_t total;      /* output bytes ever fed */
} tools_bash_run;

/* 0, or -ENOMEM. A fresh sentinel; in holds the bytes to write. */
int tools_bash_run_start(tools_bash_run *r, const tools_bash_req *req);
/* Output bytes as read. Returns true once the sentinel's line was seen
 * whole (the call is done; what the same chunk held after it is kept, as the
 * reference's buffer does; later chunks are not the call's). */
bool tools_bash_run_feed(tools_bash_run *r, const char *p, size_t n);
/* The result of a call whose sentinel was seen. */
json_t *tools_bash_run_result(tools_bash_run *r);
void tools_bash_run_free(tools_bash_run *r);

/* How a call ended without its sentinel, and the result that says so. */
enum tools_bash_end { TOOLS_BASH_TIMEOUT = 1, TOOLS_BASH_CANCEL, TOOLS_BASH_DIED, TOOLS_BASH_FAIL };
json_t *tools_bash_end_result(enum tools_bash_end end, const tools_bash_req *req);
