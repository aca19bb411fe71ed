/* Forward-proxy settings from the environment, as libcurl reads them; see
 * http_proxy.h. Pure parsing and matching: no sockets, never logs, and no
 * message ever holds a proxy URL's user information.
 */
#include "worker/http_proxy.h"

#include "base/b64.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_PROXY_DEFAULT_PORT 1080 /* curl's, when a proxy URL names none */
#define HTTP_PROXY_MAX_USERINFO 1024

static const char *env_get(http_getenv_fn get, void *arg, const char *name)
{
    const char *v = get ? get(name, arg) : getenv(name);
    return v && *v ? v : NULL; /* empty = unset, as curl_getenv */
}

void http_proxy_clear(http_proxy *p)
{
    if (p->auth) {
        explicit_bzero(p->auth, strlen(p->auth));
        free(p->auth);
    }
    memset(p, 0, sizeof(*p));
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decode [s, s+n) into out (at least n+1 bytes); -1 on a bad escape or a NUL. */
static long pct_decode(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0) return -1;
            c = (char)(hi * 16 + lo);
            if (!c) return -1;
            i += 2;
        }
        out[o++] = c;
    }
    out[o] = 0;
    return (long)o;
}

int http_hostport_split(const char *p, const char *end, char *host, size_t hostsz, const char **portp)
{
    const char *hs = p, *he;
    *portp = NULL;
    if (p < end && *p == '[') {
        he = memchr(p, ']', (size_t)(end - p));
        if (!he) return HTTP_HOST_UNCLOSED;
        hs = p + 1;
        if (he + 1 < end) {
            if (he[1] != ':') return HTTP_HOST_BAD;
            *portp = he + 2;
        }
    } else {
        he = memchr(p, ':', (size_t)(end - p));
        if (he) *portp = he + 1;
        else he = end;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= hostsz) return HTTP_HOST_BAD;
    memcpy(host, hs, hl);
    host[hl] = 0;
    for (size_t i = 0; i < hl; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c <= 0x20 || c >= 0x7f || c == '%' || c == '\\') return HTTP_HOST_BAD_CHAR;
    }
    return 0;
}

int http_port_parse(const char *p, const char *end)
{
    long v = 0;
    for (const char *q = p; q < end; q++) {
        if (*q < '0' || *q > '9' || v > 65535) return -1;
        v = v * 10 + (*q - '0');
    }
    return v < 1 || v > 65535 ? -1 : (int)v;
}

