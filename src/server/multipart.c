/* multipart/form-data parser for `shed serve` uploads (skills). Strict: one
 * boundary from the Content-Type, CRLF line ends, Content-Disposition
 * form-data with a quoted name (and filename); percent-escapes that browsers
 * and undici use for '"', CR and LF in quoted values are decoded.
 *
 * Never reads outside the body, never copies part data, never accepts a
 * filename longer than MULTIPART_NAME_MAX or with a NUL byte. */
#include "server/multipart.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *memfind(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    if (nlen == 0 || hlen < nlen) return NULL;
    return memmem(hay, hlen, needle, nlen);
}

/* The boundary parameter of a multipart/form-data Content-Type. */
static int get_boundary(const char *ct, char *out, size_t outlen)
{
    if (!ct || strncasecmp(ct, "multipart/form-data", 19)) return -1;
    const char *p = strcasestr(ct, "boundary=");
    if (!p) return -1;
    p += 9;
    size_t n = 0;
    if (*p == '"') {
        p++;
        while (p[n] && p[n] != '"') n++;
    } else {
        while (p[n] && p[n] != ';' && p[n] != ' ' && p[n] != '\t') n++;
    }
    if (n == 0 || n > 70 || n + 1 > outlen) return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

/* Value of `key="..."` in a Content-Disposition header line (not NUL-terminated). */
static int disp_param(const char *line, size_t len, const char *key, char *out, size_t outlen,
                      bool *found)
{
    *found = false;
    size_t klen = strlen(key);
    for (size_t i = 0; i + klen + 2 <= len; i++) {
        if ((i == 0 || line[i - 1] == ' ' || line[i - 1] == ';') &&
            !strncasecmp(line + i, key, klen) && line[i + klen] == '=' &&
            line[i + klen + 1] == '"') {
            size_t j = i + klen + 2, o = 0;
            while (j < len && line[j] != '"') {
                char c = line[j];
                if (c == '\\' && j + 1 < len)
                    c = line[++j];
                else if (c == '%' && j + 2 < len &&
                         (!strncmp(line + j, "%22", 3) || !strncmp(line + j, "%0D", 3) ||
                          !strncmp(line + j, "%0A", 3))) {
                    c = line[j + 2] == '2' ? '"' : line[j + 2] == 'D' ? '\r' : '\n';
                    j += 2;
                }
                if (o + 1 >= outlen || c == '\0') return -1;
                out[o++] = c;
                j++;
            }
            if (j >= len) return -1;
            out[o] = '\0';
            *found = true;
            return 0;
        }
    }
    return 0;
}

int multipart_parse(const char *content_type, const char *body, size_t len, multipart_part_t *parts,
                    int max, char *msg, size_t msglen)
{
    char bnd[80], delim[88];
    if (get_boundary(content_type, bnd, sizeof(bnd)) < 0) {
        snprintf(msg, msglen, "Content-Type must be multipart/form-data with a boundary");
        return -1;
    }
    int dl = snprintf(delim, sizeof(delim), "--%s", bnd);
    /* The body starts with the first delimiter (a preamble is allowed). */
    const char *p = memfind(body, len, delim, (size_t)dl);
    if (!p) {
        snprintf(msg, msglen, "multipart body has no boundary line");
        return -1;
    }
    const char *end = body + len;
    int n = 0;
    for (;;) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') return n; /* closing delimiter */
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n') {
            snprintf(msg, msglen, "multipart: malformed boundary line");
            return -1;
        }
        p += 2;
        const char *hend = memfind(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!hend || hend - p > 8192) {
            snprintf(msg, msglen, "multipart: part %d has no end of headers", n);
            return -1;
        }
        if (n == max) {
            snprintf(msg, msglen, "multipart: more than %d parts", max);
            return -1;
        }
        multipart_part_t *pt = &parts[n];
        memset(pt, 0, sizeof(*pt));
        bool have_name = false;
        for (const char *l = p; l < hend;) {
            const char *le = memfind(l, (size_t)(hend - l), "\r\n", 2);
            if (!le) le = hend;
            size_t ll = (size_t)(le - l);
            if (ll > 20 && !strncasecmp(l, "Content-Disposition:", 20)) {
                const char *v = l + 20;
                size_t vl = ll - 20;
                while (vl && *v == ' ') v++, vl--;
                if (vl < 9 || strncasecmp(v, "form-data", 9)) {
                    snprintf(msg, msglen, "multipart: part %d is not form-data", n);
                    return -1;
                }
                if (disp_param(v, vl, "name", pt->name, sizeof(pt->name), &have_name) < 0 ||
                    disp_param(v, vl, "filename", pt->filename, sizeof(pt->filename),
                               &pt->has_filename) < 0) {
                    snprintf(msg, msglen, "multipart: part %d has a bad name or filename", n);
                    return -1;
                }
            }
            l = le + 2;
        }
        if (!have_name) {
            snprintf(msg, msglen, "multipart: part %d has no Content-Disposition name", n);
            return -1;
        }
        const char *data = hend + 4;
        char next[92];
        int nl = snprintf(next, sizeof(next), "\r\n%s", delim);
        const char *q = memfind(data, (size_t)(end - data), next, (size_t)nl);
        if (!q) {
            snprintf(msg, msglen, "multipart: part %d is not terminated by the boundary", n);
            return -1;
        }
        pt->data = data;
        pt->len = (size_t)(q - data);
        n++;
        p = q + 2;
    }
}
