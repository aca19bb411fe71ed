/* Random identifiers; see id.h. */
#include "base/id.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

/* Crockford base32, lower case: no i, l, o, u. */
static const char ID_ALPHABET[] = "0123456789abcdefghjkmnpqrstvwxyz";

int id_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int id_new(const char *prefix, char *out, size_t outlen)
{
    unsigned char raw[17];
    size_t plen = strlen(prefix);
    if (plen + 1 + ID_RAND_CHARS + 1 > outlen) return -ENAMETOOLONG;
    int rc = id_random(raw, sizeof(raw));
    if (rc < 0) return rc;
    memcpy(out, prefix, plen);
    out[plen] = '_';
    char *p = out + plen + 1;
    /* 26 chars x 5 bits = 130 bits from 136 random bits */
    unsigned acc = 0;
    int bits = 0;
    size_t i = 0;
    for (int c = 0; c < ID_RAND_CHARS; c++) {
        if (bits < 5) {
            acc = (acc << 8) | raw[i++];
            bits += 8;
        }
        p[c] = ID_ALPHABET[(acc >> (bits - 5)) & 31];
        bits -= 5;
    }
    p[ID_RAND_CHARS] = '\0';
    return 0;
}

bool id_valid(const char *s, const char *prefix)
{
    if (!s) return false;
    size_t plen = strlen(prefix);
    if (strncmp(s, prefix, plen) != 0 || s[plen] != '_') return false;
    const char *p = s + plen + 1;
    size_t n = 0;
    for (; p[n]; n++)
        if (!strchr(ID_ALPHABET, p[n]) || p[n] == '\0') return false;
    return n == ID_RAND_CHARS;
}
