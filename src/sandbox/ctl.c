/* The control channel's framing (see ctl.h for the exact wire format) and
 * its JSON codec. Never trusts a datagram: sizes are bounded, fds beyond
 * CTL_MAX_FDS are closed, a truncated or malformed datagram is a protocol
 * error, and the decoder is strict RFC 8259 (valid UTF-8, nesting at most
 * JSON_DEFAULT_DEPTH, integers that fit, a top-level object).
 * Every tool call crosses this channel twice, and a result is mostly one
 * long string: the codec moves runs of plain bytes with memcpy instead of
 * jansson's character-at-a-time dump and load (about 10x fewer instructions
 * for a 10 KB result), and a message is received straight into a reused
 * buffer and sent from one, with no per-message allocation but the JSON. */
#include "sandbox/ctl.h"

#include "base/cleanup.h"
#include "base/json.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Buffers of at most this size are kept for the next message. */
#define CTL_KEEP_BUF (256 * 1024)

/* ---- encoder ---- */

/* Bytes a JSON string may carry as they are: not '"', '\\' or a control. */
static inline bool plain(unsigned char c)
{
    return c >= 0x20 && c != '"' && c != '\\';
}

static int enc_string(buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* room for the plain case; an escape makes room for the rest again */
    if (buf_reserve(b, n + 2) < 0) return -EMSGSIZE;
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        /* eight plain bytes at a time where possible */
        while (j + 8 <= n) {
            uint64_t v;
            memcpy(&v, s + j, 8);
            /* a byte < 0x20, == '"' (0x22) or == '\\' (0x5c) stops the run */
            uint64_t lt20 = (v - 0x2020202020202020ULL) & ~v & 0x8080808080808080ULL;
            uint64_t q = v ^ 0x2222222222222222ULL, bs = v ^ 0x5c5c5c5c5c5c5c5cULL;
            uint64_t zq = (q - 0x0101010101010101ULL) & ~q & 0x8080808080808080ULL;
            uint64_t zb = (bs - 0x0101010101010101ULL) & ~bs & 0x8080808080808080ULL;
            if (lt20 | zq | zb) break;
            j += 8;
        }
        while (j < n && plain((unsigned char)s[j])) j++;
        memcpy(o, s + i, j - i);
        o += j - i;
        if (j == n) break;
        unsigned char c = (unsigned char)s[j];
        /* an escape: up to 6 bytes for this one, the rest plain */
        b->len = (size_t)(o - b->data);
        if (buf_reserve(b, 6 + (n - j - 1) + 1) < 0) return -EMSGSIZE;
        o = b->data + b->len;
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        default:
            *o++ = 'u', *o++ = '0', *o++ = '0', *o++ = hex[c >> 4], *o++ = hex[c & 15];
        }
        i = j + 1;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = 0;
    return 0;
}

static int enc_value(buf_t *b, const json_t *j, int depth)
{
    /* never send what the decoder on the other side refuses (it ends init) */
    if ((json_is_object(j) || json_is_array(j)) && depth >= JSON_DEFAULT_DEPTH) return -ELOOP;
    char num[64];
    int rc;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        if (buf_putc(b, '{') < 0) return -EMSGSIZE;
        const char *k;
        json_t *v;
        bool first = true;
        json_object_foreach((json_t *)j, k, v) {
            if (!first && buf_putc(b, ',') < 0) return -EMSGSIZE;
            first = false;
            if ((rc = enc_string(b, k, strlen(k))) < 0) return rc;
            if (buf_putc(b, ':') < 0) return -EMSGSIZE;
            if ((rc = enc_value(b, v, depth + 1)) < 0) return rc;
        }
        return buf_putc(b, '}') < 0 ? -EMSGSIZE : 0;
    }
    case JSON_ARRAY: {
        if (buf_putc(b, '[') < 0) return -EMSGSIZE;
        for (size_t i = 0; i < json_array_size(j); i++) {
            if (i && buf_putc(b, ',') < 0) return -EMSGSIZE;
            if ((rc = enc_value(b, json_array_get(j, i), depth + 1)) < 0) return rc;
        }
        return buf_putc(b, ']') < 0 ? -EMSGSIZE : 0;
    }
    case JSON_STRING: return enc_string(b, json_string_value(j), json_string_length(j));
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        return buf_puts(b, num) < 0 ? -EMSGSIZE : 0;
    case JSON_REAL: {
        int n = snprintf(num, sizeof(num) - 3, "%.17g", json_real_value(j));
        if (n < 0 || !strpbrk(num, "0123456789")) return -EINVAL; /* inf, nan */
        if (!strpbrk(num, ".eE")) strcat(num, ".0");
        return buf_puts(b, num) < 0 ? -EMSGSIZE : 0;
    }
    case JSON_TRUE: return buf_puts(b, "true") < 0 ? -EMSGSIZE : 0;
    case JSON_FALSE: return buf_puts(b, "false") < 0 ? -EMSGSIZE : 0;
    case JSON_NULL: return buf_puts(b, "null") < 0 ? -EMSGSIZE : 0;
    }
    return -EINVAL;
}

