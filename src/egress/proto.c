/* Pure parsers for what a sandbox sends the egress: the HTTP proxy request
 * head (CONNECT authority-form, or absolute-URI plain HTTP), SOCKS5 greeting
 * and request, and DNS questions; and the DNS answer builder. Input is
 * hostile: never read past len, never trust a length field, bound every
 * output, and reject what is ambiguous (obs-fold, bare CR, duplicate
 * Content-Length, Transfer-Encoding with Content-Length). */
#include "egress/egress_int.h"

#include "base/buf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------- HTTP ---------- */

void egress_http_req_clear(egress_http_req *r)
{
    free(r->upstream);
    memset(r, 0, sizeof(*r));
}

static bool is_tchar(unsigned char c)
{
    /* (c != 0: strchr would find the terminator.) */
    return c != 0 && (isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* "host:port", "[v6]:port", or "host" when default_port > 0. */
static int parse_authority(const char *s, size_t len, int default_port, egress_http_req *r)
{
    const char *host = s, *port = NULL;
    size_t hlen = len, plen = 0;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close) return -400;
        host = s + 1;
        hlen = (size_t)(close - s) - 1;
        size_t rest = len - (size_t)(close - s) - 1;
        if (rest > 0) {
            if (close[1] != ':') return -400;
            port = close + 2;
            plen = rest - 1;
        }
        r->host_is_ip = true;
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon) {
            hlen = (size_t)(colon - s);
            port = colon + 1;
            plen = len - hlen - 1;
        }
    }
    if (hlen == 0 || hlen >= sizeof(r->host)) return -400;
    memcpy(r->host, host, hlen);
    r->host[hlen] = '\0';
    if (memchr(r->host, '\0', hlen)) return -400;
    if (port) {
        if (plen == 0 || plen > 5) return -400;
        int v = 0;
        for (size_t i = 0; i < plen; i++) {
            if (!isdigit((unsigned char)port[i])) return -400;
            v = v * 10 + (port[i] - '0');
        }
        if (v < 1 || v > 65535) return -400;
        r->port = v;
    } else {
        if (default_port <= 0) return -400;
        r->port = default_port;
    }
    if (r->host_is_ip) {
        egress_addr a;
        if (!egress_ip_parse(r->host, hlen, &a)) return -400;
    } else {
        egress_addr a;
        r->host_is_ip = egress_ip_parse(r->host, hlen, &a);
    }
    return 0;
}

/* Find the end of the next line starting at p; returns its length (without
 * the line ending) and sets *next, or -1 if no complete line, -2 on a bare CR. */
static long next_line(const char *p, const char *end, const char **next)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return -1;
    const char *e = nl;
    if (e > p && e[-1] == '\r') e--;
    if (memchr(p, '\r', (size_t)(e - p))) return -2;
    *next = nl + 1;
    return e - p;
}

static bool header_is(const char *name, size_t nlen, const char *want)
{
    return strlen(want) == nlen && strncasecmp(name, want, nlen) == 0;
}

static bool value_has_token(const char *v, size_t vlen, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= vlen; i++) {
        if (strncasecmp(v + i, tok, tl) != 0) continue;
        bool lb = i == 0 || v[i - 1] == ',' || v[i - 1] == ' ' || v[i - 1] == '\t';
        bool rb = i + tl == vlen || v[i + tl] == ',' || v[i + tl] == ' ' || v[i + tl] == '\t';
        if (lb && rb) return true;
    }
    return false;
}

