/* UTF-8 helpers for the toolset: results are JSON strings, so every byte
 * sequence a file or a command produces is made valid UTF-8 the way Node's
 * decoder does it (each maximal invalid subpart becomes U+FFFD). Never reads
 * past n. */
#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "tools/internal.h"

/* Bytes of plain ASCII at s, counted eight at a time (the common case). */
static size_t ascii_run(const unsigned char *s, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        if (v & 0x8080808080808080ULL) break;
    }
    while (i < n && s[i] < 0x80) i++;
    return i;
}

/* Length of the valid sequence at s (1..4), or 0 with *bad set to the number
 * of bytes forming the maximal invalid subpart (>= 1). */
static size_t seq_len(const unsigned char *s, size_t n, size_t *bad)
{
    unsigned char c = s[0];
    *bad = 1;
    if (c < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    for (size_t i = 1; i <= need; i++) {
        if (i >= n) {
            *bad = i;
            return 0;
        }
        unsigned char d = s[i];
        if (d < lo || d > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

int tools_utf8_sanitize(buf_t *out, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;
    while (i < n) {
        i += ascii_run(s + i, n - i);
        if (i >= n) break;
        size_t bad;
        size_t l = seq_len(s + i, n - i, &bad);
        if (l) {
            i += l;
            continue;
        }
        if (i > run && buf_append(out, s + run, i - run) < 0) return -1;
        if (buf_append(out, "\xEF\xBF\xBD", 3) < 0) return -1;
        i += bad;
        run = i;
    }
    if (i > run && buf_append(out, s + run, i - run) < 0) return -1;
    return 0;
}

size_t tools_utf16_len(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t units = ascii_run(s, n);
    for (size_t i = units; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) units++;
        if (s[i] >= 0xF0) units++; /* astral: a surrogate pair */
    }
    return units;
}

bool tools_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        i += ascii_run(s + i, n - i);
        if (i >= n) break;
        size_t bad;
        size_t l = seq_len(s + i, n - i, &bad);
        if (!l) return false;
        i += l;
    }
    return true;
}
