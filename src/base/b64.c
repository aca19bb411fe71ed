/* Base64 codecs; see b64.h. */
#include "base/b64.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

static const char STD[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t b64_encoded_size(size_t n, bool pad)
{
    size_t full = (n / 3) * 4;
    size_t rem = n % 3;
    if (rem) full += pad ? 4 : rem + 1;
    return full + 1;
}

size_t b64_encode(const void *in, size_t n, char *out, bool url, bool pad)
{
    const unsigned char *p = in;
    const char *a = url ? URL : STD;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        if (pad) {
            out[o++] = '=';
            out[o++] = '=';
        }
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        if (pad) out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

char *b64_encode_alloc(const void *in, size_t n, bool url, bool pad)
{
    char *out = malloc(b64_encoded_size(n, pad));
    if (out) b64_encode(in, n, out, url, pad);
    return out;
}

static int dec(char c, bool url)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (url) {
        if (c == '-') return 62;
        if (c == '_') return 63;
    } else {
        if (c == '+') return 62;
        if (c == '/') return 63;
    }
    return -1;
}

long b64_decode(const char *in, size_t n, void *out, bool url)
{
    unsigned char *o = out;
    size_t pad = 0;
    while (n > 0 && in[n - 1] == '=') {
        n--;
        pad++;
    }
    if (pad > 2) return -EINVAL;
    if (pad && (n + pad) % 4 != 0) return -EINVAL;
    if (n % 4 == 1) return -EINVAL;
    size_t olen = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = dec(in[i], url);
        if (v < 0) return -EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[olen++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) return -EINVAL; /* non-canonical trailing bits */
    return (long)olen;
}

void *b64_decode_alloc(const char *in, size_t n, bool url, size_t *outlen)
{
    unsigned char *out = malloc(n / 4 * 3 + 4);
    if (!out) return NULL;
    long r = b64_decode(in, n, out, url);
    if (r < 0) {
        free(out);
        return NULL;
    }
    out[r] = '\0';
    if (outlen) *outlen = (size_t)r;
    return out;
}