int egress_http_parse(const char *data, size_t len, egress_http_req *r)
{
    memset(r, 0, sizeof(*r));
    const char *end = data + len, *p = data, *next = NULL;
    /* Find the blank line first: nothing is decided on a partial head. */
    size_t scan = len < EGRESS_HEAD_MAX ? len : EGRESS_HEAD_MAX;
    const char *blank = NULL;
    for (size_t i = 0; i < scan; i++) {
        if (data[i] != '\n') continue;
        if (i + 1 < scan && data[i + 1] == '\n') {
            blank = data + i + 2;
            break;
        }
        if (i + 2 < scan && data[i + 1] == '\r' && data[i + 2] == '\n') {
            blank = data + i + 3;
            break;
        }
    }
    if (!blank) return len >= EGRESS_HEAD_MAX ? -431 : 0;
    end = blank;
    r->head_len = (size_t)(blank - data);
    bool bare_lf = false;
    for (size_t i = 0; i < r->head_len; i++)
        if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r')) bare_lf = true;

    long ll = next_line(p, end, &next);
    if (ll < 0) return -400;
    const char *line = p, *lend = p + ll;
    p = next;
    const char *sp1 = memchr(line, ' ', (size_t)ll);
    if (!sp1 || sp1 == line) return -400;
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(lend - sp1 - 1));
    if (!sp2 || sp2 == sp1 + 1) return -400;
    if (memchr(sp2 + 1, ' ', (size_t)(lend - sp2 - 1))) return -400;
    for (const char *c = line; c < sp1; c++)
        if (!is_tchar((unsigned char)*c)) return -400;
    size_t vlen = (size_t)(lend - sp2 - 1);
    if (vlen != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '0' && sp2[8] != '1'))
        return -400;
    r->minor = sp2[8] - '0';
    const char *target = sp1 + 1;
    size_t tlen = (size_t)(sp2 - target);
    for (size_t i = 0; i < tlen; i++)
        if ((unsigned char)target[i] <= 0x20 || (unsigned char)target[i] >= 0x7f) return -400;
    size_t mlen = (size_t)(sp1 - line);
    r->is_connect = mlen == 7 && memcmp(line, "CONNECT", 7) == 0;

    const char *path = NULL;
    size_t plen = 0;
    int rc;
    if (r->is_connect) {
        rc = parse_authority(target, tlen, 0, r);
        if (rc < 0) return rc;
    } else {
        if (tlen < 7 || strncasecmp(target, "http://", 7) != 0) {
            /* https:// needs CONNECT; origin-form means the client did not
             * know it talks to a proxy. */
            return -400;
        }
        /* What is forwarded must be framed one way only: CRLF. */
        if (bare_lf) return -400;
        const char *auth = target + 7;
        size_t rest = tlen - 7;
        size_t alen = 0;
        while (alen < rest && auth[alen] != '/' && auth[alen] != '?' && auth[alen] != '#') alen++;
        if (memchr(auth, '@', alen)) return -400; /* userinfo: refuse, it confuses matchers */
        rc = parse_authority(auth, alen, 80, r);
        if (rc < 0) return rc;
        path = auth + alen;
        plen = rest - alen;
        if (plen > 0 && path[0] == '#') plen = 0;
    }

    /* Headers. */
    buf_t up;
    buf_init(&up, EGRESS_HEAD_MAX + 512);
    if (!r->is_connect) {
        buf_append(&up, line, mlen);
        buf_putc(&up, ' ');
        if (plen == 0) {
            buf_putc(&up, '/');
        } else {
            if (path[0] == '?') buf_putc(&up, '/');
            const char *hash = memchr(path, '#', plen);
            buf_append(&up, path, hash ? (size_t)(hash - path) : plen);
        }
        buf_printf(&up, " HTTP/1.%d\r\n", r->minor);
        bool v6 = strchr(r->host, ':') != NULL;
        if (r->port == 80)
            buf_printf(&up, "Host: %s%s%s\r\n", v6 ? "[" : "", r->host, v6 ? "]" : "");
        else
            buf_printf(&up, "Host: %s%s%s:%d\r\n", v6 ? "[" : "", r->host, v6 ? "]" : "", r->port);
    }
    int nheaders = 0, ncl = 0, nte = 0;
    bool te = false, te_chunked = false, upgrade = false, conn_upgrade = false;
    char cl[32] = "";
    while (p < end) {
        ll = next_line(p, end, &next);
        if (ll == -2) goto bad;
        if (ll < 0) goto bad;
        if (ll == 0) break;
        const char *h = p;
        p = next;
        if (++nheaders > EGRESS_HEADERS_MAX) {
            buf_free(&up);
            return -431;
        }
        if (h[0] == ' ' || h[0] == '\t') goto bad; /* obs-fold */
        const char *colon = memchr(h, ':', (size_t)ll);
        if (!colon || colon == h) goto bad;
        size_t nlen = (size_t)(colon - h);
        for (size_t i = 0; i < nlen; i++)
            if (!is_tchar((unsigned char)h[i])) goto bad;
        const char *v = colon + 1, *ve = h + ll;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        for (const char *c = v; c < ve; c++)
            if (*c == '\0') goto bad;
        size_t vl = (size_t)(ve - v);
        if (header_is(h, nlen, "content-length")) {
            if (vl == 0 || vl >= sizeof(cl)) goto bad;
            for (size_t i = 0; i < vl; i++)
                if (!isdigit((unsigned char)v[i])) goto bad;
            if (ncl++ && (strlen(cl) != vl || memcmp(cl, v, vl) != 0)) goto bad;
            memcpy(cl, v, vl);
            cl[vl] = '\0';
        }
        if (header_is(h, nlen, "transfer-encoding")) {
            te = true;
            nte++;
            te_chunked = vl == 7 && strncasecmp(v, "chunked", 7) == 0;
        }
        if (header_is(h, nlen, "upgrade")) upgrade = true;
        if (header_is(h, nlen, "connection") && value_has_token(v, vl, "upgrade")) conn_upgrade = true;
        if (r->is_connect) continue;
        /* Hop-by-hop and proxy headers stop here; Host is ours. */
        if (header_is(h, nlen, "host") || header_is(h, nlen, "connection") ||
            header_is(h, nlen, "proxy-connection") || header_is(h, nlen, "proxy-authorization") ||
            header_is(h, nlen, "proxy-authenticate") || header_is(h, nlen, "keep-alive"))
            continue;
        buf_append(&up, h, nlen);
        buf_puts(&up, ": ");
        buf_append(&up, v, vl);
        buf_puts(&up, "\r\n");
    }
    if (te && ncl) goto bad;
    if (!r->is_connect) {
        /* One framing only, as an upstream would read it (else smuggling). */
        if (te && (nte != 1 || !te_chunked || r->minor == 0)) goto bad;
        if (ncl) {
            if (strlen(cl) > 18) goto bad;
            r->content_length = strtoull(cl, NULL, 10);
        }
        r->chunked = te;
        r->upgrade = upgrade && conn_upgrade;
    }
    if (!r->is_connect) {
        if (upgrade && conn_upgrade)
            buf_puts(&up, "Connection: upgrade\r\n\r\n");
        else
            buf_puts(&up, "Connection: close\r\n\r\n");
        if (up.len > EGRESS_HEAD_MAX || !up.data) {
            buf_free(&up);
            return -431;
        }
        r->upstream_len = up.len;
        r->upstream = buf_steal(&up);
    }
    buf_free(&up);
    return 1;
