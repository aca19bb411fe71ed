/* Errors: fallible functions return >= 0 on success and -errno on failure,
 * and fill a shed_err (passed last) when the caller needs the message.
 * A message names the call and the object: "mount /workspace: Permission denied". */
#pragma once
#include <stdarg.h>

#define SHED_ERR_MSG 512

typedef struct shed_err {
    int code; /* positive errno, 0 when unset */
    char msg[SHED_ERR_MSG];
} shed_err;

/* Sets err (if non-NULL) to "<fmt...>: strerror(code)" and returns -code.
 * code 0 means "no errno": the message is just the formatted text, and -EINVAL is returned. */
int err_set(shed_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Same, without appending strerror. */
int err_msg(shed_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefix an existing error with context: "ctx: old message". */
int err_wrap(shed_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void err_clear(shed_err *err);
