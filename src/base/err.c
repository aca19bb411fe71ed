/* Error struct helpers; see err.h. */
#include "base/err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int err_vset(shed_err *err, int code, int with_errno, const char *fmt, va_list ap)
{
    int rc = code > 0 ? -code : -EINVAL;
    if (!err) return rc;
    err->code = code > 0 ? code : EINVAL;
    int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    if (n < 0) n = 0;
    if (with_errno && code > 0 && (size_t)n < sizeof(err->msg))
        snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(code));
    return rc;
}

int err_set(shed_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = err_vset(err, code, 1, fmt, ap);
    va_end(ap);
    return rc;
}

int err_msg(shed_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = err_vset(err, code, 0, fmt, ap);
    va_end(ap);
    return rc;
}

int err_wrap(shed_err *err, const char *fmt, ...)
{
    if (!err) return -EINVAL;
    char prefix[SHED_ERR_MSG], old[SHED_ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
    if (err->code == 0) err->code = EINVAL;
    return -err->code;
}

void err_clear(shed_err *err)
{
    if (!err) return;
    err->code = 0;
    err->msg[0] = '\0';
}