bad:
    buf_free(&up);
    return -400;
}

/* ---------- chunked bodies ---------- */

enum { CK_SIZE, CK_EXT, CK_SIZE_LF, CK_DATA, CK_DATA_CR, CK_DATA_LF, CK_TRAILER_START,
       CK_TRAILER, CK_TRAILER_LF, CK_END_LF, CK_DONE };

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool ck_text(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

long egress_chunked_scan(egress_chunked *s, const char *p, size_t n, bool *done)
{
    *done = false;
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)p[i];
        switch (s->state) {
        case CK_SIZE: {
            int h = hexval(c);
            if (h >= 0) {
                if (++s->digits > 15) return -1;
                s->left = s->left * 16 + (uint64_t)h;
            } else if (s->digits == 0) {
                return -1;
            } else if (c == ';') {
                s->state = CK_EXT;
                s->linelen = 0;
            } else if (c == '\r') {
                s->state = CK_SIZE_LF;
            } else {
                return -1;
            }
            i++;
            break;
        }
        case CK_EXT:
            if (c == '\r') s->state = CK_SIZE_LF;
            else if (!ck_text(c) || ++s->linelen > EGRESS_HEAD_MAX) return -1;
            i++;
            break;
        case CK_SIZE_LF:
            if (c != '\n') return -1;
            i++;
            s->digits = 0;
            if (s->left == 0) {
                s->state = CK_TRAILER_START;
                s->linelen = 0;
            } else {
                s->state = CK_DATA;
            }
            break;
        case CK_DATA: {
            size_t take = n - i;
            if ((uint64_t)take > s->left) take = (size_t)s->left;
            s->left -= take;
            i += take;
            if (s->left == 0) s->state = CK_DATA_CR;
            break;
        }
        case CK_DATA_CR:
            if (c != '\r') return -1;
            s->state = CK_DATA_LF;
            i++;
            break;
        case CK_DATA_LF:
            if (c != '\n') return -1;
            s->state = CK_SIZE;
            i++;
            break;
        case CK_TRAILER_START:
            if (c == '\r') {
                s->state = CK_END_LF;
            } else if (is_tchar(c)) {
                s->state = CK_TRAILER;
                if (++s->linelen > EGRESS_HEAD_MAX) return -1;
            } else {
                return -1; /* obs-fold, bare LF, junk */
            }
            i++;
            break;
        case CK_TRAILER:
            if (c == '\r') s->state = CK_TRAILER_LF;
            else if (!ck_text(c) || ++s->linelen > EGRESS_HEAD_MAX) return -1;
            i++;
            break;
        case CK_TRAILER_LF:
            if (c != '\n') return -1;
            s->state = CK_TRAILER_START;
            i++;
            break;
        case CK_END_LF:
            if (c != '\n') return -1;
            s->state = CK_DONE;
            i++;
            *done = true;
            return (long)i;
        default:
            *done = true;
            return 0;
        }
    }
    return (long)i;
}

