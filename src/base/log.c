/* Logging and redaction; see log.h. Never logs a credential: every line is
 * redacted after formatting, whatever the caller put in it. */
#include "base/log.h"

#include "base/clock.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static int g_level = LOG_INFO;
static int g_format = LOG_TEXT;
static int g_fd = 2;

static const char *const LEVEL_NAMES[] = {"error", "warn", "info", "debug"};

void log_setup(int level, int format)
{
    g_level = level;
    g_format = format;
}

int log_level(void)
{
    return g_level;
}

void log_set_fd(int fd)
{
    g_fd = fd;
}

int log_parse_format(const char *s)
{
    if (!strcmp(s, "text")) return LOG_TEXT;
    if (!strcmp(s, "json")) return LOG_JSON;
    return -EINVAL;
}

int log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (!strcasecmp(s, LEVEL_NAMES[i])) return i;
    if (!strcasecmp(s, "warning")) return LOG_WARN;
    return -EINVAL;
}

static int token_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.' || c == '+' ||
           c == '/' || c == '=' || c == '~';
}

/* Prefixes after which the token is a secret; the prefix itself is kept so
 * a reader still sees what kind of credential was there. */
static const struct {
    const char *prefix;
    int icase;
} SECRET_PREFIXES[] = {
    {"sk-ant-", 0}, {"sk-shed-", 0}, {"whsec_", 0}, {"Bearer ", 1}, {"x-api-key: ", 1},
    {"x-api-key:", 1},
};

size_t log_redact(const char *in, char *out, size_t outlen)
{
    static const char MASK[] = "[REDACTED]";
    size_t o = 0;
    if (outlen == 0) return 0;
    for (size_t i = 0; in[i];) {
        size_t matched = 0;
        for (size_t k = 0; k < sizeof(SECRET_PREFIXES) / sizeof(SECRET_PREFIXES[0]); k++) {
            const char *p = SECRET_PREFIXES[k].prefix;
            size_t pl = strlen(p);
            int eq = SECRET_PREFIXES[k].icase ? !strncasecmp(in + i, p, pl)
                                              : !strncmp(in + i, p, pl);
            if (eq && token_char(in[i + pl])) {
                matched = pl;
                break;
            }
        }
        if (matched) {
            for (size_t j = 0; j < matched && o + 1 < outlen; j++) out[o++] = in[i + j];
            for (size_t j = 0; MASK[j] && o + 1 < outlen; j++) out[o++] = MASK[j];
            i += matched;
            while (token_char(in[i])) i++;
            continue;
        }
        if (o + 1 < outlen) out[o++] = in[i];
        i++;
    }
    out[o] = '\0';
    return o;
}

static size_t json_escape(const char *s, char *out, size_t outlen)
{
    size_t o = 0;
    for (; *s && o + 7 < outlen; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, outlen - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return o;
}

void log_vemit(int level, const char *session_id, const char *work_id, const char *fmt,
               va_list ap)
{
    if (level > g_level) return;
    int saved = errno;
    char raw[4096], msg[4096], line[9000], ts[RFC3339_LEN];
    vsnprintf(raw, sizeof(raw), fmt, ap);
    log_redact(raw, msg, sizeof(msg));
    clock_rfc3339_us(clock_wall_us(), ts);
    if (level < 0) level = 0;
    if (level > 3) level = 3;
    int n;
    if (g_format == LOG_JSON) {
        char esc[8200], ids[256] = "";
        json_escape(msg, esc, sizeof(esc));
        if (session_id || work_id) {
            char s[96] = "", w[96] = "";
            if (session_id) json_escape(session_id, s, sizeof(s));
            if (work_id) json_escape(work_id, w, sizeof(w));
            snprintf(ids, sizeof(ids), "%s%s%s%s%s%s", session_id ? ",\"session_id\":\"" : "", s,
                     session_id ? "\"" : "", work_id ? ",\"work_id\":\"" : "", w,
                     work_id ? "\"" : "");
        }
        n = snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\"%s,\"msg\":\"%s\"}\n", ts,
                     LEVEL_NAMES[level], ids, esc);
    } else {
        char ids[256] = "";
        if (session_id || work_id)
            snprintf(ids, sizeof(ids), " [%s%s%s%s]", session_id ? "session=" : "",
                     session_id ? session_id : "", work_id ? (session_id ? " work=" : "work=") : "",
                     work_id ? work_id : "");
        n = snprintf(line, sizeof(line), "%s %-5s%s %s\n", ts, LEVEL_NAMES[level], ids, msg);
    }
    if (n > (int)sizeof(line) - 1) n = (int)sizeof(line) - 1;
    if (n > 0) {
        ssize_t w = write(g_fd, line, (size_t)n);
        (void)w;
    }
    errno = saved;
}

void log_emit(int level, const char *session_id, const char *work_id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vemit(level, session_id, work_id, fmt, ap);
    va_end(ap);
}