int http_proxy_parse(const char *value, const char *var, http_proxy *out, shed_err *err)
{
    memset(out, 0, sizeof(*out));
    const char *p = value;
    const char *sep = strstr(value, "://");
    if (sep) {
        size_t sl = (size_t)(sep - value);
        if (sl == 4 && !strncasecmp(value, "http", 4)) {
            p = sep + 3;
        } else if (sl == 5 && !strncasecmp(value, "https", 5)) {
            return err_msg(err, EINVAL,
                           "%s: an https:// proxy (TLS to the proxy) is not supported; give the proxy as "
                           "http://host:port (the worker's TLS to an https:// API still runs end to end "
                           "through the proxy's CONNECT tunnel), or unset %s",
                           var, var);
        } else if ((sl == 6 && !strncasecmp(value, "socks4", 6)) || (sl == 7 && !strncasecmp(value, "socks4a", 7)) ||
                   (sl == 6 && !strncasecmp(value, "socks5", 6)) || (sl == 7 && !strncasecmp(value, "socks5h", 7))) {
            return err_msg(err, EINVAL,
                           "%s: SOCKS proxies (%.*s://) are not supported; give an HTTP proxy as "
                           "http://host:port, or unset %s",
                           var, (int)sl, value, var);
        } else {
            return err_msg(err, EINVAL,
                           "%s: unsupported proxy scheme (only http:// proxies are supported); give the "
                           "proxy as http://host:port, or unset %s",
                           var, var);
        }
    }
    const char *end = p + strcspn(p, "/?#");
    /* user information: up to the last '@' of the authority */
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@') at = q;
    if (at) {
        size_t ul = (size_t)(at - p);
        if (ul > HTTP_PROXY_MAX_USERINFO)
            return err_msg(err, EINVAL, "%s: the proxy URL's user information is too long", var);
        char *dec = malloc(ul + 1);
        if (!dec) return err_set(err, ENOMEM, "%s", var);
        long dl = pct_decode(p, ul, dec);
        if (dl < 0) {
            explicit_bzero(dec, ul + 1);
            free(dec);
            return err_msg(err, EINVAL,
                           "%s: bad %%-escape in the proxy URL's user information (write user:password "
                           "%%-encoded, e.g. %%40 for @)",
                           var);
        }
        /* A user without ':' has an empty password (as curl). */
        size_t raw = (size_t)dl + (strchr(dec, ':') ? 0 : 1);
        char *cred = malloc(raw + 1);
        if (!cred) {
            explicit_bzero(dec, ul + 1);
            free(dec);
            return err_set(err, ENOMEM, "%s", var);
        }
        memcpy(cred, dec, (size_t)dl);
        if (!strchr(dec, ':')) cred[dl] = ':';
        cred[raw] = 0;
        explicit_bzero(dec, ul + 1);
        free(dec);
        size_t al = 6 + b64_encoded_size(raw, true);
        out->auth = malloc(al);
        if (!out->auth) {
            explicit_bzero(cred, raw);
            free(cred);
            return err_set(err, ENOMEM, "%s", var);
        }
        memcpy(out->auth, "Basic ", 6);
        b64_encode(cred, raw, out->auth + 6, false, true);
        explicit_bzero(cred, raw);
        free(cred);
        p = at + 1;
    }
    const char *portp;
    if (http_hostport_split(p, end, out->host, sizeof(out->host), &portp) < 0) goto bad_host;
    if (strpbrk(out->host, "@[]")) goto bad_host;
    unsigned char tmp[16];
    bool v6 = inet_pton(AF_INET6, out->host, tmp) == 1;
    if (*p == '[' && !v6) goto bad_host;
    out->numeric = v6 || inet_pton(AF_INET, out->host, tmp) == 1;
    out->port = HTTP_PROXY_DEFAULT_PORT;
    if (portp && portp < end) {
        int port = http_port_parse(portp, end);
        if (port < 0) {
            http_proxy_clear(out);
            return err_msg(err, EINVAL, "%s: bad port in the proxy URL", var);
        }
        out->port = port;
    }
    snprintf(out->hostport, sizeof(out->hostport), "%s%s%s:%d", v6 ? "[" : "", out->host, v6 ? "]" : "",
             out->port);
    snprintf(out->shown, sizeof(out->shown), "http://%s", out->hostport);
    out->var = var;
    out->set = true;
    return 0;
bad_host:
    http_proxy_clear(out);
    return err_msg(err, EINVAL, "%s: bad host in the proxy URL; give the proxy as http://host:port", var);
}

void http_proxy_env_free(http_proxy_env *pe)
{
    http_proxy_clear(&pe->http);
    http_proxy_clear(&pe->https);
    free(pe->no_proxy);
    memset(pe, 0, sizeof(*pe));
}

int http_proxy_env_load(http_proxy_env *pe, http_getenv_fn get, void *arg, shed_err *err)
{
    memset(pe, 0, sizeof(*pe));
    static const char *const all_names[] = {"all_proxy", "ALL_PROXY"};
    const char *all = NULL, *all_var = NULL;
    for (int i = 0; i < 2 && !all; i++)
        if ((all = env_get(get, arg, all_names[i]))) all_var = all_names[i];

    /* https:// URLs: https_proxy, HTTPS_PROXY, then ALL_PROXY. */
    const char *v = NULL, *var = NULL;
    if ((v = env_get(get, arg, "https_proxy"))) var = "https_proxy";
    else if ((v = env_get(get, arg, "HTTPS_PROXY"))) var = "HTTPS_PROXY";
    else if (all) v = all, var = all_var;
    int rc;
    if (v && (rc = http_proxy_parse(v, var, &pe->https, err)) < 0) goto fail;
    /* http:// URLs: http_proxy only in lowercase (as curl), then ALL_PROXY. */
    v = NULL;
    if ((v = env_get(get, arg, "http_proxy"))) var = "http_proxy";
    else if (all) v = all, var = all_var;
    if (v && (rc = http_proxy_parse(v, var, &pe->http, err)) < 0) goto fail;

    if ((v = env_get(get, arg, "no_proxy"))) pe->no_proxy_var = "no_proxy";
    else if ((v = env_get(get, arg, "NO_PROXY"))) pe->no_proxy_var = "NO_PROXY";
    if (v && !(pe->no_proxy = strdup(v))) {
        rc = err_set(err, ENOMEM, "%s", pe->no_proxy_var);
        goto fail;
    }
    return 0;
fail:
    http_proxy_env_free(pe);
    return rc;
}