/* ---------- SOCKS5 ---------- */

int egress_socks_greeting(const uint8_t *d, size_t len, bool *noauth)
{
    if (len < 2) return 0;
    if (d[0] != 5 || d[1] == 0) return -1;
    size_t n = 2 + (size_t)d[1];
    if (len < n) return 0;
    *noauth = memchr(d + 2, 0, d[1]) != NULL;
    return (int)n;
}

int egress_socks_request(const uint8_t *d, size_t len, egress_socks_req *r)
{
    memset(r, 0, sizeof(*r));
    if (len < 4) return 0;
    if (d[0] != 5 || d[2] != 0) return -SOCKS_REP_FAIL;
    r->cmd = d[1];
    r->atyp = d[3];
    size_t n;
    egress_addr a;
    switch (d[3]) {
    case 1:
        n = 4 + 4 + 2;
        if (len < n) return 0;
        memset(&a, 0, sizeof(a));
        a.b[10] = a.b[11] = 0xff;
        memcpy(a.b + 12, d + 4, 4);
        egress_addr_str(&a, r->host, sizeof(r->host));
        r->host_is_ip = true;
        break;
    case 4:
        n = 4 + 16 + 2;
        if (len < n) return 0;
        memcpy(a.b, d + 4, 16);
        egress_addr_str(&a, r->host, sizeof(r->host));
        r->host_is_ip = true;
        break;
    case 3: {
        if (len < 5) return 0;
        size_t hl = d[4];
        n = 5 + hl + 2;
        if (len < n) return 0;
        if (hl == 0 || memchr(d + 5, 0, hl)) return -SOCKS_REP_HOSTUNREACH;
        memcpy(r->host, d + 5, hl);
        r->host[hl] = '\0';
        r->host_is_ip = egress_ip_parse(r->host, hl, &a);
        break;
    }
    default:
        return -SOCKS_REP_ATYP;
    }
    r->port = (d[n - 2] << 8) | d[n - 1];
    if (r->cmd != 1) return -SOCKS_REP_CMD;
    if (r->port == 0) return -SOCKS_REP_HOSTUNREACH;
    return (int)n;
}

/* ---------- DNS ---------- */