int ctl_encode(buf_t *out, const json_t *msg)
{
    return enc_value(out, msg, 0);
}

/* ---- decoder ---- */

typedef struct dec {
    const unsigned char *p, *e, *start;
    int depth;
    buf_t tmp; /* a string with escapes, decoded */
    const char *why;
} dec_t;

static void skip_ws(dec_t *d)
{
    while (d->p < d->e && (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t')) d->p++;
}

/* Length of the valid UTF-8 sequence at p (non-ASCII lead), 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *e)
{
    unsigned char c = p[0];
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) n = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, cp = c & 0x07;
    else return 0;
    if ((size_t)(e - p) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static int hex4(const unsigned char *p, const unsigned char *e, uint32_t *out)
{
    if (e - p < 4) return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static void put_utf8(buf_t *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) u[0] = (char)cp, n = 1;
    else if (cp < 0x800) u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[2] = (char)(0x80 | (cp & 0x3F)),
        n = 3;
    else
        u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    buf_append(b, u, n);
}

/* After the opening quote. Returns the string's bytes in *s and *n (pointing
 * into the input when it has no escape, else into d->tmp). */
static int dec_string(dec_t *d, const char **s, size_t *n)
{
    const unsigned char *start = d->p;
    bool esc = false;
    buf_reset(&d->tmp);
    const unsigned char *run = d->p;
    for (;;) {
        /* plain ASCII, eight bytes at a time */
        while (d->e - d->p >= 8) {
            uint64_t v;
            memcpy(&v, d->p, 8);
            uint64_t hi = v & 0x8080808080808080ULL;
            uint64_t lt20 = (v - 0x2020202020202020ULL) & ~v & 0x8080808080808080ULL;
            uint64_t q = v ^ 0x2222222222222222ULL, bs = v ^ 0x5c5c5c5c5c5c5c5cULL;
            uint64_t zq = (q - 0x0101010101010101ULL) & ~q & 0x8080808080808080ULL;
            uint64_t zb = (bs - 0x0101010101010101ULL) & ~bs & 0x8080808080808080ULL;
            if (hi | lt20 | zq | zb) break;
            d->p += 8;
        }
        if (d->p >= d->e) return d->why = "unterminated string", -1;
        unsigned char c = *d->p;
        if (c == '"') break;
        if (c < 0x20) return d->why = "control character in a string", -1;
        if (c < 0x80 && c != '\\') {
            d->p++;
            continue;
        }
        if (c >= 0x80) {
            size_t l = utf8_seq(d->p, d->e);
            if (!l) return d->why = "invalid UTF-8 in a string", -1;
            d->p += l;
            continue;
        }
        /* an escape */
        if (!esc) esc = true;
        if (d->p > run && buf_append(&d->tmp, run, (size_t)(d->p - run)) < 0) return d->why = "string too long", -1;
        d->p++;
        if (d->p >= d->e) return d->why = "unterminated string", -1;
        c = *d->p++;
        switch (c) {
        case '"': buf_putc(&d->tmp, '"'); break;
        case '\\': buf_putc(&d->tmp, '\\'); break;
        case '/': buf_putc(&d->tmp, '/'); break;
        case 'b': buf_putc(&d->tmp, '\b'); break;
        case 'f': buf_putc(&d->tmp, '\f'); break;
        case 'n': buf_putc(&d->tmp, '\n'); break;
        case 'r': buf_putc(&d->tmp, '\r'); break;
        case 't': buf_putc(&d->tmp, '\t'); break;
        case 'u': {
            uint32_t cp, lo;
            if (hex4(d->p, d->e, &cp) < 0) return d->why = "invalid \\u escape", -1;
            d->p += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return d->why = "lone low surrogate", -1;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (d->e - d->p < 6 || d->p[0] != '\\' || d->p[1] != 'u' || hex4(d->p + 2, d->e, &lo) < 0 ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return d->why = "lone high surrogate", -1;
                d->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(&d->tmp, cp);
            break;
        }
        default: return d->why = "invalid escape", -1;
        }
        run = d->p;
    }
    if (esc) {
        if (d->p > run && buf_append(&d->tmp, run, (size_t)(d->p - run)) < 0) return d->why = "string too long", -1;
        *s = d->tmp.data ? d->tmp.data : "";
        *n = d->tmp.len;
    } else {
        *s = (const char *)start;
        *n = (size_t)(d->p - start);
    }
    d->p++; /* the closing quote */
    return 0;
}

static json_t *dec_value(dec_t *d);

static json_t *dec_number(dec_t *d)
{
    const unsigned char *s = d->p;
    bool real = false;
    if (d->p < d->e && *d->p == '-') d->p++;
    if (d->p >= d->e) return d->why = "invalid number", NULL;
    if (*d->p == '0')
        d->p++;
    else if (*d->p >= '1' && *d->p <= '9')
        while (d->p < d->e && *d->p >= '0' && *d->p <= '9') d->p++;
    else
        return d->why = "invalid number", NULL;
    if (d->p < d->e && *d->p == '.') {
        real = true;
        d->p++;
        if (d->p >= d->e || *d->p < '0' || *d->p > '9') return d->why = "invalid number", NULL;
        while (d->p < d->e && *d->p >= '0' && *d->p <= '9') d->p++;
    }
    if (d->p < d->e && (*d->p == 'e' || *d->p == 'E')) {
        real = true;
        d->p++;
        if (d->p < d->e && (*d->p == '+' || *d->p == '-')) d->p++;
        if (d->p >= d->e || *d->p < '0' || *d->p > '9') return d->why = "invalid number", NULL;
        while (d->p < d->e && *d->p >= '0' && *d->p <= '9') d->p++;
    }
    char small[64];
    size_t n = (size_t)(d->p - s);
    if (n >= sizeof(small) && !real) return d->why = "integer too big", NULL;
    char *tmp = n < sizeof(small) ? small : malloc(n + 1);
    if (!tmp) return d->why = "out of memory", NULL;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    errno = 0;
    if (!real) {
        long long v = strtoll(tmp, NULL, 10);
        if (errno == ERANGE) return d->why = "integer too big", NULL;
        return json_integer((json_int_t)v);
    }
    double v = strtod(tmp, NULL);
    int e = errno;
    if (tmp != small) free(tmp);
    if (e == ERANGE && (v > 1 || v < -1)) return d->why = "real number overflow", NULL;
    return json_real(v);
}

static json_t *dec_value(dec_t *d)
{
    skip_ws(d);
    if (d->p >= d->e) return d->why = "unexpected end", NULL;
    unsigned char c = *d->p;
    if (c == '{' || c == '[') {
        if (++d->depth > JSON_DEFAULT_DEPTH) return d->why = "nested too deep", NULL;
        d->p++;
        json_t *v = c == '{' ? json_object() : json_array();
        if (!v) return d->why = "out of memory", NULL;
        skip_ws(d);
        char close = c == '{' ? '}' : ']';
        if (d->p < d->e && *d->p == close) {
            d->p++;
            d->depth--;
            return v;
        }
        for (;;) {
            if (c == '{') {
                skip_ws(d);
                if (d->p >= d->e || *d->p != '"') goto bad;
                d->p++;
                const char *k;
                size_t kn;
                if (dec_string(d, &k, &kn) < 0) goto fail;
                if (memchr(k, 0, kn)) {
                    d->why = "NUL in an object key";
                    goto fail;
                }
                char kb[256];
                char *key = kn < sizeof(kb) ? kb : malloc(kn + 1);
                if (!key) goto fail;
                memcpy(key, k, kn);
                key[kn] = 0;
                skip_ws(d);
                if (d->p >= d->e || *d->p != ':') {
                    if (key != kb) free(key);
                    goto bad;
                }
                d->p++;
                json_t *m = dec_value(d);
                int rc = m ? json_object_set_new_nocheck(v, key, m) : -1;
                if (key != kb) free(key);
                if (rc < 0) goto fail;
            } else {
                json_t *m = dec_value(d);
                if (!m || json_array_append_new(v, m) < 0) goto fail;
            }
            skip_ws(d);
            if (d->p >= d->e) goto bad;
            if (*d->p == ',') {
                d->p++;
                continue;
            }
            if (*d->p == close) {
                d->p++;
                d->depth--;
                return v;
            }
            goto bad;
        }
    bad:
        if (!d->why) d->why = c == '{' ? "malformed object" : "malformed array";
    fail:
        json_decref(v);
        return NULL;
    }
    if (c == '"') {
        d->p++;
        const char *s;
        size_t n;
        if (dec_string(d, &s, &n) < 0) return NULL;
        json_t *v = json_stringn_nocheck(s, n);
        if (!v) d->why = "out of memory";
        return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return dec_number(d);
    if (d->e - d->p >= 4 && !memcmp(d->p, "true", 4)) return d->p += 4, json_true();
    if (d->e - d->p >= 5 && !memcmp(d->p, "false", 5)) return d->p += 5, json_false();
    if (d->e - d->p >= 4 && !memcmp(d->p, "null", 4)) return d->p += 4, json_null();
    return d->why = "unexpected character", NULL;
}

json_t *ctl_decode(const char *data, size_t len, shed_err *err)
{
    dec_t d = {.p = (const unsigned char *)data, .e = (const unsigned char *)data + len,
               .start = (const unsigned char *)data};
    buf_init(&d.tmp, CTL_MAX_TOTAL);
    skip_ws(&d);
    json_t *v = NULL;
    if (d.p < d.e && *d.p == '{') {
        v = dec_value(&d);
        if (v) {
            skip_ws(&d);
            if (d.p != d.e) {
                json_decref(v);
                v = NULL;
                d.why = "data after the object";
            }
        }
    } else
        d.why = "not an object";
    buf_free(&d.tmp);
    if (!v && err)
        err_msg(err, EPROTO, "control message: %s at byte %zu", d.why ? d.why : "malformed JSON",
                (size_t)(d.p - d.start));
    return v;
}

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

/* The encoding of the message being sent, and ctl_recv's reader: kept
 * between messages (one per thread), unless a large message made them big;
 * freed when the thread ends. */
static __thread buf_t tls_out;
static __thread ctl_reader tls_rd;
static __thread bool tls_rd_ready;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_free(void *unused)
{
    (void)unused;
    buf_free(&tls_out);
    if (tls_rd_ready) ctl_reader_free(&tls_rd);
    tls_rd_ready = false;
}

static void tls_key_make(void)
{
    pthread_key_create(&tls_key, tls_free);
}

static void tls_register(void)
{
    pthread_once(&tls_once, tls_key_make);
    pthread_setspecific(tls_key, (void *)1);
}

int ctl_send(int fd, json_t *msg, const int *fds, int nfds, shed_err *err)
{
    if (!json_is_object(msg)) return err_msg(err, EINVAL, "control message: not an object");
    buf_t *b = ctl_send_buffer();
    int rc = ctl_encode(b, msg);
    if (rc < 0) {
        if (b->cap > CTL_KEEP_BUF) buf_free(b);
        if (rc == -EMSGSIZE)
            return err_msg(err, EMSGSIZE, "control message over the %d-byte limit", CTL_MAX_TOTAL);
        if (rc == -ELOOP)
            return err_msg(err, ELOOP, "control message nested deeper than %d levels", JSON_DEFAULT_DEPTH);
        return err_set(err, -rc, "control message: serialize");
    }
    return ctl_send_buffered(fd, fds, nfds, err);
}

buf_t *ctl_send_buffer(void)
{
    buf_t *b = &tls_out;
    if (!b->limit) {
        buf_init(b, CTL_MAX_TOTAL);
        tls_register();
    }
    if (b->cap > CTL_KEEP_BUF) buf_free(b); /* the last message was large */
    buf_reset(b);
    return b;
}

int ctl_send_buffered(int fd, const int *fds, int nfds, shed_err *err)
{
    buf_t *b = &tls_out;
    if (nfds < 0 || nfds > CTL_MAX_FDS)
        return err_msg(err, EINVAL, "control message: %d fds, at most %d", nfds, CTL_MAX_FDS);
    if (!b->data || b->data[0] != '{') return err_msg(err, EINVAL, "control message: not an object");
    const char *text = b->data;
    size_t len = b->len;
    int rc;
    if (len <= CTL_MAX_MSG) {
        rc = send_dgram(fd, NULL, 0, text, len, fds, nfds);
        if (rc < 0) return err_set(err, -rc, "send control message");
        return 0;
    }
    size_t chunk = CTL_MAX_MSG - 1, off = 0;
    rc = 0;
    while (off < len) {
        size_t n = len - off < chunk ? len - off : chunk;
        char tag = off + n < len ? 'P' : 'L';
        rc = send_dgram(fd, &tag, 1, text + off, n, off == 0 ? fds : NULL, off == 0 ? nfds : 0);
        if (rc < 0) break;
        off += n;
    }
    if (b->cap > CTL_KEEP_BUF) buf_free(b);
    if (rc < 0) return err_set(err, -rc, "send control message part");
    return 0;
}

void ctl_reader_init(ctl_reader *r)
{
    memset(r, 0, sizeof(*r));
    /* the logical limit (CTL_MAX_TOTAL) is checked per part; the buffer
     * also needs room to receive one more datagram in place */
    buf_init(&r->acc, CTL_MAX_TOTAL + CTL_MAX_MSG + 2);
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
    if (r->acc.cap > CTL_KEEP_BUF)
        buf_free(&r->acc); /* a large message: give the memory back */
    else
        buf_reset(&r->acc);
    r->nfds = 0;
    r->partial = 0;
}

/* One datagram into r->acc (received in place); returns 1 when a message
 * is complete, 0 for a part. */
static int read_dgram(ctl_reader *r, int fd, shed_err *err)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
        struct cmsghdr align;
    } u;
    /* room for one more datagram (and its truncation check) after what we hold */
    if (buf_reserve(&r->acc, CTL_MAX_MSG + 1) < 0)
        return err_msg(err, EMSGSIZE, "control message over the %d-byte limit", CTL_MAX_TOTAL);
    char *dg = r->acc.data + r->acc.len;
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
    size_t len = (size_t)n;
    char tag = dg[0];
    if (tag == '{') {
        if (r->partial) return err_msg(err, EPROTO, "control channel: message inside parts");
        r->acc.len += len;
        r->acc.data[r->acc.len] = 0;
        return 1;
    }
    if (tag != 'P' && tag != 'L')
        return err_msg(err, EPROTO, "control channel: unknown datagram tag 0x%02x", (unsigned char)tag);
    if (r->acc.len + len - 1 > CTL_MAX_TOTAL)
        return err_msg(err, EMSGSIZE, "control message over the %d-byte limit", CTL_MAX_TOTAL);
    memmove(dg, dg + 1, len - 1); /* drop the tag */
    r->acc.len += len - 1;
    r->acc.data[r->acc.len] = 0;
    r->partial = tag == 'P';
    return tag == 'L';
}

int ctl_read(ctl_reader *r, int fd, json_t **msg, int *fds, int *nfds, shed_err *err)
{
    if (nfds) *nfds = 0;
    *msg = NULL;
    for (;;) {
        int rc = read_dgram(r, fd, err);
        if (rc == -EAGAIN) return -EAGAIN;
        if (rc < 0) {
            close_fds(r->fds, r->nfds);
            reader_reset(r);
            return rc;
        }
        if (rc == 0) continue;
        json_t *j = ctl_decode(r->acc.data, r->acc.len, err);
        if (!j) {
            close_fds(r->fds, r->nfds);
            reader_reset(r);
            return -EPROTO;
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
    /* one reader per thread, kept between messages (its buffer is reused) */
    ctl_reader *rd = &tls_rd;
    if (!tls_rd_ready) {
        ctl_reader_init(rd);
        tls_rd_ready = true;
        tls_register();
    }
    int rc;
    for (;;) {
        rc = ctl_read(rd, fd, msg, fds, nfds, err);
        if (rc != -EAGAIN) break;
        rc = wait_fd(fd, POLLIN, -1);
        if (rc < 0) {
            err_set(err, -rc, "wait for control message");
            break;
        }
    }
    if (rc < 0) {
        /* nothing of a broken message may be left for the next call */
        ctl_reader_free(rd);
        ctl_reader_init(rd);
    }
    return rc;
}