/* ---------- NO_PROXY ---------- */

static bool cidr_match(const unsigned char *a, const unsigned char *net, unsigned bits, unsigned len_bits)
{
    if (bits > len_bits) return false;
    unsigned bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, net, bytes)) return false;
    if (rest && ((a[bytes] ^ net[bytes]) & (unsigned char)(0xff << (8 - rest)))) return false;
    return true;
}

/* One NO_PROXY entry (not NUL-terminated) against the host. */
static bool entry_match(const char *tok, size_t tl, const char *name, size_t nl, int family,
                        const unsigned char *addr)
{
    char e[300];
    if (tl >= sizeof(e)) return false;
    memcpy(e, tok, tl);
    e[tl] = 0;
    /* "[v6]" or "[v6]:port" or "[v6]/bits": drop the brackets and the port. */
    if (e[0] == '[') {
        char *rb = strchr(e, ']');
        if (!rb) return false;
        char *after = rb + 1;
        char bits[8] = "";
        if (*after == '/') snprintf(bits, sizeof(bits), "%.7s", after);
        *rb = 0;
        memmove(e, e + 1, strlen(e + 1) + 1);
        if (bits[0]) strncat(e, bits, sizeof(e) - strlen(e) - 1);
    } else {
        /* "host:port" or "1.2.3.4:port" (one colon): the port is ignored. */
        char *c = strchr(e, ':');
        if (c && !strchr(c + 1, ':')) *c = 0;
    }
    size_t el = strlen(e);
    if (!el) return false;
    if (family) {
        char *slash = strchr(e, '/');
        unsigned bits = family == AF_INET ? 32 : 128;
        if (slash) {
            char *endp;
            unsigned long b = strtoul(slash + 1, &endp, 10);
            if (endp == slash + 1 || *endp || b > bits) return false;
            bits = (unsigned)b;
            *slash = 0;
        }
        unsigned char net[16];
        if (inet_pton(family, e, net) != 1) return false;
        return cidr_match(addr, net, bits, family == AF_INET ? 32 : 128);
    }
    /* A host name: trailing and one leading dot ignored; the name itself or
     * a name under it. */
    if (e[el - 1] == '.') e[--el] = 0;
    const char *t = e;
    if (el && *t == '.') t++, el--;
    if (!el) return false;
    if (el == nl) return !strncasecmp(t, name, nl);
    if (el < nl) return name[nl - el - 1] == '.' && !strncasecmp(t, name + (nl - el), el);
    return false;
}

bool http_noproxy_match(const char *no_proxy, const char *host)
{
    if (!no_proxy || !*no_proxy || !host || !*host) return false;
    if (!strcmp(no_proxy, "*")) return true;
    char name[256];
    size_t nl = strlen(host);
    if (host[0] == '[' && nl >= 2 && host[nl - 1] == ']') {
        host++;
        nl -= 2;
    }
    if (nl >= sizeof(name)) return false;
    memcpy(name, host, nl);
    name[nl] = 0;
    unsigned char addr[16];
    int family = 0;
    if (inet_pton(AF_INET, name, addr) == 1) family = AF_INET;
    else if (inet_pton(AF_INET6, name, addr) == 1) family = AF_INET6;
    else if (nl && name[nl - 1] == '.') name[--nl] = 0; /* a trailing dot is ignored */
    const char *p = no_proxy;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *tok = p;
        while (*p && *p != ' ' && *p != '\t' && *p != ',') p++;
        size_t tl = (size_t)(p - tok);
        if (tl && entry_match(tok, tl, name, nl, family, addr)) return true;
    }
    return false;
}

const http_proxy *http_proxy_for(const http_proxy_env *pe, bool tls, const char *host)
{
    const http_proxy *px = tls ? &pe->https : &pe->http;
    if (!px->set) return NULL;
    if (http_noproxy_match(pe->no_proxy, host)) return NULL;
    return px;
}