int egress_dns_parse(const uint8_t *pkt, size_t len, egress_dns_q *q)
{
    memset(q, 0, sizeof(*q));
    if (len < 12) return -1;
    q->id = (uint16_t)(pkt[0] << 8 | pkt[1]);
    q->flags = (uint16_t)(pkt[2] << 8 | pkt[3]);
    if (q->flags & 0x8000) return -1; /* a response: never answer those */
    int opcode = (q->flags >> 11) & 0xf;
    unsigned qd = (unsigned)(pkt[4] << 8 | pkt[5]);
    unsigned an = (unsigned)(pkt[6] << 8 | pkt[7]);
    unsigned ns = (unsigned)(pkt[8] << 8 | pkt[9]);
    if (opcode != 0) return DNS_NOTIMP;
    if (qd != 1 || an || ns) return DNS_FORMERR;
    size_t off = 12, tl = 0;
    for (;;) {
        if (off >= len) return DNS_FORMERR;
        uint8_t l = pkt[off++];
        if (l == 0) break;
        if (l & 0xc0) return DNS_FORMERR; /* no compression in a question */
        if (off + l > len || tl + l + 1 > EGRESS_NAME_MAX + 1) return DNS_FORMERR;
        if (tl) q->name[tl++] = '.';
        memcpy(q->name + tl, pkt + off, l);
        tl += l;
        off += l;
    }
    q->name[tl] = '\0';
    if (off + 4 > len) return DNS_FORMERR;
    q->qtype = (uint16_t)(pkt[off] << 8 | pkt[off + 1]);
    q->qclass = (uint16_t)(pkt[off + 2] << 8 | pkt[off + 3]);
    q->qend = off + 4;
    /* A label may carry any byte; only what normalizes as a host name (no
     * dot or NUL inside a label) counts as a name. */
    char norm[EGRESS_NAME_MAX + 1];
    q->name_ok = tl > 0 && strlen(q->name) == tl && egress_name_normalize(q->name, tl, norm) == 0;
    if (q->name_ok) {
        /* The re-joined text must have the same label boundaries as the wire. */
        size_t o = 12, dots = 0;
        while (pkt[o]) {
            o += pkt[o] + 1u;
            dots++;
        }
        size_t textdots = 0;
        for (size_t i = 0; i < tl; i++) textdots += q->name[i] == '.';
        if (textdots + 1 != dots) q->name_ok = false;
    }
    return 0;
}

size_t egress_dns_answer(const uint8_t *pkt, const egress_dns_q *q, int rcode,
                         const egress_addr *addrs, int naddrs, uint8_t *out, size_t outcap)
{
    if (outcap < 512) return 0;
    size_t qlen = q->qend > 12 ? q->qend - 12 : 0;
    if (12 + qlen > outcap) qlen = 0;
    uint16_t flags = (uint16_t)(0x8000 | (q->flags & 0x7900) | 0x0080 | (rcode & 0xf));
    out[0] = (uint8_t)(q->id >> 8);
    out[1] = (uint8_t)q->id;
    out[2] = (uint8_t)(flags >> 8);
    out[3] = (uint8_t)flags;
    out[4] = 0;
    out[5] = qlen ? 1 : 0;
    memset(out + 6, 0, 6);
    memcpy(out + 12, pkt + 12, qlen);
    size_t off = 12 + qlen;
    int an = 0;
    if (rcode == DNS_NOERROR && qlen && q->qclass == 1) {
        for (int i = 0; i < naddrs; i++) {
            bool v4 = egress_addr_is_v4(&addrs[i]);
            size_t rdlen;
            if (q->qtype == 1 && v4)
                rdlen = 4;
            else if (q->qtype == 28 && !v4)
                rdlen = 16;
            else
                continue;
            if (off + 12 + rdlen > 512) break;
            uint8_t *a = out + off;
            a[0] = 0xc0;
            a[1] = 12; /* name: pointer to the question */
            a[2] = (uint8_t)(q->qtype >> 8);
            a[3] = (uint8_t)q->qtype;
            a[4] = 0;
            a[5] = 1;            /* IN */
            memset(a + 6, 0, 4); /* TTL 0: ask again, the policy may change */
            a[10] = 0;
            a[11] = (uint8_t)rdlen;
            memcpy(a + 12, v4 ? addrs[i].b + 12 : addrs[i].b, rdlen);
            off += 12 + rdlen;
            an++;
        }
    }
    out[7] = (uint8_t)an;
    return off;
}
